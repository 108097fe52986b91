"""An approximate nearest-neighbour index (usearch HNSW, inner-product metric) over unit-norm embeddings.

Saved as usearch's own file (``index.usearch``) beside a JSON description (``index.json``), written atomically; no
pickle. usearch is the optional extra ``polymodal[retrieval]`` and is imported only here, when an index is used.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..io import atomic_dir
from .exact import Hits, check_k, exact_search

INDEX_FILE = "index.usearch"
META_FILE = "index.json"
#: HNSW settings; benchmarks/retrieval.py --part ann measures recall@10 against exact search (docs/BENCHMARKS.md)
CONNECTIVITY = 32
EXPANSION_ADD = 128
EXPANSION_SEARCH = 1024  # recall@10 0.99 on 100k random vectors; 128 gave 0.59-0.79 (docs/BENCHMARKS.md)


def _usearch() -> Any:
    try:
        from usearch import index as usearch_index
    except ImportError:
        raise ConfigError(
            "approximate search needs usearch: pip install 'polymodal[retrieval]' (or search exactly: raise "
            "task.retrieval.exact_max_rows above the collection's size)"
        ) from None
    return usearch_index


class ApproximateIndex:
    """A usearch HNSW index of float32 vectors; keys are the collection's row positions."""

    def __init__(self, index: Any, size: int, dim: int):
        self.index, self.size, self.dim = index, size, dim

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        connectivity: int = CONNECTIVITY,
        expansion_search: int = EXPANSION_SEARCH,
        progress: Callable[[int], None] | None = None,
        chunk_rows: int = 100_000,
    ) -> ApproximateIndex:
        """The index of ``vectors``, added ``chunk_rows`` at a time; ``progress`` is called with the rows added so
        far after each chunk (a 1,000,000-row build takes many minutes on a small machine)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise ConfigError("an index needs a non-empty [rows, dim] array of vectors")
        usearch_index = _usearch()
        index = usearch_index.Index(
            ndim=vectors.shape[1],
            metric="ip",
            dtype="f32",
            connectivity=connectivity,
            expansion_add=EXPANSION_ADD,
            expansion_search=expansion_search,
        )
        for start in range(0, len(vectors), chunk_rows):
            stop = min(start + chunk_rows, len(vectors))
            index.add(np.arange(start, stop, dtype=np.uint64), vectors[start:stop], log=False)
            if progress is not None:
                progress(stop)
        return cls(index, len(vectors), vectors.shape[1])

    def search(self, queries: np.ndarray, k: int) -> Hits:
        k = check_k(k, self.size)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ConfigError(f"queries must be [rows, {self.dim}] vectors, not {list(queries.shape)}")
        matches = self.index.search(queries, k, log=False)
        keys = np.asarray(matches.keys, dtype=np.int64).reshape(len(queries), -1)
        dist = np.asarray(matches.distances, dtype=np.float32).reshape(len(queries), -1)
        # usearch's "ip" distance is 1 - inner product; a missing neighbour (tiny graphs) has an invalid key
        keys = np.where((keys >= 0) & (keys < self.size), keys, -1)
        return Hits(keys[:, :k], (1.0 - dist)[:, :k])

    def save(self, folder: str | Path) -> Path:
        """Write ``index.usearch`` and ``index.json`` into ``folder`` (replaced atomically as a whole)."""
        with atomic_dir(Path(folder), overwrite=True) as tmp:
            self.index.save(str(Path(tmp) / INDEX_FILE))
            meta = {"format": 1, "size": self.size, "dim": self.dim, "metric": "ip"}
            (Path(tmp) / META_FILE).write_text(json.dumps(meta, indent=2))
        return Path(folder)

    @classmethod
    def load(cls, folder: str | Path) -> ApproximateIndex:
        folder = Path(folder)
        if not (folder / META_FILE).is_file() or not (folder / INDEX_FILE).is_file():
            raise ConfigError(f"{folder} holds no search index (write one with `polymodal embed ... --index`)")
        meta = json.loads((folder / META_FILE).read_text())
        usearch_index = _usearch()
        index = usearch_index.Index.restore(str(folder / INDEX_FILE))
        return cls(index, int(meta["size"]), int(meta["dim"]))


def search(
    queries: np.ndarray, collection: np.ndarray | ApproximateIndex, k: int, exact_max_rows: int = 50_000
) -> Hits:
    """Top-``k`` of each query: exact for a collection of at most ``exact_max_rows`` vectors, else through an
    approximate index (built here from the vectors, or the given one)."""
    if isinstance(collection, ApproximateIndex):
        return collection.search(queries, k)
    if len(collection) <= exact_max_rows:
        return exact_search(queries, collection, k)
    return ApproximateIndex.build(collection).search(queries, k)
