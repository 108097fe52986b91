"""Generation metrics: CIDEr-D against published reference values, BLEU via sacrebleu, ROUGE-L, exact match."""

from __future__ import annotations

import math

import pytest

from polymodal.metrics.text import (
    bleu,
    cider_d,
    cider_d_sentences,
    exact_match,
    normalize_answer,
    rouge_l,
    rouge_l_sentence,
    text_metrics,
    words,
)

# The README example of aac-metrics (Labbé et al.), whose CIDEr-D follows the COCO caption evaluation code
# (Vedantam et al.): corpus 0.9614, per candidate 1.3641 and 0.5587 (after PTB tokenisation, which drops the
# punctuation as our tokenisation does).
CANDIDATES = ["a man is speaking", "rain falls"]
REFERENCES = [
    ["a man speaks.", "someone speaks.", "a man is speaking while a bird is chirping in the background"],
    ["rain is falling hard on a surface"],
]


def test_cider_d_matches_published_reference_values():
    assert cider_d_sentences(CANDIDATES, REFERENCES) == pytest.approx([1.3641, 0.5587], abs=1e-4)
    assert cider_d(CANDIDATES, REFERENCES) == pytest.approx(0.9614, abs=1e-4)


def test_cider_d_perfect_and_empty_candidates():
    refs = ["a red circle at the top", "a blue square at the left", "a green triangle at the bottom right"]
    perfect = cider_d(refs, refs)
    assert perfect > 3  # identical captions of a corpus score well above 1 (x10 scale)
    assert cider_d(["", "", ""], refs) == 0.0
    assert cider_d(refs[::-1], refs) < perfect


def test_bleu_is_sacrebleu_on_a_unit_scale():
    import sacrebleu

    cands = ["a red circle at the top left", "a blue square"]
    refs = ["a red circle at the top right", "a blue square at the centre"]
    expected = sacrebleu.corpus_bleu(cands, [refs], lowercase=True).score / 100
    assert bleu(cands, refs, 4) == pytest.approx(expected)
    assert bleu(refs, refs, 4) == pytest.approx(1.0)
    assert bleu(refs, refs, 1) == pytest.approx(1.0)
    assert 0 < bleu(cands, refs, 4) < bleu(cands, refs, 1) < 1


def test_rouge_l_lcs_f_measure():
    # LCS("a red circle at top", "a red square at top") = 4 of 5 words both ways: P = R = 0.8 -> F = 0.8
    assert rouge_l_sentence("a red circle at top", ["a red square at top"]) == pytest.approx(0.8)
    assert rouge_l(["x y z"], ["x y z"]) == pytest.approx(1.0)
    assert rouge_l([""], ["x"]) == 0.0
    # P = 1, R = 0.5, beta = 1.2
    assert rouge_l_sentence("a b", ["a b c d"]) == pytest.approx((1 + 1.2**2) * 0.5 / (0.5 + 1.2**2))
    # the best precision and the best recall over the references, even from different ones (COCO's rule)
    assert rouge_l_sentence("a b", ["a b c d", "a"]) == pytest.approx(1.0)


def test_exact_match_normalises_case_punctuation_and_articles():
    assert normalize_answer("The Top  Left!") == "top left"
    assert exact_match(["Yes.", "a circle", "red"], ["yes", "circle", "blue"]) == pytest.approx(2 / 3)
    assert exact_match(["two"], [["2", "two"]]) == 1.0


def test_text_metrics_keys_and_length_mismatch():
    m = text_metrics(["a b c d"], ["a b c d"])
    assert set(m) == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider_d", "exact_match"}
    with pytest.raises(ValueError):
        bleu(["a"], ["a", "b"])
    assert math.isnan(rouge_l([], []))
    assert words("Hello, World-wide!") == ["hello", "world", "wide"]
