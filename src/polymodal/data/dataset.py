"""Decode a table once (validating every cell), then serve batches: ``Batch`` = column tensors + presence masks.

Decoding happens up front, in threads, with progress counted in rows (a bar, or log lines when the output is not
a terminal); rows that share a file share one decoded item. Decoded items go to the on-disk sample store
(:mod:`.sample_cache`; files already there are not decoded again) and ``Prepared`` keeps only where they are, so
the decoded table is never held in memory (``POLYMODAL_SAMPLE_CACHE=memory`` or ``store=None`` holds it, as before).
Bad cells are handled by the ``on_error`` policy: ``fail`` (raise with every problem listed), ``skip`` (drop the
row and report), ``missing`` (treat that modality as absent for the row).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar, copy_context
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ..errors import ConfigError, DataError, LoadError, RowIssue, row_label
from ..threads import current_threads
from .processors import LoadContext, Processor
from .progress import Progress
from .sample_cache import SampleStore, sample_store
from .samplers import EpochSampler
from .stored import StoreJobs, take

if TYPE_CHECKING:
    from .corruption_augmentation import CorruptionAugmenter

log = logging.getLogger("polymodal")


@dataclass
class Batch:
    """Column tensors keyed by ``<modality>[.<part>]``, a presence mask per modality, and the target.

    ``rows``: the batch's positions in the rows it was drawn from (set by :class:`Collator`): under DDP each process
    sees a shard, and validation puts the shards' outputs back in order with them."""

    inputs: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    target: torch.Tensor | None = None
    rows: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(
            {k: v.to(device) for k, v in self.inputs.items()},
            {k: v.to(device) for k, v in self.masks.items()},
            None if self.target is None else self.target.to(device),
            self.rows,  # positions stay on the CPU: they index outputs collected there
        )

    def __len__(self) -> int:
        return len(next(iter(self.masks.values())))


@dataclass
class Prepared:
    """Decoded rows. ``rows`` are the kept rows' positions in the table as read.

    ``items[m]`` is a sequence (``None`` = absent): a list held in memory, or a :class:`StoredColumn` that reads
    each item from the on-disk sample store when asked (see :mod:`polymodal.data.sample_cache`)."""

    items: Mapping[str, Sequence[Any]]
    rows: np.ndarray
    targets: np.ndarray | None = None
    issues: list[RowIssue] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def item(self, modality: str, i: int) -> Any:
        """Row ``i``'s item of ``modality`` (None when absent)."""
        return self.items[modality][i]

    def column(self, modality: str, idx: Iterable[int] | None = None) -> list[Any]:
        """The items of ``modality`` for rows ``idx`` (all rows by default), read into a new list."""
        col = self.items[modality]
        return list(col) if idx is None else [col[int(i)] for i in idx]

    def subset(self, idx: Iterable[int]) -> "Prepared":
        idx = np.asarray(list(idx), dtype=np.int64)
        return Prepared(
            {m: take(v, idx) for m, v in self.items.items()},
            self.rows[idx],
            None if self.targets is None else self.targets[idx],
            self.issues,
        )


_shared: ContextVar[dict[tuple, Any] | None] = ContextVar("polymodal_shared_decoding", default=None)


@contextmanager
def shared_decoding() -> Iterator[None]:
    """Within this block every :func:`prepare` reuses the files already decoded by an earlier call.

    For many fits on the same files (``compare``): an entry is keyed by the processor type, the fitted state its
    ``load`` depends on, the data root, the limits and the file, so it is reused exactly when it would decode the
    same. Memory grows with the distinct files decoded; it is freed when the block ends. With the on-disk sample
    store (the default) the store itself is shared, across processes and runs too; the block then only saves its
    look-ups.
    """
    token = _shared.set({})
    try:
        yield
    finally:
        _shared.reset(token)


_WINDOW = 4096  # decode jobs in flight at once


def _threads() -> int:
    # decoding waits on files as much as on the CPU (and PIL/soundfile release the GIL): twice the compute threads
    return max(2, min(8, 2 * current_threads()))


def _rows_done_after(order: list[tuple[str, Any]], where: dict[str, list[Any]], n: int) -> np.ndarray:
    """``out[j]``: how many of the ``n`` rows are fully decoded once the first ``j`` jobs of ``order`` are done (a
    row is done when the last of its jobs is; keys not in ``order`` are done already)."""
    position = {key: j for j, key in enumerate(order)}
    last = np.full(n, -1, dtype=np.int64)  # per row: the position of its last job, -1 when it has none to wait for
    for keys in where.values():
        for i, key in enumerate(keys):
            if key is not None and key in position:
                last[i] = max(last[i], position[key])
    return np.searchsorted(np.sort(last), np.arange(-1, len(order)), side="right")


