"""From-scratch text encoders over the processor's token ids (0 = padding)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..params.encoders import TextRNNConfig, TextTransformerConfig
from ..registry import ENCODERS, register
from ..schema import Modality
from .base import Encoded, Encoder, masked_mean, zero_absent


@register(ENCODERS, "text_rnn")
class TextRNN(Encoder):
    Config = TextRNNConfig
    kinds = ("text",)

    def __init__(self, modality: Modality, processor: Any, config: TextRNNConfig):
        super().__init__(modality, processor, config)
        self.embed = nn.Embedding(len(processor.vocab), config.embedding_dim, padding_idx=0)
        rnn = nn.GRU if config.cell == "gru" else nn.LSTM
        self.rnn = rnn(
            config.embedding_dim,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        self.token_proj = nn.Linear(2 * config.hidden, config.dim)
        self.proj = nn.Linear(4 * config.hidden, config.dim)

    def lookup_tables(self) -> dict[str, nn.Embedding]:
        return {self.modality.name: self.embed}

    def encode(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> Encoded:
        ids = inputs[self.modality.name]
        tmask = ids != 0
        states, _ = self.rnn(self.drop(self.embed(ids)))
        maxed = states.masked_fill(~tmask.unsqueeze(-1), -1e4).amax(1)
        pooled = self.proj(self.drop(torch.cat([masked_mean(states, tmask), maxed], dim=1)))
        return Encoded(zero_absent(pooled, mask), zero_absent(self.token_proj(states), mask), mask, tmask)


@register(ENCODERS, "text_transformer")
class TextTransformer(Encoder):
    Config = TextTransformerConfig
    kinds = ("text",)
    config: TextTransformerConfig

    def __init__(self, modality: Modality, processor: Any, config: TextTransformerConfig):
        super().__init__(modality, processor, config)
        d = config.dim
        self.embed = nn.Embedding(len(processor.vocab), d, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(1, config.max_positions, d) / math.sqrt(d))
        layer = nn.TransformerEncoderLayer(
            d, config.heads, 4 * d, config.dropout, batch_first=True, norm_first=True, activation="gelu"
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    def lookup_tables(self) -> dict[str, nn.Embedding]:
        return {self.modality.name: self.embed}

    def encode(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> Encoded:
        ids = inputs[self.modality.name][:, : self.config.max_positions]
        tmask = ids != 0
        # Rows with no tokens at all (absent text) would make attention softmax over nothing: keep slot 0 open.
        safe = tmask.clone()
        safe[:, 0] = True
        x = self.embed(ids) + self.pos[:, : ids.shape[1]]
        tokens = self.norm(self.encoder(x, src_key_padding_mask=~safe))
        pooled = masked_mean(tokens, tmask)
        return Encoded(zero_absent(pooled, mask), zero_absent(tokens, mask), mask, tmask)
