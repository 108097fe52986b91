"""Exact top-k search by inner product (cosine similarity of unit vectors)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

_BLOCK = 1024
#: similarities held at once (queries x collection rows): 4 bytes each plus argpartition's 8-byte indices, so about
#: 0.8 GB; a fixed 1024-query block over 1,000,000 rows would need 4 GB of scores and 8 GB of indices
_BLOCK_CELLS = 64_000_000


@dataclass
class Hits:
    """``indices`` [Q, k] collection row positions, best first; ``scores`` [Q, k] their cosine similarities."""

    indices: np.ndarray
    scores: np.ndarray


def check_k(k: int, n: int) -> int:
    if k < 1:
        raise ConfigError(f"k must be at least 1, not {k}")
    if n == 0:
        raise ConfigError("the collection is empty: there is nothing to search")
    return min(k, n)


def exact_search(queries: np.ndarray, collection: np.ndarray, k: int) -> Hits:
    """The ``k`` collection rows with the highest inner product for each query (ties: the lower position first)."""
    queries = np.asarray(queries, dtype=np.float32)
    collection = np.asarray(collection, dtype=np.float32)
    k = check_k(k, len(collection))
    idx = np.empty((len(queries), k), dtype=np.int64)
    scores = np.empty((len(queries), k), dtype=np.float32)
    block = max(1, min(_BLOCK, _BLOCK_CELLS // max(1, len(collection))))
    for start in range(0, len(queries), block):
        sims = queries[start : start + block] @ collection.T
        top = (
            np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.tile(np.arange(k), (len(sims), 1))
        )
        top_scores = np.take_along_axis(sims, top, axis=1)
        order = np.lexsort((top, -top_scores), axis=1)
        idx[start : start + len(sims)] = np.take_along_axis(top, order, axis=1)
        scores[start : start + len(sims)] = np.take_along_axis(top_scores, order, axis=1)
    return Hits(idx, scores)
