"""The sequence-to-sequence model: encoders → cross-attention memory → Transformer decoder → next-token logits.

Where a classifier fuses the modalities into one vector, a generator keeps their token sequences: each encoder's
tokens (its pooled vector when it has none) are projected to the decoder's width, tagged with a learned modality
and position embedding and concatenated into one memory that the decoder attends to at every step. Padding tokens
and absent modalities are masked out of the attention; an always-present learned "null" slot keeps a row with
every modality absent well defined (it then decodes from the prior alone).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch
from torch import nn

from ..config import DecodingConfig, GenerationConfig, PolymodalConfig
from ..encoders.base import Encoded, Encoder, encoder_lr_scales
from ..errors import ConfigError
from ..registry import ARCHITECTURES, register
from .decoding import Decoded, Specials, beam_search, greedy

if TYPE_CHECKING:
    from ..data.dataset import Batch


class _Loss(Protocol):
    """What the model needs of its task (the generation task, one layer up, which imports this module)."""

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...


class CrossModalMemory(nn.Module):
    """``dict[str, Encoded]`` → memory [B, M, D] and keep mask [B, M] for the decoder's cross-attention."""

    def __init__(self, dims: dict[str, int], width: int, max_tokens: int):
        super().__init__()
        self.names = list(dims)
        self.max_tokens = max_tokens
        self.proj = nn.ModuleDict({n: nn.Linear(d, width) for n, d in dims.items()})
        self.modality = nn.Parameter(torch.randn(len(dims), width) * 0.02)
        # Positions matter: an image's feature-map cells say *where* a shape is only through them.
        self.pos = nn.Parameter(torch.randn(max_tokens, width) * 0.02)
        self.null = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.norm = nn.LayerNorm(width)

    def forward(self, encoded: dict[str, Encoded]) -> tuple[torch.Tensor, torch.Tensor]:
        seqs, keeps = [], []
        for i, name in enumerate(self.names):
            enc = encoded[name]
            toks = enc.tokens if enc.tokens is not None else enc.pooled.unsqueeze(1)
            toks = toks[:, : self.max_tokens]
            t = toks.shape[1]
            if enc.tokens is not None and enc.token_mask is not None:
                keep = enc.token_mask[:, :t].bool()
            else:
                keep = torch.ones(toks.shape[:2], dtype=torch.bool, device=toks.device)
            keep = keep & enc.mask.unsqueeze(1)
            # zero what is masked, so that nothing about padding or an absent input reaches the decoder
            toks = toks * keep.unsqueeze(-1).to(toks.dtype)
            seqs.append(self.proj[name](toks) + self.modality[i] + self.pos[:t])
            keeps.append(keep)
        b = seqs[0].shape[0] if seqs else 1
        null = self.null.expand(b, -1, -1)
        memory = self.norm(torch.cat([null, *seqs], dim=1))
        keep = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=memory.device), *keeps], dim=1)
        return memory, keep


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.view(b, t, h, d // h).transpose(1, 2)  # [B, h, T, d/h]


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)


class DecoderLayer(nn.Module):
    """A pre-norm Transformer decoder layer (causal self-attention, cross-attention to the memory, feed-forward)
    that can also run one new token at a time against cached keys and values (fast decoding)."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.self_out = nn.Linear(d, d)
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.cross_out = nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff, d))
        self.drop = nn.Dropout(dropout)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(memory).chunk(2, dim=-1)
        return _heads(k, self.heads), _heads(v, self.heads)

    def forward(
        self,
        x: torch.Tensor,
        mem_kv: tuple[torch.Tensor, torch.Tensor],
        mem_mask: torch.Tensor,
        cache: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``x`` [B, T, D]: the whole prefix (``cache`` None, causal) or the newest token (T = 1) whose
        predecessors' keys and values are in ``cache`` (updated in place). ``mem_mask`` [B, 1, 1, M]: True =
        attend."""
        p = self.dropout if self.training else 0.0
        q, k, v = (_heads(t, self.heads) for t in self.qkv(self.norm1(x)).chunk(3, dim=-1))
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        causal = cache is None and x.shape[1] > 1
        a = nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=causal)
        x = x + self.drop(self.self_out(_merge(a)))
        q = _heads(self.q(self.norm2(x)), self.heads)
        a = nn.functional.scaled_dot_product_attention(q, *mem_kv, attn_mask=mem_mask, dropout_p=p)
        x = x + self.drop(self.cross_out(_merge(a)))
        return x + self.drop(self.ff(self.norm3(x)))


