"""Metrics of generated text against references: BLEU-1..4, ROUGE-L, CIDEr-D and exact match.

Every function takes ``candidates`` (one string per example) and ``references`` (a list of reference strings per
example, or one string). Scores are on the usual scales: BLEU and ROUGE-L in [0, 1] (sacrebleu's 0-100 divided by
100), CIDEr-D as in the COCO caption evaluation (x10, so a perfect caption of a typical corpus scores well above 1),
exact match in [0, 1].

Words for ROUGE-L and CIDEr-D are lower-cased and split on anything that is not a letter or digit, like the COCO
evaluation's PTB tokenisation with punctuation removed. BLEU is sacrebleu's corpus BLEU (its ``13a`` tokeniser,
lower-cased) with the maximum n-gram order set to n.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

References = Sequence[str] | Sequence[Sequence[str]]

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def words(text: str) -> list[str]:
    """Lower-cased words, punctuation dropped (the COCO caption evaluation's tokenisation, near enough)."""
    return _WORD.findall(str(text).lower())


def _refs(references: References, n: int) -> list[list[str]]:
    out = [[r] if isinstance(r, str) else list(r) for r in references]
    if len(out) != n:
        raise ValueError(f"{n} candidates but {len(out)} reference lists")
    if any(not r for r in out):
        raise ValueError("every candidate needs at least one reference")
    return out


# --- BLEU ---------------------------------------------------------------------------------------------------------
def bleu(candidates: Sequence[str], references: References, max_order: int = 4) -> float:
    """Corpus BLEU with n-grams up to ``max_order`` (sacrebleu), in [0, 1]."""
    from sacrebleu.metrics import BLEU

    refs = _refs(references, len(candidates))
    if not candidates:
        return float("nan")
    width = max(len(r) for r in refs)
    # sacrebleu wants one stream per reference position; a missing reference is None
    streams = [[r[i] if i < len(r) else None for r in refs] for i in range(width)]
    # effective_order: orders above a candidate's length do not zero the score of a corpus of short answers
    scorer = BLEU(max_ngram_order=max_order, lowercase=True, effective_order=True)
    # (sacrebleu's annotation omits the None it documents for a missing reference)
    return scorer.corpus_score(list(candidates), streams).score / 100.0  # type: ignore[arg-type]


# --- ROUGE-L ------------------------------------------------------------------------------------------------------
def _lcs(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l_sentence(candidate: str, references: Sequence[str], beta: float = 1.2) -> float:
    """ROUGE-L F-measure of one candidate as in the COCO caption evaluation: the best precision and the best recall
    over the references, combined with ``beta`` = 1.2."""
    cand = words(candidate)
    if not cand:
        return 0.0
    precisions, recalls = [], []
    for ref in references:
        r = words(ref)
        lcs = _lcs(cand, r)
        precisions.append(lcs / len(cand))
        recalls.append(lcs / len(r) if r else 0.0)
    p, rc = max(precisions), max(recalls)
    if p == 0 or rc == 0:
        return 0.0
    return ((1 + beta**2) * p * rc) / (rc + beta**2 * p)


def rouge_l(candidates: Sequence[str], references: References) -> float:
    """Mean sentence ROUGE-L F-measure, in [0, 1]."""
    refs = _refs(references, len(candidates))
    if not candidates:
        return float("nan")
    return sum(rouge_l_sentence(c, r) for c, r in zip(candidates, refs)) / len(candidates)


# --- CIDEr-D ------------------------------------------------------------------------------------------------------
def _ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    c: Counter[tuple[str, ...]] = Counter()
    for k in range(1, n + 1):
        for i in range(len(tokens) - k + 1):
            c[tuple(tokens[i : i + k])] += 1
    return c


def cider_d_sentences(candidates: Sequence[str], references: References, n: int = 4, sigma: float = 6.0) -> list[float]:
    """Per-candidate CIDEr-D (Vedantam et al. 2015, the "defended" variant of the COCO caption evaluation).

    Document frequencies come from the references of this corpus; candidate n-gram weights are clipped at the
    reference's, and a Gaussian penalty (``sigma``) on the length difference discourages gaming; x10.
    """
    refs = _refs(references, len(candidates))
    cand_counts = [_ngrams(words(c), n) for c in candidates]
    ref_counts = [[_ngrams(words(r), n) for r in rs] for rs in refs]
    df: Counter[tuple[str, ...]] = Counter()
    for rs in ref_counts:
        df.update({g for r in rs for g in r})
    log_n = math.log(float(len(candidates))) if candidates else 0.0

    def vec(counts: Counter[tuple[str, ...]]) -> tuple[list[dict], list[float], int]:
        v: list[dict] = [{} for _ in range(n)]
        length = 0
        for g, tf in counts.items():
            k = len(g) - 1
            v[k][g] = float(tf) * (log_n - math.log(max(1.0, float(df[g]))))
            if k == 1:  # the reference implementation measures length in bigrams; kept for comparable scores
                length += tf
        norms = [math.sqrt(sum(x * x for x in v[k].values())) for k in range(n)]
        return v, norms, length

    scores = []
    for cc, rcs in zip(cand_counts, ref_counts):
        vc, nc, lc = vec(cc)
        total = [0.0] * n
        for rc in rcs:
            vr, nr, lr = vec(rc)
            delta = float(lc - lr)
            for k in range(n):
                val = sum(min(x, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, x in vc[k].items())
                if nc[k] != 0 and nr[k] != 0:
                    val /= nc[k] * nr[k]
                total[k] += val * math.exp(-(delta**2) / (2 * sigma**2))
        scores.append(sum(total) / n / len(rcs) * 10.0)
    return scores


def cider_d(candidates: Sequence[str], references: References) -> float:
    """Corpus CIDEr-D: the mean of :func:`cider_d_sentences`."""
    s = cider_d_sentences(candidates, references)
    return sum(s) / len(s) if s else float("nan")


# --- exact match --------------------------------------------------------------------------------------------------
def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the SQuAD answer normalisation)."""
    text = str(text).lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(candidates: Sequence[str], references: References) -> float:
    """Share of candidates equal to one of their references after :func:`normalize_answer`."""
    refs = _refs(references, len(candidates))
    if not candidates:
        return float("nan")
    hits = sum(normalize_answer(c) in {normalize_answer(r) for r in rs} for c, rs in zip(candidates, refs))
    return hits / len(candidates)


def text_metrics(candidates: Sequence[str], references: References) -> dict[str, float]:
    """All of them: bleu1..bleu4, rouge_l, cider_d, exact_match."""
    out = {f"bleu{k}": bleu(candidates, references, k) for k in range(1, 5)}
    out["rouge_l"] = rouge_l(candidates, references)
    out["cider_d"] = cider_d(candidates, references)
    out["exact_match"] = exact_match(candidates, references)
    return out
