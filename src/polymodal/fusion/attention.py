"""Self-attention fusion over one token per modality plus an always-present [CLS] token."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ..encoders.base import Encoded
from ..errors import ConfigError
from ..params.fusion import AttentionParams
from ..registry import FUSIONS, register
from .base import Fusion, FusionInput


def check_heads(dim: int, heads: int, name: str) -> None:
    if dim % heads:
        raise ConfigError(f"fusion '{name}': dim {dim} is not divisible by heads {heads}")


def transformer_stack(dim: int, heads: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        dim, heads, dim_feedforward=2 * dim, dropout=dropout, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class CLSTransformerFusion(Fusion):
    """Shared by the attention-based fusions: per-modality projections and type embeddings, a [CLS] token that
    is always present (so a row with every modality absent still has something to attend to), a transformer
    stack, and the [CLS] readout."""

    registry_name: ClassVar[str]  # set by @register on each subclass

    def __init__(self, inputs: list[FusionInput], dim: int, dropout: float, params: AttentionParams):
        super().__init__(inputs, dim, dropout, params)
        check_heads(dim, params.heads, self.registry_name)
        self.proj = nn.ModuleDict({f.name: nn.Linear(f.dim, dim) for f in inputs})
        self.type_emb = nn.Parameter(torch.randn(len(inputs), dim) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.encoder = transformer_stack(dim, params.heads, params.layers, dropout)
        self.norm = nn.LayerNorm(dim)

    def sequences(self, encoded: dict[str, Encoded]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each modality's token sequence [B, T_i, D] and which of its positions are valid [B, T_i]."""
        raise NotImplementedError

    def forward(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        return self.readout(*self.sequences(encoded))

    def _with_cls(self, seqs: list[torch.Tensor], keeps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        b = seqs[0].shape[0]
        seq = torch.cat([self.cls.expand(b, -1, -1), *seqs], 1)
        keep = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=seq.device), *keeps], 1)
        return seq, keep

    def readout(self, seqs: list[torch.Tensor], keeps: list[torch.Tensor]) -> torch.Tensor:
        """Prepend [CLS] to the token sequences [B, T_i, D] (valid where ``keeps`` [B, T_i]), encode, read [CLS]."""
        seq, keep = self._with_cls(seqs, keeps)
        return self.norm(self.encoder(seq, src_key_padding_mask=~keep)[:, 0])

    def modality_weights(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        """The last layer's attention from [CLS] to each modality's tokens (heads averaged, summed over the
        modality's tokens), renormalised over the modalities: [CLS] attending to itself is left out."""
        seqs, keeps = self.sequences(encoded)
        x, keep = self._with_cls(seqs, keeps)
        weights = None
        # The layers' fused fast path never returns attention weights: replay each (pre-norm) layer by hand.
        for layer in self.encoder.layers:
            h = layer.norm1(x)
            out, weights = layer.self_attn(
                h, h, h, key_padding_mask=~keep, need_weights=True, average_attn_weights=True
            )
            x = x + layer.dropout1(out)
            x = x + layer._ff_block(layer.norm2(x))
        assert weights is not None, "a transformer stack has at least one layer"
        cls_row = weights[:, 0, 1:]  # [B, sum T_i]
        per_modality = torch.stack([part.sum(1) for part in cls_row.split([s.shape[1] for s in seqs], dim=1)], 1)
        return per_modality / per_modality.sum(1, keepdim=True).clamp_min(torch.finfo(per_modality.dtype).tiny)


@register(FUSIONS, "attention")
class AttentionFusion(CLSTransformerFusion):
    Params = AttentionParams

    def __init__(self, inputs: list[FusionInput], dim: int, dropout: float, params: AttentionParams):
        super().__init__(inputs, dim, dropout, params)
        self.missing = nn.Parameter(torch.zeros(len(inputs), dim))

    def sequences(self, encoded: dict[str, Encoded]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        tokens, present = [], []
        for i, f in enumerate(self.inputs):
            enc = encoded[f.name]
            x = self.proj[f.name](enc.pooled)
            x = torch.where(enc.mask.unsqueeze(1), x, self.missing[i].to(x.dtype).expand_as(x))
            tokens.append((x + self.type_emb[i]).unsqueeze(1))
            present.append(enc.mask.unsqueeze(1))
        return tokens, present
