"""Tensor-product fusion methods."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..encoders.base import Encoded
from ..params.fusion import LowRankParams, TensorParams
from ..registry import FUSIONS, register
from .base import Fusion, FusionInput, MissingEmbedding


@register(FUSIONS, "tensor")
class TensorFusion(Fusion):
    Params = TensorParams

    def __init__(self, inputs: list[FusionInput], dim: int, dropout: float, params: TensorParams):
        super().__init__(inputs, dim, dropout, params)
        r = params.rank_dim
        self.missing = MissingEmbedding(inputs)
        self.proj = nn.ModuleDict({f.name: nn.Sequential(nn.LayerNorm(f.dim), nn.Linear(f.dim, r)) for f in inputs})
        width = (r + 1) ** len(inputs)
        self.out = nn.Sequential(nn.Linear(width, dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        z = None
        for f in self.inputs:
            h = self.proj[f.name](self.missing(f.name, encoded[f.name]))
            h = torch.cat([h, torch.ones_like(h[:, :1])], dim=1)  # append 1: keep unimodal and bimodal terms
            z = h if z is None else (z.unsqueeze(2) * h.unsqueeze(1)).flatten(1)
        return self.out(z)


@register(FUSIONS, "lowrank")
class LowRankFusion(Fusion):
    Params = LowRankParams

    def __init__(self, inputs: list[FusionInput], dim: int, dropout: float, params: LowRankParams):
        super().__init__(inputs, dim, dropout, params)
        self.missing = MissingEmbedding(inputs)
        self.norm = nn.ModuleDict({f.name: nn.LayerNorm(f.dim) for f in inputs})
        self.factors = nn.ParameterDict(
            {f.name: nn.Parameter(torch.randn(params.rank, f.dim + 1, dim) / math.sqrt(f.dim + 1)) for f in inputs}
        )
        self.rank_weights = nn.Parameter(torch.full((1, params.rank), 1.0 / params.rank))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        prod = None
        for f in self.inputs:
            x = self.norm[f.name](self.missing(f.name, encoded[f.name]))
            x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)  # [B, d+1]
            fx = torch.einsum("bi,rio->rbo", x, self.factors[f.name].to(x.dtype))  # [rank, B, dim]
            prod = fx if prod is None else prod * fx
        assert prod is not None, "a fusion has at least one input"
        fused = torch.einsum("r,rbo->bo", self.rank_weights[0].to(prod.dtype), prod) + self.bias
        return self.out(fused)