def prepare(
    frame: pd.DataFrame,
    processors: dict[str, Processor],
    ctx: LoadContext,
    on_error: str = "fail",
    targets: np.ndarray | None = None,
    progress: bool = True,
    what: str = "rows",
    quiet: bool = False,
    store: SampleStore | str | None = "default",
) -> Prepared:
    """Decode every cell of every modality; apply the ``on_error`` policy to cells that cannot be decoded.

    ``store``: where decoded items go (``"default"``: :func:`sample_store`, set by ``$POLYMODAL_SAMPLE_CACHE``);
    None holds every decoded item in memory. Items already in the store are not decoded again."""
    disk = sample_store() if store == "default" else store
    if isinstance(disk, str):
        raise ConfigError(f"store must be a SampleStore, None or 'default', not {store!r}")
    if on_error not in ("fail", "skip", "missing"):
        raise ConfigError(f"on_error must be 'fail', 'skip' or 'missing', not {on_error!r}")
    n = len(frame)
    # Row mappings of each processor's own columns only, one at a time: the whole table as dicts would cost more
    # memory than the decoded samples the store saves.
    values = {c: frame[c].tolist() for p in processors.values() for c in p.columns}
    cells = {m: [p.cell({c: values[c][i] for c in p.columns}) for i in range(n)] for m, p in processors.items()}
    del values
    # One job per distinct file (or per row when a processor does not share items), in row order: rows are then
    # completed one after another, which is what the progress counts.
    jobs: dict[tuple[str, Any], tuple[Processor, Any]] = {}
    where: dict[str, list[Any]] = {m: [] for m in processors}  # job keys per modality, None for absent cells
    for i in range(n):
        for m, p in processors.items():
            v = cells[m][i]
            if p.is_absent(v):
                where[m].append(None)
                continue
            k = p.cache_key(v)
            key: tuple[str, Any] = (m, k if k is not None else i)
            jobs.setdefault(key, (p, v))
            where[m].append(key)

    def load(job: tuple[Processor, Any]) -> Any:
        p, v = job
        try:
            return p.load(v, ctx)
        except LoadError as e:
            return e

    # Worker threads start from an empty context: each job runs in a copy of the caller's, so that context
    # variables (e.g. the CLI's terms in error messages) hold there too.
    caller = copy_context()

    def run(job: tuple[Processor, Any]) -> Any:
        return caller.copy().run(load, job)

    results: dict[tuple[str, Any], Any] = {}
    shared, shared_keys = _shared.get(), {}
    if shared is not None:
        sigs = {
            m: (type(p).__name__, json.dumps(p.load_signature(), sort_keys=True), str(ctx.root), repr(ctx.limits))
            for m, p in processors.items()
        }
        for key in list(jobs):
            m, k = key
            if processors[m].cache_key(jobs[key][1]) is None:
                continue  # a per-row item (text, numbers): cheap to decode, nothing to share
            shared_keys[key] = sigs[m] + (k,)
            if shared_keys[key] in shared:
                results[key] = shared[shared_keys[key]]
                del jobs[key]
    stored = StoreJobs(disk, processors, ctx, jobs, results) if disk is not None and not disk.broken else None
    rows_done_after = _rows_done_after(list(jobs), where, n)
    bar = Progress(n, f"decoding {what}", "rows", enabled=progress)
    bar.update(int(rows_done_after[0]))  # rows with nothing left to decode (absent or already shared cells)
    order = list(jobs)
    with ThreadPoolExecutor(_threads()) as pool:
        # A window of jobs at a time: ``map`` makes a future per job up front, and at 100k rows those futures and
        # the decoded items waiting in them would cost more memory than the store saves.
        for start in range(0, len(order), _WINDOW):
            window = order[start : start + _WINDOW]
            for j, (key, res) in enumerate(zip(window, pool.map(run, [jobs[k] for k in window], chunksize=16)), start):
                results[key] = res if stored is None else stored.keep(key, res)
                if key in shared_keys and shared is not None:
                    shared[shared_keys[key]] = results[key]
                bar.update(int(rows_done_after[j + 1]))
    bar.close()
    del jobs, order  # what is left of a job is in ``results``; at 100k rows the job list is worth freeing now
    if stored is not None:
        stored.store.flush()
        stored.skeys.clear()

    issues: list[RowIssue] = []
    bad_rows: set[int] = set()
    items: dict[str, Sequence[Any]] = {}
    for m, keys in where.items():
        col = processors[m].columns[0] if len(processors[m].columns) == 1 else m
        out = []
        for i, key in enumerate(keys):
            res = None if key is None else results[key]
            if isinstance(res, LoadError):
                issues.append(RowIssue(row_label(frame.index[i]), col, str(res)))
                bad_rows.add(i)
                res = None
            out.append(res)
        items[m] = out if stored is None else stored.column(m, keys, out, cells[m])

    if issues and on_error == "fail":
        raise DataError(
            f"{len(bad_rows)} of {n} {what} have problems that stop training/prediction:",
            issues,
            hint="Fix or remove these rows, or pass --on-error skip (drop them) or "
            "--on-error missing (treat the bad cells as absent).",
        )
    keep = np.arange(n)
    if issues and on_error == "skip":
        keep = np.array([i for i in range(n) if i not in bad_rows], dtype=np.int64)
        log.warning(
            "skipped %d of %d %s with problems:\n%s", len(bad_rows), n, what, "\n".join(f"  - {i}" for i in issues[:20])
        )
    elif issues and not quiet:
        log.warning("treated %d bad cells as missing:\n%s", len(issues), "\n".join(f"  - {i}" for i in issues[:20]))
    prepared = Prepared(items, np.arange(n), targets, issues)
    return prepared.subset(keep) if len(keep) < n else prepared


