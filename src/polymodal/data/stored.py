"""A modality's items as a read-only sequence over the sample store: what ``Prepared`` holds instead of decoded lists.

Row ``i`` maps to an entry (rows naming the same file share one); an entry is a slot in the :class:`SampleStore`,
an item held in memory (not storable, or the store is unusable), or a cell decoded again on access (per-row text and
numbers: cheap, and holding them decoded would grow with the table). A slot whose bytes are gone or damaged is
decoded again from its cell, so a read never fails because of the cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from ..errors import LoadError
from .loaders import InMemoryFile
from .processors import LoadContext, Processor
from .sample_cache import SampleStore, Slot


class StoredColumn(Sequence[Any]):
    """Items of one modality, read on access (``None`` = absent); picklable for DataLoader workers."""

    def __init__(
        self,
        store: SampleStore,
        processor: Processor,
        ctx: LoadContext,
        codes: np.ndarray,
        slots: list[Slot | None],
        values: list[Any],
        held: dict[int, Any],
    ):
        self.store, self.processor, self.ctx = store, processor, ctx
        self.codes = codes  # per row: an entry, -1 when absent
        self.slots, self.values, self.held = slots, values, held

    def __len__(self) -> int:
        return len(self.codes)

    @overload
    def __getitem__(self, i: int) -> Any: ...
    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self.entry(int(e)) for e in self.codes[i]]
        return self.entry(int(self.codes[i]))

    def __iter__(self) -> Iterator[Any]:
        for e in self.codes:
            yield self.entry(int(e))

    def entry(self, e: int) -> Any:
        if e < 0:
            return None
        if e in self.held:
            return self.held[e]
        slot = self.slots[e]
        if slot is not None:
            item = self.store.read(slot)
            if item is not None:
                return item
        try:
            return self.processor.load(self.values[e], self.ctx)
        except LoadError:
            return None  # the file changed or vanished since it was validated

    def take(self, idx: np.ndarray) -> "StoredColumn":
        """The rows ``idx`` (entries are shared, nothing is read)."""
        return StoredColumn(self.store, self.processor, self.ctx, self.codes[idx], self.slots, self.values, self.held)


def take(column: Sequence[Any], idx: np.ndarray) -> Sequence[Any]:
    """Rows ``idx`` of a column: a list, or a :class:`StoredColumn` that still reads from the store."""
    if isinstance(column, StoredColumn):
        return column.take(idx)
    return [column[i] for i in idx]


class _Lazy:
    """Marks a per-row item that is decoded again on access instead of being kept."""


LAZY = _Lazy()


def signature(processor: Processor, ctx: LoadContext) -> str:
    """What decoding depends on apart from the input: the processor's type and fitted load state, and the limits."""
    text = json.dumps(
        [type(processor).__name__, processor.load_signature(), repr(ctx.limits)], sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def file_key(value: Any, ctx: LoadContext) -> str | None:
    """A file cell's store key: its resolved path, size and mtime_ns (None when it does not name a readable file)."""
    try:
        path = ctx.resolve(value)
        if isinstance(path, InMemoryFile):
            # media inside a table's cells: keyed by content (and the name, whose suffix picks the decoder); the
            # server's uploads are not kept on disk
            return f"bytes\0{Path(path.name).suffix.lower()}\0{path.digest}" if path.cache else None
        if not isinstance(path, Path):
            return None
        st = path.stat()
    except (LoadError, OSError):
        return None
    return f"{path}\0{st.st_size}\0{st.st_mtime_ns}"


class StoreJobs:
    """The store's part of ``prepare``: look the decode jobs up (hits are dropped from ``jobs``), then put each
    decoded item into the store and keep only its slot."""

    def __init__(
        self,
        store: SampleStore,
        processors: dict[str, Processor],
        ctx: LoadContext,
        jobs: dict[tuple[str, Any], tuple[Processor, Any]],
        results: dict[tuple[str, Any], Any],
    ):
        self.store, self.processors, self.ctx = store, processors, ctx
        self.sigs = {m: signature(p, ctx) for m, p in processors.items()}
        self.skeys: dict[tuple[str, Any], str] = {}
        by_modality: dict[str, list[tuple[str, Any]]] = {}
        for key, (p, v) in jobs.items():
            if p.cache_key(v) is None:
                continue
            skey = file_key(v, ctx)
            if skey is not None:
                self.skeys[key] = skey
                by_modality.setdefault(key[0], []).append(key)
        for m, keys in by_modality.items():
            found = store.lookup(self.sigs[m], [self.skeys[k] for k in keys])
            for key in keys:
                slot = found.get(self.skeys[key])
                if slot is not None:
                    results[key] = slot
                    del jobs[key]

    def keep(self, key: tuple[str, Any], res: Any) -> Any:
        """What ``prepare`` keeps of a decoded item: its slot, a :data:`LAZY` mark (per-row items) or the item."""
        if isinstance(res, LoadError):
            return res
        skey = self.skeys.get(key)
        if skey is None:
            return LAZY if isinstance(key[1], int) else res
        slot = self.store.put(self.sigs[key[0]], skey, res)
        return res if slot is None else slot

    def column(self, m: str, row_keys: list[Any], row_results: list[Any], cells: list[Any]) -> StoredColumn:
        """Modality ``m``'s column: rows with equal keys share an entry; ``None`` results are absent rows."""
        codes = np.full(len(row_keys), -1, dtype=np.int64)
        entry_of: dict[Any, int] = {}
        slots: list[Slot | None] = []
        values: list[Any] = []
        held: dict[int, Any] = {}
        for i, (key, res) in enumerate(zip(row_keys, row_results)):
            if res is None:
                continue
            e = entry_of.get(key)
            if e is None:
                e = entry_of[key] = len(slots)
                slots.append(res if isinstance(res, Slot) else None)
                values.append(cells[i])
                if not isinstance(res, (Slot, _Lazy)):
                    held[e] = res
            codes[i] = e
        return StoredColumn(self.store, self.processors[m], self.ctx, codes, slots, values, held)


class MappedColumn(Sequence[Any]):
    """``fn(i, base[i])`` computed on access: a changed copy of a column (a corruption, an edit) that never holds
    the whole modality in memory. ``fn`` is not called for absent (None) items."""

    def __init__(self, base: Sequence[Any], fn: Callable[[int, Any], Any]):
        self.base, self.fn = base, fn

    def __len__(self) -> int:
        return len(self.base)

    @overload
    def __getitem__(self, i: int) -> Any: ...
    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        item = self.base[i]
        return None if item is None else self.fn(int(i), item)

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self[i]
