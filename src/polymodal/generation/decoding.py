"""Batched greedy and beam-search decoding over an incremental next-token model.

A :class:`Stepper` is fed the newest token of every hypothesis ([N] ids; the begin token first) and returns the
next-token log-probabilities [N, V]; it keeps its own state (the decoder's key/value cache), and ``reorder(index)``
makes hypothesis i continue hypothesis ``index[i]`` (beam search). Scores are sums of token log-probabilities, the
end token included. Beam search ranks hypotheses by score / length ** length_penalty; with beam width 1 it picks the
same tokens as greedy decoding (the same arithmetic: running score plus the step's log-probabilities, arg-max),
which the tests check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


class Stepper(Protocol):
    def __call__(self, tokens: torch.Tensor) -> torch.Tensor: ...

    def reorder(self, index: torch.Tensor) -> None: ...


@dataclass
class Decoded:
    """``ids`` [B, L] generated tokens (no begin token; the end token and padding after it), ``scores`` [B] the
    sequence log-probabilities, ``lengths`` [B] tokens generated (end token included)."""

    ids: torch.Tensor
    scores: torch.Tensor
    lengths: torch.Tensor


@dataclass(frozen=True)
class Specials:
    pad: int
    bos: int
    eos: int


def _banned_ngrams(seqs: torch.Tensor, n: int, start: int = 1) -> list[list[int]]:
    """For each row of ``seqs`` [N, t], the tokens that would repeat an n-gram of its generated part (from
    ``start``, i.e. after the begin token)."""
    out: list[list[int]] = []
    rows = seqs[:, start:].tolist()
    for toks in rows:
        if len(toks) < n - 1 or n <= 0:
            out.append([])
            continue
        tail = tuple(toks[len(toks) - n + 1 :]) if n > 1 else ()
        banned = [toks[i + n - 1] for i in range(len(toks) - n + 1) if tuple(toks[i : i + n - 1]) == tail]
        out.append(banned)
    return out


def _mask_logprobs(
    logp: torch.Tensor, seqs: torch.Tensor, finished: torch.Tensor, sp: Specials, no_repeat_ngram: int
) -> torch.Tensor:
    """Live rows may not emit padding or the begin token (nor a repeated n-gram); finished rows only pad, at no
    cost."""
    logp = logp.float().clone()
    neg = torch.finfo(logp.dtype).min
    logp[:, sp.pad] = neg
    if sp.bos != sp.eos:
        logp[:, sp.bos] = neg
    if no_repeat_ngram > 0:
        for i, banned in enumerate(_banned_ngrams(seqs, no_repeat_ngram)):
            if banned:
                logp[i, banned] = neg
    if finished.any():
        logp[finished] = neg
        logp[finished, sp.pad] = 0.0
    return logp


def greedy(step: Stepper, n: int, sp: Specials, max_length: int, no_repeat_ngram: int = 0) -> Decoded:
    """The most probable next token at each step, for all ``n`` rows at once."""
    device = _device(step)
    seqs = torch.full((n, 1), sp.bos, dtype=torch.long, device=device)
    scores = torch.zeros(n, device=device)
    lengths = torch.zeros(n, dtype=torch.long, device=device)
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    for _ in range(max_length):
        logp = _mask_logprobs(step(seqs[:, -1]), seqs, finished, sp, no_repeat_ngram)
        best, tok = (scores.unsqueeze(1) + logp).max(dim=1)
        scores = best
        lengths = lengths + (~finished).long()
        finished = finished | (tok == sp.eos)
        seqs = torch.cat([seqs, tok.unsqueeze(1)], dim=1)
        if bool(finished.all()):
            break
    return Decoded(seqs[:, 1:], scores, lengths)


def beam_search(
    step: Stepper,
    n: int,
    beam_width: int,
    sp: Specials,
    max_length: int,
    length_penalty: float = 1.0,
    no_repeat_ngram: int = 0,
) -> Decoded:
    """Keep the ``beam_width`` best partial sequences of each of the ``n`` rows (``step`` runs n * beam_width
    hypotheses, row-major); a finished hypothesis keeps its slot with its final score. Returns the best of each
    row by score / length ** length_penalty."""
    b, k = n, beam_width
    device = _device(step)
    seqs = torch.full((b * k, 1), sp.bos, dtype=torch.long, device=device)
    beam_scores = torch.zeros(b, k, device=device)
    beam_scores[:, 1:] = float("-inf")  # all beams start equal: expand only the first at step one
    lengths = torch.zeros(b * k, dtype=torch.long, device=device)
    finished = torch.zeros(b * k, dtype=torch.bool, device=device)
    offsets = (torch.arange(b, device=device) * k).unsqueeze(1)
    for _ in range(max_length):
        logp = _mask_logprobs(step(seqs[:, -1]), seqs, finished, sp, no_repeat_ngram)
        vocab = logp.shape[1]
        cand = (beam_scores.reshape(-1, 1) + logp).reshape(b, k * vocab)
        top_scores, top_idx = cand.topk(k, dim=1)
        src = (offsets + torch.div(top_idx, vocab, rounding_mode="floor")).reshape(-1)
        tok = (top_idx % vocab).reshape(-1)
        step.reorder(src)
        was_finished = finished[src]
        seqs = torch.cat([seqs[src], tok.unsqueeze(1)], dim=1)
        lengths = lengths[src] + (~was_finished).long()
        finished = was_finished | (tok == sp.eos)
        beam_scores = top_scores
        if bool(finished.all()):
            break
    norm = beam_scores / lengths.reshape(b, k).clamp_min(1).float() ** length_penalty
    norm = torch.where(torch.isfinite(beam_scores), norm, torch.full_like(norm, float("-inf")))
    best = offsets.squeeze(1) + norm.argmax(dim=1)
    return Decoded(seqs[best, 1:], beam_scores.reshape(-1)[best], lengths[best])


def _device(step: Stepper) -> torch.device:
    return getattr(step, "device", torch.device("cpu"))
