"""Self-supervised pre-training (``problem_type: pretrain``): no label, the rows themselves are the signal.

The network (the "crossmodal" architecture, :mod:`polymodal.crossmodal`) outputs ``[B, 2, M, D]`` for ``M``
modalities: ``[:, 0]`` each modality's unit-norm projection scaled by the square root of the learned
``1 / temperature`` (zero where the modality is absent), ``[:, 1]`` each modality's embedding as predicted from the
row's other modalities (unit norm; zero where it cannot be predicted). The loss is

- cross-modal InfoNCE (:func:`polymodal.tasks.retrieval.info_nce`, in-batch negatives) for every pair of
  modalities, over the rows where both are present, averaged over the pairs; plus
- ``masked_weight`` times the masked-modality loss: ``1 - cos(prediction, embedding)`` with the embedding's
  gradient stopped (the target moves with the encoder, as in SimSiam / data2vec; the contrastive term keeps the
  space from collapsing).

As for retrieval, the "label" is each row's position (:data:`~polymodal.tasks.retrieval.PAIR_COLUMN`), so the
fitting steps run unchanged.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..config import TaskConfig
from ..metrics.retrieval import retrieval_metrics
from ..registry import TASKS, register
from .base import Task
from .retrieval import info_nce


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def present_rows(outputs: torch.Tensor) -> torch.Tensor:
    """``[B, M]``: True where the modality's embedding is non-zero (the model zeroes absent modalities)."""
    return outputs[:, 0].abs().sum(-1) > 0


def contrastive_loss(outputs: torch.Tensor) -> torch.Tensor:
    """Mean symmetric InfoNCE over the pairs of modalities, each over the rows holding both."""
    z = outputs[:, 0].float()
    present = present_rows(outputs)
    losses = []
    for i, j in combinations(range(z.shape[1]), 2):
        # Under DDP every rank must join every gather: all rows there (an absent row is a zero vector, logit 0).
        keep = torch.ones_like(present[:, i]) if _distributed() else present[:, i] & present[:, j]
        if int(keep.sum()) < 2:
            continue
        losses.append(info_nce(torch.stack([z[keep, i], z[keep, j]], dim=1)))
    return torch.stack(losses).mean() if losses else z.sum() * 0.0


def masked_loss(outputs: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cos(predicted, embedding.detach())`` over the (row, modality) cells that have both."""
    z, p = outputs[:, 0].float(), outputs[:, 1].float()
    cells = present_rows(outputs) & (p.abs().sum(-1) > 0)
    if not bool(cells.any()):
        return p.sum() * 0.0
    cos = F.cosine_similarity(p[cells], z[cells].detach(), dim=-1)
    return (1 - cos).mean()


@register(TASKS, "pretrain")
class PretrainTask(Task):
    problem_type = "pretrain"
    target_dtype = torch.long
    architecture = "crossmodal"
    monitor = ("mrr", "max")

    def __init__(self, config: TaskConfig):
        super().__init__(config)
        self.pretrain = config.pretrain

    def fit_target(self, y: pd.Series) -> None:
        """Nothing to learn: the targets are the rows' positions."""

    def encode_target(self, y: pd.Series) -> np.ndarray:
        return np.asarray(pd.to_numeric(y, errors="coerce").fillna(-1), dtype=np.int64)

    @property
    def n_outputs(self) -> int:
        return self.pretrain.dim

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return contrastive_loss(outputs) + self.pretrain.masked_weight * masked_loss(outputs)

    def postprocess(self, outputs: Any) -> np.ndarray:
        """For each row, the row (of the same table) whose second modality is closest to its first modality."""
        z = np.asarray(outputs, dtype=np.float32)[:, 0]
        return np.argmax(z[:, 0] @ z[:, 1].T, axis=1) if z.shape[1] > 1 else np.zeros(len(z), np.int64)

    def metrics(self, y_true: pd.Series, outputs: Any) -> dict[str, float]:
        """Cross-modal retrieval between every pair of modalities (rows holding both), averaged over the pairs:
        ``recall@1/5/10`` and ``mrr``; and ``masked_cosine``, the mean cosine of the masked-modality predictions."""
        out = np.asarray(outputs, dtype=np.float32)
        z, p = out[:, 0], out[:, 1]
        present = np.abs(z).sum(-1) > 0
        per_pair = []
        for i, j in combinations(range(z.shape[1]), 2):
            keep = present[:, i] & present[:, j]
            if keep.sum() >= 2:
                per_pair.append(retrieval_metrics(z[keep, i], z[keep, j]))
        metrics: dict[str, float] = {}
        if per_pair:
            for k in ("recall@1", "recall@5", "recall@10", "mrr"):
                metrics[k] = float(np.mean([m[k] for m in per_pair]))
        cells = present & (np.abs(p).sum(-1) > 0)
        if cells.any():
            zn = z[cells] / np.maximum(np.linalg.norm(z[cells], axis=-1, keepdims=True), 1e-12)
            metrics["masked_cosine"] = float(np.mean(np.sum(zn * p[cells], axis=-1)))
        return metrics

    def state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        pass
