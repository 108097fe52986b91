"""Feature-level (early) fusion methods."""
from __future__ import annotations

import torch
from torch import nn

from ..encoders.base import Encoded
from ..registry import FUSIONS, register
from .base import Fusion, FusionInput, FusionParams, MissingEmbedding


@register(FUSIONS, "concat")
class ConcatFusion(Fusion):
    """Concatenate the pooled embeddings (absent ones replaced by a learned "missing" vector), then an MLP layer.

    The baseline of every multimodal toolkit (e.g. Ludwig's concat combiner, seed 000's joint classifier).
    """

    def __init__(self, inputs: list[FusionInput], dim: int, dropout: float, params: FusionParams):
        super().__init__(inputs, dim, dropout, params)
        self.missing = MissingEmbedding(inputs)
        width = sum(f.dim for f in inputs)
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        return self.mlp(torch.cat([self.missing(f.name, encoded[f.name]) for f in self.inputs], dim=1))
