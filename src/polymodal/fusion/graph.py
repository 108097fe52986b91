"""Graph fusion: attention-weighted message passing over a fully connected graph of modalities."""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

from ..encoders.base import Encoded
from ..params.fusion import GraphParams
from ..registry import FUSIONS, register
from .base import Fusion, FusionInput


class MessageStep(nn.Module):
    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.scale = 1.0 / math.sqrt(dim)

    def attention(self, h: torch.Tensor, sender: torch.Tensor) -> torch.Tensor:
        """[B, N, N]: how much node i listens to node j (rows sum to 1 over the present senders)."""
        scores = torch.einsum("bid,bjd->bij", self.q(h), self.k(h)) * self.scale
        s = sender.unsqueeze(1)  # [B, 1, N]: which nodes may send
        scores = scores.masked_fill(~s, torch.finfo(scores.dtype).min / 2)
        w = torch.softmax(scores, -1) * s.to(scores.dtype)  # exact zeros for absent senders
        return w / w.sum(-1, keepdim=True).clamp_min(1e-6)  # rows with no sender get no message

    def forward(self, h: torch.Tensor, sender: torch.Tensor) -> torch.Tensor:
        w = self.attention(h, sender)
        msg = torch.einsum("bij,bjd->bid", w, self.v(h))
        return self.norm(h + self.drop(self.o(msg)))


@register(FUSIONS, "graph")
class GraphFusion(Fusion):
    Params = GraphParams

    def __init__(self, inputs: list[FusionInput], dim: int, dropout: float, params: GraphParams):
        super().__init__(inputs, dim, dropout, params)
        self.proj = nn.ModuleDict({f.name: nn.Linear(f.dim, dim) for f in inputs})
        self.type_emb = nn.Parameter(torch.randn(len(inputs), dim) * 0.02)
        self.missing = nn.Parameter(torch.zeros(len(inputs), dim))
        self.steps = nn.ModuleList(MessageStep(dim, dropout) for _ in range(params.steps))
        self.empty = nn.Parameter(torch.zeros(dim))
        self.out = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout))

    def _nodes(self, encoded: dict[str, Encoded]) -> tuple[torch.Tensor, torch.Tensor]:
        nodes, present = [], []
        for i, f in enumerate(self.inputs):
            enc = encoded[f.name]
            x = self.proj[f.name](enc.pooled)
            x = torch.where(enc.mask.unsqueeze(1), x, self.missing[i].to(x.dtype).expand_as(x))
            nodes.append(x + self.type_emb[i])
            present.append(enc.mask.bool())
        return torch.stack(nodes, 1), torch.stack(present, 1)  # [B, N, D], [B, N]

    def modality_weights(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        """The last round's attention each modality receives, averaged over the present receiving modalities."""
        h, mask = self._nodes(encoded)
        for step in self.steps[:-1]:
            h = step(h, mask)
        w = cast(MessageStep, self.steps[-1]).attention(h, mask)  # [B, receiver, sender]
        r = mask.unsqueeze(-1).to(w.dtype)
        return (w * r).sum(1) / r.sum(1).clamp_min(1.0)

    def forward(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        h, mask = self._nodes(encoded)
        for step in self.steps:
            h = step(h, mask)
        m = mask.unsqueeze(-1).to(h.dtype)
        count = m.sum(1)
        pooled = (h * m).sum(1) / count.clamp_min(1.0)
        pooled = torch.where(count > 0, pooled, self.empty.to(h.dtype).expand_as(pooled))
        return self.out(pooled)