class PreparedDataset(torch.utils.data.Dataset):
    """Indices into a :class:`Prepared`; the collate function does the per-batch work."""

    def __init__(self, prepared: Prepared):
        self.prepared = prepared

    def __len__(self) -> int:
        return len(self.prepared)

    def __getitem__(self, i: int) -> int:
        return i


class Collator:
    """Turns a list of row indices into a :class:`Batch` (augmenting when ``train``)."""

    def __init__(
        self,
        prepared: Prepared,
        processors: dict[str, Processor],
        train: bool,
        target_dtype: torch.dtype,
        corruption: CorruptionAugmenter | None = None,
    ):
        self.prepared, self.processors, self.train, self.target_dtype = prepared, processors, train, target_dtype
        self.corruption = corruption if train else None  # never on validation or test rows

    def __call__(self, idx: list[int]) -> Batch:
        inputs: dict[str, torch.Tensor] = {}
        masks: dict[str, torch.Tensor] = {}
        rng = self.corruption.batch_rng() if self.corruption is not None else None
        for m, p in self.processors.items():
            items = self.prepared.column(m, idx)
            if self.corruption is not None and rng is not None:
                items = self.corruption.apply(m, items, rng)
            inputs.update(p.collate(items, self.train))
            masks[m] = torch.tensor([it is not None for it in items], dtype=torch.bool)
        target = None
        if self.prepared.targets is not None:
            target = torch.as_tensor(self.prepared.targets[idx], dtype=self.target_dtype)
        return Batch(inputs, masks, target, torch.as_tensor(idx, dtype=torch.long))


def make_loader(
    prepared: Prepared,
    processors: dict[str, Processor],
    batch_size: int,
    train: bool,
    target_dtype: torch.dtype = torch.long,
    num_workers: int = 0,
    seed: int = 0,
    sampler: str = "shuffle",
    corruption: CorruptionAugmenter | None = None,
) -> torch.utils.data.DataLoader:
    """Batches of ``prepared`` rows. ``train``: augmented, drawn in a random order that depends on (seed, epoch)
    only (:class:`~polymodal.data.samplers.EpochSampler`, so a resumed fit draws what an uninterrupted one would;
    ``sampler`` "shuffle": each row once per epoch; "balanced": as many rows, drawn with replacement so that every
    class of the integer ``targets`` comes equally often). Worker seeds come from the global torch generator, which
    training reseeds at every epoch start. ``corruption``: training batches only, items corrupted at random before
    they are collated (:mod:`polymodal.data.corruption_augmentation`)."""
    row_sampler = None
    if train:
        weights = balanced_weights(prepared) if sampler == "balanced" else None
        row_sampler = EpochSampler(len(prepared), seed, weights)
    return torch.utils.data.DataLoader(
        PreparedDataset(prepared),
        batch_size=batch_size,
        shuffle=False,
        sampler=row_sampler,
        drop_last=train and len(prepared) > batch_size,
        collate_fn=Collator(prepared, processors, train, target_dtype, corruption),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        # (a loader without a generator would draw its workers' seed from the caller's global torch generator)
        generator=torch.Generator().manual_seed(seed) if row_sampler is None else row_sampler.loader_generator,
    )


def balanced_weights(prepared: Prepared) -> np.ndarray:
    """Each row's draw weight 1 / (K * its class's count): every class equally often (unlabelled rows never)."""
    targets = prepared.targets
    if targets is None or not np.issubdtype(np.asarray(targets).dtype, np.integer):
        raise ConfigError("training.sampler: balanced draws classes evenly; it needs a classification target")
    t = np.asarray(targets, dtype=np.int64)
    keep = t >= 0
    counts = np.bincount(t[keep])
    return np.where(keep, 1.0 / np.maximum(counts[np.maximum(t, 0)], 1), 0.0)
