"""Greedy and beam-search decoding on hand-made next-token tables, and the decoder's key/value cache."""

from __future__ import annotations

import math

import pytest
import torch

from polymodal.config import GenerationConfig
from polymodal.generation.decoding import Specials, beam_search, greedy
from polymodal.generation.model import TransformerDecoderHead

SP = Specials(pad=0, bos=1, eos=2)
V = 6  # tokens 3, 4, 5 are words


class TableStepper:
    """Next-token log-probabilities from a dict: prefix of words (tuple) -> {token: probability}; other tokens get
    a tiny probability. Rows are independent copies of the same table."""

    def __init__(self, table: dict[tuple[int, ...], dict[int, float]], n: int):
        self.table, self.prefixes = table, [() for _ in range(n)]
        self.calls = 0

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = torch.full((len(tokens), V), 1e-6)
        for i, t in enumerate(tokens.tolist()):
            if t != SP.bos:
                self.prefixes[i] = self.prefixes[i] + (t,)
            for tok, p in self.table.get(self.prefixes[i], {SP.eos: 1.0}).items():
                out[i, tok] = p
        return torch.log(out / out.sum(1, keepdim=True))

    def reorder(self, index: torch.Tensor) -> None:
        self.prefixes = [self.prefixes[i] for i in index.tolist()]


# Greedy takes 3 (0.6) then is unsure (0.5 / 0.5); the best sequence starts with 4 (0.4) then is sure (1.0 on 5).
TRAP = {
    (): {3: 0.6, 4: 0.4},
    (3,): {4: 0.5, 5: 0.5},
    (4,): {5: 1.0},
    (3, 4): {SP.eos: 1.0},
    (3, 5): {SP.eos: 1.0},
    (4, 5): {SP.eos: 1.0},
}


def test_beam_search_finds_the_better_sequence_greedy_misses():
    g = greedy(TableStepper(TRAP, 1), 1, SP, max_length=5)
    b = beam_search(TableStepper(TRAP, 2), 1, 2, SP, max_length=5, length_penalty=0.0)
    assert g.ids[0, :2].tolist() == [3, 4] or g.ids[0, :2].tolist() == [3, 5]
    assert b.ids[0, :3].tolist() == [4, 5, SP.eos]
    assert b.scores[0] > g.scores[0]
    assert b.scores[0].item() == pytest.approx(math.log(0.4), abs=1e-3)
    assert b.lengths[0].item() == 3


def test_beam_width_one_equals_greedy_on_random_tables():
    torch.manual_seed(0)
    for trial in range(5):
        logits = torch.randn(8, 8, V)  # depends on row and step

        class RandomStepper:
            def __init__(self, n):
                self.t, self.rows = 0, torch.arange(n) % 8

            def __call__(self, tokens, logits=logits):  # bound now: each trial has its own table
                out = torch.log_softmax(logits[self.rows, min(self.t, 7)], -1)
                self.t += 1
                return out

            def reorder(self, index):
                self.rows = self.rows[index]

        g = greedy(RandomStepper(8), 8, SP, max_length=7, no_repeat_ngram=trial % 3)
        b = beam_search(RandomStepper(8), 8, 1, SP, max_length=7, no_repeat_ngram=trial % 3)
        assert torch.equal(g.ids, b.ids) and torch.allclose(g.scores, b.scores) and torch.equal(g.lengths, b.lengths)


def test_max_length_limits_and_padding_after_end():
    forever = {(): {3: 1.0}}  # never ends: 3 then (default) end... make it loop on 3
    loop = {tuple([3] * k): {3: 1.0} for k in range(10)}
    d = greedy(TableStepper(loop, 2), 2, SP, max_length=4)
    assert d.ids.shape == (2, 4) and (d.ids == 3).all() and d.lengths.tolist() == [4, 4]
    d = beam_search(TableStepper(loop, 6), 2, 3, SP, max_length=4)
    assert d.ids.shape[1] == 4 and (d.ids == 3).all()
    d = greedy(TableStepper(forever, 1), 1, SP, max_length=6)
    assert d.ids[0].tolist()[:2] == [3, SP.eos] and (d.ids[0, 2:] == SP.pad).all() and d.lengths.item() == 2


def test_no_repeat_ngram_blocks_repeats():
    loop = {tuple([3] * k): {3: 0.9, 4: 0.1} for k in range(10)}
    loop.update({(3, 4): {3: 0.9, 4: 0.1}, (3, 4, 3): {4: 0.9, 3: 0.1}})
    d = greedy(TableStepper(loop, 1), 1, SP, max_length=5, no_repeat_ngram=2)
    seq = [t for t in d.ids[0].tolist() if t not in (SP.pad, SP.eos)]
    bigrams = list(zip(seq, seq[1:]))
    assert len(bigrams) == len(set(bigrams))


def test_cached_incremental_decoding_matches_full_prefix():
    torch.manual_seed(0)
    head = TransformerDecoderHead(
        11, GenerationConfig(layers=2, dim=16, heads=2, dropout=0.0), 12, Specials(0, 1, 2)
    ).eval()
    memory, keep = torch.randn(3, 5, 16), torch.ones(3, 5, dtype=torch.bool)
    keep[1, 3:] = False
    ids = torch.randint(3, 11, (3, 6))
    ids[:, 0] = 1
    full = torch.log_softmax(head(ids, memory, keep), -1)
    step = head.stepper(memory, keep)
    with torch.no_grad():
        inc = torch.stack([step(ids[:, t]) for t in range(6)], dim=1)
    assert torch.allclose(full, inc, atol=1e-5)
    # beyond the position table: a clear error
    with pytest.raises(Exception, match="positions for 12 tokens"):
        head(torch.ones(1, 13, dtype=torch.long), memory[:1], keep[:1])
