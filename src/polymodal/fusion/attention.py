"""Self-attention fusion over one token per modality plus an always-present [CLS] token."""
from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ..encoders.base import Encoded
from ..errors import ConfigError
from ..registry import FUSIONS, register
from .base import Fusion, FusionInput, FusionParams


class AttentionParams(FusionParams):
    heads: int = Field(4, ge=1, description="attention heads (must divide the fusion dim)")
    layers: int = Field(1, ge=1, le=4, description="transformer encoder layers")


def check_heads(dim: int, heads: int, name: str) -> None:
    if dim % heads:
        raise ConfigError(f"fusion '{name}': dim {dim} is not divisible by heads {heads}")


def transformer_stack(dim: int, heads: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=dropout, activation="gelu",
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


@register(FUSIONS, "attention")
class AttentionFusion(Fusion):
    """Self-attention over one token per modality with a [CLS] readout (Vaswani et al. 2017, Transformer)."""

    Params = AttentionParams

    def __init__(self, inputs: list[FusionInput], dim: int, dropout: float, params: AttentionParams):
        super().__init__(inputs, dim, dropout, params)
        check_heads(dim, params.heads, "attention")
        self.proj = nn.ModuleDict({f.name: nn.Linear(f.dim, dim) for f in inputs})
        self.type_emb = nn.Parameter(torch.randn(len(inputs), dim) * 0.02)
        self.missing = nn.Parameter(torch.zeros(len(inputs), dim))
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.encoder = transformer_stack(dim, params.heads, params.layers, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        tokens, present = [], []
        for i, f in enumerate(self.inputs):
            enc = encoded[f.name]
            x = self.proj[f.name](enc.pooled)
            x = torch.where(enc.mask.unsqueeze(1), x, self.missing[i].to(x.dtype).expand_as(x))
            tokens.append(x + self.type_emb[i])
            present.append(enc.mask)
        b = tokens[0].shape[0]
        seq = torch.cat([self.cls.expand(b, -1, -1), torch.stack(tokens, 1)], 1)
        keep = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=seq.device), torch.stack(present, 1)], 1)
        out = self.encoder(seq, src_key_padding_mask=~keep)
        return self.norm(out[:, 0])
