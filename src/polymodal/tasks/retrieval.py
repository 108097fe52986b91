"""Retrieval: two towers embed a row's query columns and its target columns into one space, trained with a
symmetric InfoNCE loss (CLIP; Radford et al. 2021) over in-batch negatives.

The table's rows are the pairs: the "label" is the row's position (a column the fit adds, :data:`PAIR_COLUMN`), so
the one split rule, the decoders and the training loop work unchanged. The network (the "two_tower" architecture,
:mod:`polymodal.towers`) outputs ``[B, 2, dim]``: the query and target embeddings, L2-normalised and scaled by the
square root of the learned ``1 / temperature``, so that their dot product is the InfoNCE logit and the loss needs
no other parameter. Predictions and search use the directions only (re-normalised).

Under DDP every rank's embeddings are gathered (``all_gather``, the local part keeps its gradient), so each query
sees the targets of the whole global batch as negatives. With ``task.retrieval.hard_negatives: k`` each query also
sees the ``k`` training targets closest to it that are not its own, mined after every epoch
(:mod:`polymodal.tasks.retrieval_mining`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..config import PolymodalConfig, TaskConfig
from ..errors import ConfigError
from ..metrics.retrieval import normalise, retrieval_metrics
from ..registry import TASKS, register
from .base import Task
from .retrieval_mining import HardNegativeMiner, HardNegatives

#: the column a retrieval fit adds to the table: each row's position, its pair id
PAIR_COLUMN = "__pair__"
SIDES = ("query", "target")


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every rank's ``x`` (first dimension may differ) concatenated in rank order, and where the local rows start;
    only the local part carries a gradient (the others are constants here, as in OpenCLIP's ``gather_features``).
    One process: ``(x, 0)``."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x.detach()
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    pieces = [p[:c] for p, c in zip(parts, counts, strict=True)]
    pieces[rank] = x
    return torch.cat(pieces), sum(counts[:rank])


def info_nce(outputs: torch.Tensor, hard: HardNegatives | None = None) -> torch.Tensor:
    """Symmetric InfoNCE of ``[B, 2, D]`` scaled embeddings: the mean of query→target and target→query
    cross-entropies, with the other rows of the (global) batch as negatives. ``hard``: each query's mined negatives
    (unit target embeddings, :mod:`polymodal.tasks.retrieval_mining`), extra columns of its query→target logits."""
    q, t = outputs[:, 0].float(), outputs[:, 1].float()
    all_q, start = gather_with_grad(q)
    all_t, _ = gather_with_grad(t)
    right = torch.arange(start, start + q.shape[0], device=q.device)
    q2t = q @ all_t.T
    if hard is not None:
        # the mined vectors are unit norm; t's rows carry sqrt(logit scale), as q's do
        extra = torch.einsum("bd,bkd->bk", q, hard.vectors.to(q.dtype)) * t.norm(dim=-1, keepdim=True)
        q2t = torch.cat([q2t, extra.masked_fill(~hard.valid, -torch.inf)], dim=1)
    return (F.cross_entropy(q2t, right) + F.cross_entropy(t @ all_q.T, right)) / 2


@register(TASKS, "retrieval")
class RetrievalTask(Task):
    problem_type = "retrieval"
    target_dtype = torch.long
    architecture = "two_tower"
    monitor = ("recall@10", "max")

    def __init__(self, config: TaskConfig):
        super().__init__(config)
        self.retrieval = config.retrieval
        self.miner = HardNegativeMiner(config.retrieval.hard_negatives) if config.retrieval.hard_negatives else None

    def resolve(self, config: PolymodalConfig, kinds: set[str]) -> None:
        r = config.task.retrieval
        if not r.query or not r.target:
            raise ConfigError(
                "problem_type 'retrieval' needs query and target columns: query=['title'], target=['image'] "
                "(--query title --target image)"
            )
        both = sorted(set(r.query) & set(r.target))
        if both:
            raise ConfigError(f"column(s) {', '.join(both)} are both query and target; each column has one side")
        self.retrieval = r
        self.miner = HardNegativeMiner(r.hard_negatives) if r.hard_negatives else None

    def fit_target(self, y: pd.Series) -> None:
        """Nothing to learn: the targets are the pairs' positions."""

    def encode_target(self, y: pd.Series) -> np.ndarray:
        return np.asarray(pd.to_numeric(y, errors="coerce").fillna(-1), dtype=np.int64)

    @property
    def n_outputs(self) -> int:
        return self.retrieval.dim

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """InfoNCE over the batch; with ``hard_negatives``, training steps (outputs that carry a gradient, never
        validation) also get each query's mined negatives from the previous epoch (``target`` = the pair ids)."""
        hard = None
        if self.miner is not None and outputs.requires_grad:
            units = F.normalize(outputs.detach().float(), dim=-1)
            hard = self.miner.step(units[:, 0], units[:, 1], target)
        return info_nce(outputs, hard)

    def postprocess(self, outputs: Any) -> np.ndarray:
        """For each row, the position (in the same table) of the target its query embeds closest to."""
        q, t = self.embeddings(outputs, "query"), self.embeddings(outputs, "target")
        best = np.empty(len(q), dtype=np.int64)
        for start in range(0, len(q), 1024):
            best[start : start + 1024] = np.argmax(q[start : start + 1024] @ t.T, axis=1)
        return best

    @staticmethod
    def embeddings(outputs: Any, side: str) -> np.ndarray:
        """One side's unit-norm float32 vectors from the network's ``[N, 2, D]`` outputs."""
        if side not in SIDES:
            raise ConfigError(f"side must be 'query' or 'target', not {side!r}")
        out = np.asarray(outputs, dtype=np.float32)
        return normalise(out[:, SIDES.index(side)])

    def metrics(self, y_true: pd.Series, outputs: Any) -> dict[str, float]:
        """Recall@1/5/10, MRR and median rank in both directions; row i's query matches row i's target."""
        return retrieval_metrics(self.embeddings(outputs, "query"), self.embeddings(outputs, "target"))

    def state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        pass
