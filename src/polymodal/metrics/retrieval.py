"""Retrieval metrics of paired embeddings: the i-th query's right answer is the i-th target.

Ranks are computed in blocks of queries (``[block, N]`` similarities at a time), so 100,000 pairs fit in memory.
"""

from __future__ import annotations

import numpy as np

RECALL_KS = (1, 5, 10)
_BLOCK = 1024


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def pair_ranks(queries: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The 1-based rank of target i among all targets for query i, by cosine similarity (ties count against:
    a target scoring the same as the right one ranks before it, so a constant model gets no credit)."""
    q, t = normalise(queries), normalise(targets)
    ranks = np.empty(len(q), dtype=np.int64)
    for start in range(0, len(q), _BLOCK):
        sims = q[start : start + _BLOCK] @ t.T
        rows = np.arange(sims.shape[0])
        right = sims[rows, start + rows]
        ranks[start : start + len(rows)] = (sims >= right[:, None]).sum(axis=1)
    return ranks


def rank_metrics(ranks: np.ndarray, prefix: str) -> dict[str, float]:
    """Recall@1/5/10, MRR and median rank of 1-based ranks, named ``<prefix>recall@k`` etc."""
    if len(ranks) == 0:
        return {}
    out = {f"{prefix}recall@{k}": float(np.mean(ranks <= k)) for k in RECALL_KS}
    out[f"{prefix}mrr"] = float(np.mean(1.0 / ranks))
    out[f"{prefix}median_rank"] = float(np.median(ranks))
    return out


def retrieval_metrics(queries: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Both directions (``q2t_`` query → target, ``t2q_`` target → query) and their means (``recall@k``, ``mrr``):
    ``recall@10``, the mean of both directions, is what best-epoch selection follows."""
    out = {**rank_metrics(pair_ranks(queries, targets), "q2t_"), **rank_metrics(pair_ranks(targets, queries), "t2q_")}
    if not out:
        return out
    for k in RECALL_KS:
        out[f"recall@{k}"] = (out[f"q2t_recall@{k}"] + out[f"t2q_recall@{k}"]) / 2
    out["mrr"] = (out["q2t_mrr"] + out["t2q_mrr"]) / 2
    return out
