"""The "crossmodal" architecture of ``problem_type: pretrain``: every modality's encoder → its own projection into
one shared space, and a small predictor per modality that guesses its embedding from the row's other modalities.

The forward pass returns ``[B, 2, M, D]`` (see :mod:`polymodal.tasks.pretrain`): the unit projections times
``sqrt(1 / temperature)`` (so that dot products are InfoNCE logits, as in :mod:`polymodal.towers`) and the unit
predictions; a modality absent from a row is a zero vector in both, and so is a prediction with no other modality
to predict from. Only ``encoders`` are meant to be reused (``training.init``); the projections and predictors are
pre-training scaffolding.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import nn

from .config import PolymodalConfig
from .encoders import Encoder, encoder_lr_scales
from .errors import ConfigError
from .registry import ARCHITECTURES, register
from .tasks import Task

if TYPE_CHECKING:
    from .data.dataset import Batch


class CrossModalModel(nn.Module):
    def __init__(self, encoders: dict[str, nn.Module], dim: int, temperature: float, max_logit_scale: float):
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.projections = nn.ModuleDict(
            {name: nn.Linear(cast(Encoder, enc).dim, dim) for name, enc in encoders.items()}
        )
        self.predictors = nn.ModuleDict(
            {name: nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim)) for name in encoders}
        )
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        self.max_log_scale = math.log(max_logit_scale)

    def logit_scale(self) -> torch.Tensor:
        return self.log_scale.clamp(max=self.max_log_scale).exp()

    def embeddings(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, M, D]`` unit projections, zero where the modality is absent."""
        out = []
        for name, enc in self.encoders.items():
            z = F.normalize(self.projections[name](enc(inputs, masks[name]).pooled).float(), dim=-1)
            out.append(z * masks[name].unsqueeze(-1).to(z.dtype))
        return torch.stack(out, dim=1)

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        z = self.embeddings(inputs, masks)
        present = torch.stack([masks[name] for name in self.encoders], dim=1).to(z.dtype)  # [B, M]
        # each modality "masked" in turn: the mean of the row's other present modalities predicts it
        others = (z.sum(dim=1, keepdim=True) - z) / (present.sum(dim=1, keepdim=True) - present).clamp(min=1).unsqueeze(
            -1
        )
        has_others = (present.sum(dim=1, keepdim=True) - present) > 0
        preds = torch.stack(
            [F.normalize(self.predictors[name](others[:, k]).float(), dim=-1) for k, name in enumerate(self.encoders)],
            dim=1,
        )
        preds = preds * has_others.unsqueeze(-1).to(preds.dtype)
        return torch.stack([z * self.logit_scale().sqrt(), preds], dim=1)

    def outputs(self, batch: "Batch") -> torch.Tensor:
        return self(batch.inputs, batch.masks)

    def lr_scales(self) -> dict[str, float]:
        return encoder_lr_scales(self.encoders)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor, task: Task) -> torch.Tensor:
        return task.loss(outputs, target)


@register(ARCHITECTURES, "crossmodal")
def build_crossmodal(config: PolymodalConfig, encoders: dict[str, nn.Module], task: Task) -> CrossModalModel:
    if len(encoders) < 2:
        raise ConfigError(
            f"self-supervised pre-training contrasts a row's modalities with each other, and this table has "
            f"{len(encoders)} ({', '.join(encoders) or 'none'}); give it at least two input columns of different "
            "modalities (e.g. an image and an audio column)"
        )
    p = config.task.pretrain
    return CrossModalModel(encoders, p.dim, p.temperature, p.max_logit_scale)
