"""Gating fusion methods."""

from __future__ import annotations

import torch
from torch import nn

from ..encoders.base import Encoded
from ..params.fusion import GatedParams
from ..registry import FUSIONS, register
from .base import Fusion, FusionInput, FusionParams, MissingEmbedding
from .early import _masked_softmax


@register(FUSIONS, "gated")
class GatedFusion(Fusion):
    Params = GatedParams

    def __init__(self, inputs: list[FusionInput], dim: int, dropout: float, params: FusionParams):
        super().__init__(inputs, dim, dropout, params)
        self.missing = MissingEmbedding(inputs)
        self.proj = nn.ModuleDict({f.name: nn.Linear(f.dim, dim) for f in inputs})
        width = sum(f.dim for f in inputs)
        # one gate per modality and output feature, computed from the concatenation of all inputs
        self.gate = nn.Linear(width, len(inputs) * dim)
        self.empty = nn.Parameter(torch.zeros(dim))  # output of a row with no modality present
        self.drop = nn.Dropout(dropout)

    def _gates(self, encoded: dict[str, Encoded]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """(inputs with absent ones filled in, presence masks [B, M], gates [B, M, D] summing to 1 over M)."""
        xs = [self.missing(f.name, encoded[f.name]) for f in self.inputs]
        masks = torch.stack([encoded[f.name].mask for f in self.inputs], dim=1)  # [B, M]
        b, m, d = masks.shape[0], len(self.inputs), self.dim
        logits = self.gate(torch.cat(xs, dim=1)).view(b, m, d)
        return xs, masks, _masked_softmax(logits, masks.unsqueeze(-1).expand(b, m, d))  # over modalities, per feature

    def modality_weights(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        """Each modality's gate, averaged over the fused features."""
        return self._gates(encoded)[2].mean(-1)

    def forward(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        xs, masks, z = self._gates(encoded)
        hs = torch.stack([torch.tanh(self.proj[f.name](x)) for f, x in zip(self.inputs, xs)], dim=1)  # [B, M, D]
        hs = torch.where(masks.unsqueeze(-1), hs, torch.zeros_like(hs))
        fused = (z * hs).sum(1)
        fused = torch.where(masks.any(1, keepdim=True), fused, self.empty.to(fused.dtype).expand_as(fused))
        return self.drop(fused)
