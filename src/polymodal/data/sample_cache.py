"""A bounded on-disk store of decoded samples (images, waveforms, log-mels: whatever ``load`` returns).

Decoding a file is the slow part of a fit; the store keeps each decoded item once, on disk, so that epochs, later
runs and ``compare`` variants read it back through the page cache instead of holding the whole table in RAM.

Layout under the root (``$POLYMODAL_SAMPLE_CACHE``, default: ``samples`` next to the feature cache)::

    index.sqlite            (signature, key) -> shard, offset, bytes, layout, crc32, last use
    shards/<pid>-<rand>.bin append-only data written by one process (a new one past ``_SHARD_BYTES``), read
                            with ``pread`` through the page cache

The signature names the processor (type, the fitted state ``load`` depends on, the limits); the key names the input
(a file's resolved path + size + mtime_ns), so a new split or seed of the same files hits. Bytes are written to the
shard before their index row is committed, so a killed process leaves at most unreferenced bytes; a damaged or
truncated shard fails the length / crc32 check and the item is decoded again. The size limit evicts whole shards,
least recently used first. A read-only or full folder never stops a run: the store warns once and the items stay in
memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

log = logging.getLogger("polymodal")

_SHARD_BYTES = 64 << 20  # a shard is the unit of eviction: small enough to free space in useful steps
_ALIGN = 64
_DEFAULT_LIMIT = 20 << 30
_ORPHAN_AGE_S = 600.0  # a shard nobody indexed for this long is left over from a killed writer
_FLUSH_EVERY = 256  # index rows buffered before a commit


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one item's bytes are: shard file name, byte offset, byte count, layout (JSON) and crc32."""

    shard: str
    offset: int
    nbytes: int
    layout: str
    crc: int


def _encode(item: Any) -> tuple[list[np.ndarray], str] | None:
    """The arrays of an item and its layout, or None when the item is not an array or a tuple of arrays."""
    is_tuple = isinstance(item, tuple)
    parts = list(item) if is_tuple else [item]
    if not parts or not all(isinstance(p, np.ndarray) and p.dtype != object for p in parts):
        return None
    arrays = [p if p.flags.c_contiguous else p.copy(order="C") for p in parts]
    layout = json.dumps({"tuple": is_tuple, "parts": [[a.dtype.str, list(a.shape)] for a in arrays]})
    return arrays, layout


def _decode(buf: memoryview, layout: str) -> Any:
    spec = json.loads(layout)
    out, pos = [], 0
    for dtype, shape in spec["parts"]:
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        # A copy: callers (augmentation, robustness corruptions) may edit items in place.
        out.append(np.frombuffer(buf, dt, count, pos).reshape(shape).copy())
        pos += _padded(count * dt.itemsize)
    return tuple(out) if spec["tuple"] else out[0]