class TransformerDecoderHead(nn.Module):
    """Token + position embeddings, a stack of pre-norm :class:`DecoderLayer` and an output layer tied to the
    token embeddings."""

    def __init__(self, vocab_size: int, cfg: GenerationConfig, max_positions: int, specials: Specials):
        super().__init__()
        if cfg.dim % cfg.heads:
            raise ConfigError(f"generation.dim {cfg.dim} is not divisible by generation.heads {cfg.heads}")
        d = cfg.dim
        self.dim, self.max_positions, self.specials = d, max_positions, specials
        self.embed = nn.Embedding(vocab_size, d)
        nn.init.normal_(self.embed.weight, std=d**-0.5)
        self.pos = nn.Parameter(torch.randn(max_positions, d) * 0.02)
        self.layers = nn.ModuleList(
            DecoderLayer(d, cfg.heads, cfg.feedforward or 2 * d, cfg.dropout) for _ in range(cfg.layers)
        )
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)

    def _check(self, t: int) -> None:
        if t > self.max_positions:
            raise ConfigError(
                f"the decoder has positions for {self.max_positions} tokens, not {t}: lower "
                "decoding.max_length, or fit with a larger generation.max_target_tokens"
            )

    def _embed(self, ids: torch.Tensor, start: int) -> torch.Tensor:
        return self.drop(self.embed(ids) * math.sqrt(self.dim) + self.pos[start : start + ids.shape[1]])

    def forward(self, ids: torch.Tensor, memory: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, V] of the token after each prefix position of ``ids`` [B, T] (teacher forcing)."""
        self._check(ids.shape[1])
        x = self._embed(ids, 0)
        mask = keep[:, None, None, :]
        for layer in cast("Iterable[DecoderLayer]", self.layers):
            x = layer(x, layer.memory_kv(memory), mask)
        return self.norm(x) @ self.embed.weight.t()

    def stepper(self, memory: torch.Tensor, keep: torch.Tensor) -> "CachedStepper":
        return CachedStepper(self, memory, keep)


class CachedStepper:
    """Incremental decoding: feed one token per hypothesis, get next-token log-probabilities; the memory's keys
    and values are computed once, the prefix's are cached (and reordered when beam search reorders hypotheses)."""

    def __init__(self, head: TransformerDecoderHead, memory: torch.Tensor, keep: torch.Tensor):
        self.head = head
        self.mem_kv = [layer.memory_kv(memory) for layer in cast("Iterable[DecoderLayer]", head.layers)]
        self.mask = keep[:, None, None, :]
        self.caches: list[dict[str, torch.Tensor]] = [{} for _ in head.layers]
        self.t = 0
        self.device = memory.device

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.head
        h._check(self.t + 1)
        x = h._embed(tokens.view(-1, 1), self.t)
        for layer, kv, cache in zip(h.layers, self.mem_kv, self.caches):
            x = layer(x, kv, self.mask, cache)
        self.t += 1
        return torch.log_softmax((h.norm(x[:, -1]) @ h.embed.weight.t()).float(), dim=-1)

    def reorder(self, index: torch.Tensor) -> None:
        """Hypothesis i continues hypothesis ``index[i]`` (same source row: the memory needs no reordering)."""
        for cache in self.caches:
            for k in cache:
                cache[k] = cache[k].index_select(0, index)


class Seq2SeqModel(nn.Module):
    """Encoders (one per modality) → :class:`CrossModalMemory` → :class:`TransformerDecoderHead`.

    ``forward(inputs, masks, target)`` gives teacher-forced logits (training and validation loss);
    :meth:`generate` decodes text ids greedily or by beam search.
    """

    def __init__(self, encoders: dict[str, nn.Module], memory: CrossModalMemory, head: TransformerDecoderHead):
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.memory = memory
        self.head = head

    def encode(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict[str, Encoded]:
        return {name: enc(inputs, masks[name]) for name, enc in self.encoders.items()}

    def forward(
        self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], target: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Teacher forcing: the decoder reads the begin token and ``target`` [B, L] shifted right; the logits
        [B, T, V] cover the batch's longest target (T <= L, padding columns dropped)."""
        if target is None:
            raise ConfigError("a generation model's forward needs the target token ids; use generate() to decode")
        sp = self.head.specials
        t = int((target != sp.pad).sum(1).max().clamp_min(1).item())
        target = target[:, :t]
        bos = torch.full((target.shape[0], 1), sp.bos, dtype=target.dtype, device=target.device)
        dec_in = torch.cat([bos, target[:, :-1]], dim=1)
        memory, keep = self.memory(self.encode(inputs, masks))
        return self.head(dec_in, memory, keep)

    def outputs(self, batch: "Batch") -> torch.Tensor:
        return self(batch.inputs, batch.masks, batch.target)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor, task: _Loss) -> torch.Tensor:
        return task.loss(outputs, target)

    def lr_scales(self) -> dict[str, float]:
        return encoder_lr_scales(self.encoders)

    @torch.no_grad()
    def generate(
        self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], decoding: DecodingConfig, max_length: int
    ) -> Decoded:
        """Decode every row of the batch (``decoding.max_length`` tokens at most, else ``max_length``)."""
        limit = decoding.max_length or max_length
        if limit > self.head.max_positions:
            raise ConfigError(
                f"decoding.max_length {limit} is more than this model can generate "
                f"({self.head.max_positions} tokens, set by generation.max_target_tokens at fit "
                "time); lower it"
            )
        memory, keep = self.memory(self.encode(inputs, masks))
        sp = self.head.specials
        if decoding.method == "greedy" or decoding.beam_width == 1:
            # beam width 1 is greedy decoding (the tests check that beam_search agrees)
            return greedy(self.head.stepper(memory, keep), memory.shape[0], sp, limit, decoding.no_repeat_ngram)
        k = decoding.beam_width
        stepper = self.head.stepper(memory.repeat_interleave(k, dim=0), keep.repeat_interleave(k, dim=0))
        return beam_search(stepper, memory.shape[0], k, sp, limit, decoding.length_penalty, decoding.no_repeat_ngram)


@register(ARCHITECTURES, "seq2seq")
def build_seq2seq(config: PolymodalConfig, encoders: dict[str, nn.Module], task: Any) -> Seq2SeqModel:
    """The generation task's model: its head is the decoder (sized by ``task.generation``)."""
    gen = config.task.generation
    memory = CrossModalMemory({n: cast(Encoder, e).dim for n, e in encoders.items()}, gen.dim, gen.max_memory_tokens)
    return Seq2SeqModel(encoders, memory, task.head(gen.dim))
