"""Decision-level (late) fusion: one head per modality, their decisions combined."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..encoders.base import Encoded
from ..errors import ConfigError
from ..params.fusion import LateParams
from ..registry import FUSIONS, register
from .base import Fusion, FusionInput
from .early import _masked_softmax

if TYPE_CHECKING:
    from ..tasks import Task

# Vote counts dominate; mean probabilities only break ties (and rank classes no modality voted for).
_TIE_BREAK = 1e-3


@register(FUSIONS, "late")
class LateFusion(Fusion):
    Params = LateParams
    params: LateParams
    decides = True

    def __init__(self, inputs: list[FusionInput], dim: int, dropout: float, params: LateParams, task: "Task"):
        super().__init__(inputs, dim, dropout, params)
        from ..tasks.classification import ClassificationTask

        self.classify = isinstance(task, ClassificationTask)
        if params.combine == "vote" and not self.classify:
            raise ConfigError(
                "fusion 'late' with combine='vote' needs a classification task; use combine='weighted' for regression"
            )
        self.heads = nn.ModuleDict(
            {
                f.name: nn.Sequential(
                    nn.LayerNorm(f.dim), nn.Linear(f.dim, dim), nn.GELU(), nn.Dropout(dropout), task.head(dim)
                )
                for f in inputs
            }
        )
        self.logits = nn.Parameter(torch.zeros(len(inputs)))
        self.empty = nn.Parameter(torch.zeros(task.n_outputs))  # outputs of a row with no modality: a learned prior
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        masks = torch.stack([encoded[f.name].mask for f in self.inputs], dim=1)  # [B, M]
        # An absent modality's pooled vector may hold anything (even NaN): zero it so its head stays finite.
        heads = torch.stack(
            [
                self.heads[f.name](
                    torch.where(
                        encoded[f.name].mask.unsqueeze(1),
                        encoded[f.name].pooled,
                        torch.zeros_like(encoded[f.name].pooled),
                    )
                )
                for f in self.inputs
            ],
            dim=1,
        )  # [B, M, K]
        if self.training:
            self._last = (heads, masks)
        if self.params.combine == "vote":
            out = self._vote(heads, masks)
        else:
            w = _masked_softmax(self.logits.to(heads.dtype).expand(heads.shape[0], -1), masks).unsqueeze(-1)
            if self.classify:  # average probabilities; their log is a logit vector whose softmax is that average
                out = (w * heads.float().softmax(-1)).sum(1).clamp_min(1e-12).log().to(heads.dtype)
            else:
                out = (w * heads).sum(1)
        none = ~masks.any(dim=1, keepdim=True)
        return torch.where(none, self.empty.to(out.dtype).expand_as(out), out)

    def modality_weights(self, encoded: dict[str, Encoded]) -> torch.Tensor | None:
        """The learned combination weights over the present modalities (None for a vote: every head counts once)."""
        if self.params.combine == "vote":
            return None
        masks = torch.stack([encoded[f.name].mask for f in self.inputs], dim=1)
        return _masked_softmax(self.logits.expand(masks.shape[0], -1), masks)

    @staticmethod
    def _vote(heads: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        present = masks.unsqueeze(-1).to(heads.dtype)
        probs = heads.float().softmax(-1) * present
        votes = nn.functional.one_hot(probs.argmax(-1), heads.shape[-1]).to(probs.dtype) * present
        mean = probs.sum(1) / present.sum(1).clamp_min(1)
        scores = votes.sum(1) + _TIE_BREAK * mean
        return (scores / scores.sum(-1, keepdim=True).clamp_min(1e-12)).clamp_min(1e-12).log().to(heads.dtype)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor, task: "Task") -> torch.Tensor:
        if self._last is None:  # outputs not from a training-mode forward: only the combined loss is known
            return task.loss(outputs, target)
        heads, masks = self._last
        self._last = None
        per_head = [
            task.loss(heads[:, i][masks[:, i]], target[masks[:, i]]) for i in range(masks.shape[1]) if masks[:, i].any()
        ]
        head_loss = torch.stack(per_head).mean() if per_head else outputs.sum() * 0
        if self.params.combine == "weighted":
            return task.loss(outputs, target) + self.params.head_loss_weight * head_loss
        # A vote has no useful gradient: train the heads on their own, and the prior on rows with nothing present.
        none = ~masks.any(dim=1)
        prior = task.loss(outputs[none], target[none]) if none.any() else outputs.sum() * 0
        return head_loss + prior