def _padded(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


class SampleStore:
    """Decoded items by (signature, key) in packed shards on disk, read through the page cache.

    Picklable: a DataLoader worker gets the root and limit and reopens files lazily.

    Args:
        root: the folder (created when first written).
        max_bytes: the size limit of the shards on disk; least recently used shards are evicted past it.
    """

    def __init__(self, root: str | Path, max_bytes: int = _DEFAULT_LIMIT):
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.hits = self.misses = 0
        self._init_process_state()

    def _init_process_state(self) -> None:
        self._db: sqlite3.Connection | None = None
        self._fds: dict[str, int] = {}
        self._verified: set[tuple[str, int]] = set()
        self._strings: dict[str, str] = {}
        self._writer: Any = None
        self._writer_name = ""
        self._pending: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self.broken = False
        self._warned = False

    def _intern(self, text: str) -> str:
        # One string object per distinct shard name / layout: a table's slots share a handful of them.
        return self._strings.setdefault(text, text)

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "max_bytes": self.max_bytes, "hits": 0, "misses": 0}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_process_state()

    # --- index -----------------------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            (self.root / "shards").mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.root / "index.sqlite", timeout=60, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS items (sig TEXT, key TEXT, shard TEXT, offset INTEGER, nbytes INTEGER,"
                " layout TEXT, crc INTEGER, used REAL, PRIMARY KEY (sig, key)) WITHOUT ROWID"
            )
            db.execute("CREATE INDEX IF NOT EXISTS items_shard ON items (shard)")
            db.commit()
            self._db = db
        return self._db

    def _fail(self, e: BaseException) -> None:
        self.broken = True
        if not self._warned:
            log.warning(
                "cannot use the sample cache at %s (%s); decoded samples are kept in memory for this run. Set "
                "POLYMODAL_SAMPLE_CACHE to a writable folder (or 'memory').",
                self.root,
                e,
            )
            self._warned = True

    def lookup(self, sig: str, keys: list[str]) -> dict[str, Slot]:
        """The stored slots of ``keys`` (missing ones are absent); marks them used now (for the LRU)."""
        if self.broken or not keys:
            return {}
        found: dict[str, Slot] = {}
        try:
            with self._lock:
                db = self._conn()
                for start in range(0, len(keys), 500):
                    chunk = keys[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    for key, shard, offset, nbytes, layout, crc in db.execute(
                        f"SELECT key, shard, offset, nbytes, layout, crc FROM items WHERE sig = ? AND key IN ({marks})",
                        [sig, *chunk],
                    ):
                        found[key] = Slot(self._intern(shard), offset, nbytes, self._intern(layout), crc)
                now = time.time()
                db.executemany("UPDATE items SET used = ? WHERE sig = ? AND key = ?", [(now, sig, k) for k in found])
                db.commit()
        except (sqlite3.Error, OSError) as e:
            self._fail(e)
            return {}
        self.hits += len(found)
        return found

    # --- writing ---------------------------------------------------------------------------------------------
    def put(self, sig: str, key: str, item: Any) -> Slot | None:
        """Append ``item`` (an array or a tuple of arrays) and index it; None when it cannot be stored (the caller
        keeps it in memory). The index row is committed by :meth:`flush` (every few hundred puts)."""
        if self.broken:
            return None
        enc = _encode(item)
        if enc is None:
            return None
        arrays, layout = enc
        blob = b"".join(a.tobytes() + b"\0" * (_padded(a.nbytes) - a.nbytes) for a in arrays)
        try:
            with self._lock:
                f = self._shard_for(len(blob))
                offset = f.tell()
                f.write(blob)
                f.flush()  # in the kernel before the index names it: readers in other processes see whole items
                slot = Slot(self._writer_name, offset, len(blob), self._intern(layout), zlib.crc32(blob))
                self._pending.append((sig, key, slot.shard, offset, len(blob), layout, slot.crc, time.time()))
            self.misses += 1
            if len(self._pending) >= _FLUSH_EVERY:
                self.flush()
        except OSError as e:
            self._fail(e)
            return None
        return slot

    def _shard_for(self, n: int) -> Any:
        if self._writer is not None and self._writer.tell() + n > _SHARD_BYTES:
            self._writer.close()
            self._writer = None
        if self._writer is None:
            (self.root / "shards").mkdir(parents=True, exist_ok=True)
            self._writer_name = f"{os.getpid()}-{secrets.token_hex(6)}.bin"
            self._writer = open(self.root / "shards" / self._writer_name, "ab")  # noqa: SIM115 (kept open)
        return self._writer

    def flush(self) -> None:
        """Commit the buffered index rows, then evict past the size limit."""
        if self.broken:
            return
        try:
            with self._lock:
                if self._pending:
                    db = self._conn()
                    db.executemany("INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self._pending)
                    db.commit()
                    self._pending = []
            self.evict()
        except (sqlite3.Error, OSError) as e:
            self._fail(e)

    def close(self) -> None:
        """Commit, close the shard being written and drop the maps (the store reopens lazily)."""
        self.flush()
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            for fd in self._fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds = {}
            if self._db is not None:
                self._db.close()
                self._db = None

    # --- reading ---------------------------------------------------------------------------------------------
    def read(self, slot: Slot) -> Any:
        """The item in ``slot``, or None when its bytes are gone, short or damaged (decode it again)."""
        try:
            fd = self._fds.get(slot.shard)
            if fd is None:
                fd = self._fds[slot.shard] = os.open(self.root / "shards" / slot.shard, os.O_RDONLY)
            # pread, not mmap: the bytes come from the page cache either way, but mapped pages count in the
            # process's RSS, so a long epoch over a large store would look like (and be reported as) a leak.
            buf = os.pread(fd, slot.nbytes, slot.offset)
            if len(buf) < slot.nbytes:
                return None
            if (slot.shard, slot.offset) not in self._verified:
                if zlib.crc32(buf) != slot.crc:
                    return None
                self._verified.add((slot.shard, slot.offset))
            return _decode(memoryview(buf), slot.layout)
        except (OSError, ValueError):
            return None

    # --- size ------------------------------------------------------------------------------------------------
    def _shards(self) -> dict[str, os.stat_result]:
        d = self.root / "shards"
        if not d.is_dir():
            return {}
        out = {}
        for e in os.scandir(d):
            if e.name.endswith(".bin"):
                with contextlib.suppress(FileNotFoundError):
                    out[e.name] = e.stat()
        return out

    def evict(self) -> int:
        """Delete least recently used shards (and leftovers of killed writers) until the shards fit the limit."""
        shards = self._shards()
        total = sum(s.st_size for s in shards.values())
        if total <= self.max_bytes:
            return 0
        db = self._conn()
        used = dict(db.execute("SELECT shard, MAX(used) FROM items GROUP BY shard").fetchall())
        now = time.time()
        # Unindexed shards first (when no writer touched them lately), then by last use; never our open shard.
        order = sorted(
            (name for name in shards if name != self._writer_name),
            key=lambda name: used.get(name, -1.0 if now - shards[name].st_mtime > _ORPHAN_AGE_S else now),
        )
        removed = 0
        for name in order:
            if total <= self.max_bytes:
                break
            db.execute("DELETE FROM items WHERE shard = ?", (name,))
            db.commit()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.root / "shards" / name)
            fd = self._fds.pop(name, None)
            if fd is not None:
                os.close(fd)
            total -= shards[name].st_size
            removed += 1
        return removed

    # --- management (``polymodal cache info|clear``) ---------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Where the store is, its entries, bytes on disk and limit."""
        entries = 0
        if (self.root / "index.sqlite").is_file():
            with contextlib.suppress(sqlite3.Error, OSError):
                entries = self._conn().execute("SELECT COUNT(*) FROM items").fetchone()[0]
        return {
            "root": str(self.root),
            "entries": int(entries),
            "bytes": sum(s.st_size for s in self._shards().values()),
            "limit": self.max_bytes,
        }

    def clear(self) -> int:
        """Delete every stored sample; returns how many entries there were."""
        n = self.info()["entries"]
        self.close()
        for name in ("shards", "index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
            p = self.root / name
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        return n


# --- where the store lives ---------------------------------------------------------------------------------------
ENV = "POLYMODAL_SAMPLE_CACHE"
ENV_SIZE = "POLYMODAL_SAMPLE_CACHE_SIZE"
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``"20G"``, ``"512M"``, ``"1048576"`` -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if m is None:
        raise ConfigError(f"{ENV_SIZE}={text!r} is not a size; write bytes or a number with K, M, G or T (e.g. 20G)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def sample_cache_root() -> Path | None:
    """The store's folder, or None for ``POLYMODAL_SAMPLE_CACHE=memory`` (decoded items held in RAM, as before).

    Default: ``samples`` next to the feature cache (so ``POLYMODAL_CACHE_DIR=/x/features`` puts samples in
    ``/x/samples``)."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in ("memory", "off", "none"):
        return None
    if value:
        return Path(value).expanduser()
    # features.cache.cache_root's rule (that layer sits above data): the feature cache's folder, else the default
    features = os.environ.get("POLYMODAL_CACHE_DIR")
    if features:
        return Path(features).expanduser().parent / "samples"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "polymodal" / "samples"


def sample_cache_limit() -> int:
    value = os.environ.get(ENV_SIZE, "").strip()
    return parse_size(value) if value else _DEFAULT_LIMIT


_stores: dict[tuple[str, int], SampleStore] = {}
_stores_lock = threading.Lock()


def sample_store() -> SampleStore | None:
    """The process-wide store for the current settings, or None when samples are kept in memory."""
    root = sample_cache_root()
    if root is None:
        return None
    key = (str(root), sample_cache_limit())
    with _stores_lock:
        if key not in _stores:
            _stores[key] = SampleStore(root, key[1])
        return _stores[key]
