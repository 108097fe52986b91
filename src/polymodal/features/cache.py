"""An on-disk (plus in-memory) store of frozen-backbone features.

Layout under the cache root (``$POLYMODAL_CACHE_DIR``, default ``~/.cache/polymodal/features``)::

    <model>/meta.json                  what the model is (source, class, parameters) — for ``polymodal cache info``
    <model>/<kk>/<key>.safetensors     the features of one input: ``tokens`` [T, H] and, when the model has one,
                                       ``pooled`` [H]

``<model>`` is a fingerprint of the backbone's weights and configuration, so changed weights land in a new folder;
``<key>`` hashes the preprocessed input (the file's decoded content after resizing, tokenising, resampling) together
with the preprocessing settings, so a changed file or changed preprocessing is a new key. Nothing is ever
overwritten with different content, and stale entries are simply never read again (``polymodal cache clear``
removes them). Each entry is written to a temp file and renamed, so concurrent runs never see half an entry.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..io import file_mode

log = logging.getLogger("polymodal")
Entry = dict[str, torch.Tensor]
_DEFAULT_MEMORY = 1 << 30  # bytes of features kept in memory per process (the disk holds the rest)


def cache_root() -> Path:
    """Where the on-disk cache lives: ``$POLYMODAL_CACHE_DIR``, else ``$XDG_CACHE_HOME/polymodal/features``."""
    env = os.environ.get("POLYMODAL_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "polymodal" / "features"


def _nbytes(entry: Entry) -> int:
    return sum(t.numel() * t.element_size() for t in entry.values())


class FeatureCache:
    """Features by (model fingerprint, input key): an LRU in memory in front of safetensors files on disk.

    Args:
        root: the on-disk folder; None keeps features in memory only (for this process).
        memory_bytes: how many bytes of features to keep in memory; older entries are dropped first.
    """

    def __init__(self, root: str | Path | None, memory_bytes: int = _DEFAULT_MEMORY):
        self.root = None if root is None else Path(root)
        self.memory_bytes = memory_bytes
        self._memory: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        self._warned = False

    # --- lookup -------------------------------------------------------------------------------------------
    def _path(self, model: str, key: str) -> Path:
        assert self.root is not None
        return self.root / model / key[:2] / f"{key}.safetensors"

    def get(self, model: str, key: str) -> Entry | None:
        """The stored features, or None (never raises on a damaged file: it counts as a miss and is recomputed)."""
        with self._lock:
            entry = self._memory.get((model, key))
            if entry is not None:
                self._memory.move_to_end((model, key))
                self.hits += 1
                return entry
        if self.root is not None:
            path = self._path(model, key)
            if path.is_file():
                try:
                    entry = load_file(str(path))
                except (SafetensorError, OSError, ValueError):
                    entry = None
                if entry is not None:
                    self._remember(model, key, entry)
                    self.hits += 1
                    return entry
        self.misses += 1
        return None

    def put(self, model: str, key: str, entry: Entry, meta: dict[str, Any] | None = None) -> None:
        """Store ``entry`` (CPU tensors) in memory and, with a root, on disk atomically."""
        entry = {k: v.detach().cpu().contiguous() for k, v in entry.items()}
        self._remember(model, key, entry)
        if self.root is None:
            return
        path = self._path(model, key)
        if path.is_file():
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if meta is not None:
                self._write_meta(model, meta)
            fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
        except OSError as e:
            # A read-only or full cache folder must not stop training or prediction: keep going from memory.
            if not self._warned:
                log.warning(
                    "cannot write the feature cache at %s (%s); features are kept in memory only. Set "
                    "POLYMODAL_CACHE_DIR to a writable folder to keep them for later runs.",
                    self.root,
                    e,
                )
                self._warned = True
            return
        try:
            save_file(entry, tmp)
            os.chmod(tmp, file_mode())  # a shared cache folder stays shared: safetensors and mkstemp write 0600
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _remember(self, model: str, key: str, entry: Entry) -> None:
        size = _nbytes(entry)
        if size > self.memory_bytes:
            return
        with self._lock:
            old = self._memory.pop((model, key), None)
            if old is not None:
                self._used -= _nbytes(old)
            self._memory[(model, key)] = entry
            self._used += size
            while self._used > self.memory_bytes and self._memory:
                _, dropped = self._memory.popitem(last=False)
                self._used -= _nbytes(dropped)

    def _write_meta(self, model: str, meta: dict[str, Any]) -> None:
        assert self.root is not None, "only an on-disk cache writes meta files"
        path = self.root / model / "meta.json"
        if path.is_file():
            return
        fd, tmp = tempfile.mkstemp(prefix=".meta.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
        os.replace(tmp, path)

    def forget_memory(self) -> None:
        """Drop the in-memory layer (the disk keeps everything); benchmarks use this to time disk reads."""
        with self._lock:
            self._memory.clear()
            self._used = 0

    # --- management (``polymodal cache info|clear``) ---------------------------------------------------------
    def info(self) -> list[dict[str, Any]]:
        """One record per model folder: fingerprint, what the model is, entries and bytes on disk."""
        if self.root is None or not self.root.is_dir():
            return []
        out = []
        for d in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files = list(d.glob("*/*.safetensors"))
            meta: dict[str, Any] = {}
            with contextlib.suppress(OSError, ValueError):
                meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
            out.append(
                {
                    "model": d.name,
                    "source": meta.get("source", "?"),
                    "encoder": meta.get("encoder", "?"),
                    "entries": len(files),
                    "bytes": sum(f.stat().st_size for f in files),
                }
            )
        return out

    def clear(self, model: str | None = None) -> int:
        """Delete one model's entries (by fingerprint or a unique prefix of it) or all; returns folders removed."""
        with self._lock:
            self._memory = OrderedDict(
                (k, v) for k, v in self._memory.items() if model is not None and not k[0].startswith(model)
            )
            self._used = sum(_nbytes(v) for v in self._memory.values())
        if self.root is None or not self.root.is_dir():
            return 0
        dirs = [p for p in self.root.iterdir() if p.is_dir() and (model is None or p.name.startswith(model))]
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
        return len(dirs)


_caches: dict[str | None, FeatureCache] = {}
_caches_lock = threading.Lock()


def get_cache(on_disk: bool = True) -> FeatureCache:
    """The process-wide cache for the current root (one per root, so every Predictor in a process shares its
    memory layer: ``compare`` runs and repeated fits reuse features without touching the disk)."""
    key = str(cache_root()) if on_disk else None
    with _caches_lock:
        if key not in _caches:
            _caches[key] = FeatureCache(key)
        return _caches[key]
