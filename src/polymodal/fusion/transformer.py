"""Cross-modal transformer fusion over the encoders' token sequences."""

from __future__ import annotations

import torch
from torch import nn

from ..encoders.base import Encoded
from ..params.fusion import TransformerParams
from ..registry import FUSIONS, register
from .attention import CLSTransformerFusion
from .base import FusionInput, token_sequence


@register(FUSIONS, "transformer")
class TransformerFusion(CLSTransformerFusion):
    Params = TransformerParams
    params: TransformerParams

    def __init__(self, inputs: list[FusionInput], dim: int, dropout: float, params: TransformerParams):
        super().__init__(inputs, dim, dropout, params)
        self.pos_emb = nn.Parameter(torch.randn(params.max_tokens, dim) * 0.02)

    def sequences(self, encoded: dict[str, Encoded]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        seqs, keeps = [], []
        for i, f in enumerate(self.inputs):
            toks, keep = token_sequence(encoded[f.name], self.params.max_tokens)
            t = toks.shape[1]
            seqs.append(self.proj[f.name](toks) + self.type_emb[i] + self.pos_emb[:t])
            keeps.append(keep)
        return seqs, keeps
