"""Generated Chinese product reviews with a sentiment label, for measuring how text segmentation matters.

Each review is one or three clauses "aspect + degree adverb + (negation) + opinion word", e.g. "质量非常不好"
(quality very not good). A clause's polarity is its opinion word's, flipped by a negation; the label is the
majority polarity. Segmentation matters on purpose: opinion words share characters across polarities (好 / 不好 /
不错 / 好看 / 难看), negations flip them, and the clauses combine freely, so a tokenizer that keeps a whole clause as
one token sees mostly clauses it never saw in training. A few aspects are Latin-script words (App, USB), to check
mixed scripts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ASPECTS = ("质量", "价格", "物流", "包装", "客服", "颜色", "外观", "做工", "屏幕", "电池", "App", "USB接口", "手感")
ADVERBS = ("", "很", "非常", "特别", "有点", "比较", "真的", "太")
# (opinion word, polarity, may it be negated with 不)
OPINIONS = (
    ("好", 1, True),
    ("不错", 1, False),
    ("满意", 1, True),
    ("好用", 1, True),
    ("好看", 1, True),
    ("划算", 1, True),
    ("结实", 1, True),
    ("舒服", 1, True),
    ("差", -1, True),
    ("糟糕", -1, False),
    ("失望", -1, False),
    ("难用", -1, False),
    ("难看", -1, False),
    ("贵", -1, True),
    ("慢", -1, True),
    ("一般", -1, False),
)
NEGATIONS = ("不", "并不", "一点也不")
OPENERS = ("", "", "买了一个月，", "朋友推荐的，", "第二次购买，", "收到货了，")
CLOSERS = ("。", "！", "。", "，总的来说就这样。", "，下次再看看。")

LABELS = ("正面", "负面")


def _clause(rng: np.random.Generator) -> tuple[str, int]:
    word, polarity, negatable = OPINIONS[rng.integers(len(OPINIONS))]
    negated = negatable and rng.random() < 0.4
    negation = NEGATIONS[rng.integers(len(NEGATIONS))] if negated else ""
    adverb = ADVERBS[rng.integers(len(ADVERBS))]
    adverb = "" if negation == "一点也不" else adverb  # "very not at all good" is not Chinese either
    aspect = ASPECTS[rng.integers(len(ASPECTS))]
    return f"{aspect}{adverb}{negation}{word}", -polarity if negated else polarity


def review(rng: np.random.Generator) -> tuple[str, str]:
    """One review and its label (正面 = positive, 负面 = negative)."""
    clauses = [_clause(rng) for _ in range(1 if rng.random() < 0.4 else 3)]
    text = "，".join(c for c, _ in clauses)
    score = sum(p for _, p in clauses)
    opener, closer = OPENERS[rng.integers(len(OPENERS))], CLOSERS[rng.integers(len(CLOSERS))]
    return f"{opener}{text}{closer}", LABELS[0] if score > 0 else LABELS[1]


def generate_reviews(n: int, seed: int = 0) -> pd.DataFrame:
    """A table of ``n`` generated Chinese reviews: columns ``review`` (text) and ``label`` (正面 / 负面)."""
    rng = np.random.default_rng(seed)
    rows = [review(rng) for _ in range(n)]
    return pd.DataFrame(rows, columns=["review", "label"])
