"""Feature-level (early) fusion methods."""

from __future__ import annotations

import torch
from torch import nn

from ..encoders.base import Encoded
from ..params.fusion import ConcatParams, ProductParams, WeightedParams
from ..registry import FUSIONS, register
from .base import Fusion, FusionInput, FusionParams, MissingEmbedding


@register(FUSIONS, "concat")
class ConcatFusion(Fusion):
    """Concatenate the pooled embeddings (absent ones replaced by a learned "missing" vector), then an MLP layer.

    The baseline of every multimodal toolkit (e.g. Ludwig's concat combiner, seed 000's joint classifier).
    """

    Params = ConcatParams

    def __init__(self, inputs: list[FusionInput], dim: int, dropout: float, params: FusionParams):
        super().__init__(inputs, dim, dropout, params)
        self.missing = MissingEmbedding(inputs)
        width = sum(f.dim for f in inputs)
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        return self.mlp(torch.cat([self.missing(f.name, encoded[f.name]) for f in self.inputs], dim=1))


def _masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1 of ``logits`` [B, M] counting only True entries of ``mask`` [B, M]; all-False rows → 0."""
    logits = logits.masked_fill(~mask, float("-inf"))
    top = logits.max(dim=1, keepdim=True).values
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    e = torch.exp(logits - top) * mask.to(logits.dtype)
    return e / e.sum(dim=1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)


@register(FUSIONS, "weighted")
class WeightedFusion(Fusion):
    Params = WeightedParams

    def __init__(self, inputs: list[FusionInput], dim: int, dropout: float, params: FusionParams):
        super().__init__(inputs, dim, dropout, params)
        self.proj = nn.ModuleDict({f.name: nn.Linear(f.dim, dim) for f in inputs})
        self.logits = nn.Parameter(torch.zeros(len(inputs)))
        self.empty = nn.Parameter(torch.zeros(dim))  # the fused vector of a row with no modality present
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        masks = torch.stack([encoded[f.name].mask for f in self.inputs], dim=1)  # [B, M]
        hs = []
        for f in self.inputs:
            enc = encoded[f.name]
            h = self.proj[f.name](enc.pooled)
            hs.append(torch.where(enc.mask.unsqueeze(1), h, torch.zeros_like(h)))
        h = torch.stack(hs, dim=1)  # [B, M, dim]
        w = _masked_softmax(self.logits.to(h.dtype).expand(h.shape[0], -1), masks)
        fused = (w.unsqueeze(-1) * h).sum(1)
        any_present = masks.any(dim=1, keepdim=True)
        fused = torch.where(any_present, fused, self.empty.to(h.dtype).expand_as(fused))
        return self.mlp(fused)

    def modality_weights(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        """The learned softmax weights, renormalised over each row's present modalities."""
        masks = torch.stack([encoded[f.name].mask for f in self.inputs], dim=1)
        return _masked_softmax(self.logits.expand(masks.shape[0], -1), masks)


@register(FUSIONS, "product")
class ProductFusion(Fusion):
    Params = ProductParams

    def __init__(self, inputs: list[FusionInput], dim: int, dropout: float, params: FusionParams):
        super().__init__(inputs, dim, dropout, params)
        self.proj = nn.ModuleDict({f.name: nn.Linear(f.dim, dim) for f in inputs})
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        out = None
        for f in self.inputs:
            enc = encoded[f.name]
            h = self.proj[f.name](enc.pooled)
            h = torch.where(enc.mask.unsqueeze(1), h, torch.ones_like(h))
            out = h if out is None else out * h
        return self.mlp(out)
