"""FiLM fusion: every token of every modality, modulated by a summary of the whole row, then pooled."""

from __future__ import annotations

import torch
from torch import nn

from ..encoders.base import Encoded
from ..params.fusion import FiLMParams
from ..registry import FUSIONS, register
from .base import Fusion, FusionInput, MissingEmbedding, token_sequence
from .early import _masked_softmax


class FiLMBlock(nn.Module):
    """``h + W2 ReLU((1 + γ) ⊙ norm(W1 h) + β)``: the residual block of Perez et al. 2018 on tokens instead of
    feature-map cells; γ and β come from the row's context (γ starts at 0, so an untrained block is plain)."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.inner = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)  # the affine part is what FiLM supplies
        self.outer = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, dim))

    def forward(self, h: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        z = self.norm(self.inner(h))
        return h + self.outer(torch.relu((1 + gamma.unsqueeze(1)) * z + beta.unsqueeze(1)))


def masked_max(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Max over dim 1 of [B, T, D] counting only ``keep`` [B, T] positions; rows with none give 0."""
    filled = x.masked_fill(~keep.unsqueeze(-1), torch.finfo(x.dtype).min).amax(1)
    return torch.where(keep.any(1, keepdim=True), filled, torch.zeros_like(filled))


@register(FUSIONS, "film")
class FiLMFusion(Fusion):
    Params = FiLMParams
    params: FiLMParams

    def __init__(self, inputs: list[FusionInput], dim: int, dropout: float, params: FiLMParams):
        super().__init__(inputs, dim, dropout, params)
        self.missing = MissingEmbedding(inputs)
        width = sum(f.dim for f in inputs)
        self.context = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim), nn.GELU())
        self.film = nn.Linear(dim, 2 * dim * params.layers)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.proj = nn.ModuleDict({f.name: nn.Linear(f.dim, dim) for f in inputs})
        self.type_emb = nn.Parameter(torch.randn(len(inputs), dim) * 0.02)
        self.pos_emb = nn.Parameter(torch.randn(params.max_tokens, dim) * 0.02)
        self.blocks = nn.ModuleList(FiLMBlock(dim, dropout) for _ in range(params.layers))
        self.score = nn.Linear(dim, params.heads) if params.heads else None
        readout = ((2 + params.heads) * len(inputs) + 1) * dim
        self.out = nn.Sequential(nn.LayerNorm(readout), nn.Linear(readout, dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        context = self.context(torch.cat([self.missing(f.name, encoded[f.name]) for f in self.inputs], dim=1))
        films = self.film(context).chunk(2 * len(self.blocks), dim=1)
        parts = [context]
        for i, f in enumerate(self.inputs):
            toks, keep = token_sequence(encoded[f.name], self.params.max_tokens)
            h = self.proj[f.name](toks) + self.type_emb[i] + self.pos_emb[: toks.shape[1]]
            for j, block in enumerate(self.blocks):
                h = block(h, films[2 * j], films[2 * j + 1])
            w = keep.unsqueeze(-1).to(h.dtype)
            parts += [(h * w).sum(1) / w.sum(1).clamp_min(1.0), masked_max(h, keep)]
            if self.score is not None:
                scores = self.score(h)  # [B, T, heads]
                alpha = _masked_softmax(scores, keep.unsqueeze(-1).expand_as(scores))  # over tokens; none → 0
                parts.append(torch.einsum("bth,btd->bhd", alpha, h).flatten(1))
        return self.out(torch.cat(parts, dim=1))
