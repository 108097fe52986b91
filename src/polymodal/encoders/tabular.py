"""Tabular encoder: an MLP over standardised numerics (+ missing flags) and category embeddings."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from ..params.encoders import TabularMLPConfig
from ..registry import ENCODERS, register
from ..schema import Modality
from .base import Encoded, Encoder, zero_absent


@register(ENCODERS, "tabular_mlp")
class TabularMLP(Encoder):
    Config = TabularMLPConfig
    kinds = ("tabular",)

    def __init__(self, modality: Modality, processor: Any, config: TabularMLPConfig):
        super().__init__(modality, processor, config)
        self.n_numeric = len(processor.numeric)
        self.categorical = list(processor.categorical)
        self.embeds = nn.ModuleList(
            nn.Embedding(n, min(config.max_embedding_dim, max(2, round(1.6 * n**0.56))))
            for n in processor.cardinalities()
        )
        width = 2 * self.n_numeric + sum(cast(nn.Embedding, e).embedding_dim for e in self.embeds)
        layers: list[nn.Module] = []
        for _ in range(config.layers):
            layers += [nn.Linear(width, config.hidden), nn.GELU(), nn.Dropout(config.dropout)]
            width = config.hidden
        self.mlp = nn.Sequential(*layers, nn.Linear(width, config.dim))

    def lookup_tables(self) -> dict[str, nn.Embedding]:
        return dict(zip(self.categorical, self.embeds))

    def encode(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> Encoded:
        name = self.modality.name
        parts = [inputs[f"{name}.numeric"]]
        cats = inputs[f"{name}.category"]
        parts += [emb(cats[:, j]) for j, emb in enumerate(self.embeds)]
        pooled = self.mlp(torch.cat(parts, dim=1))
        return Encoded(zero_absent(pooled, mask), pooled.unsqueeze(1) * mask.view(-1, 1, 1), mask)
