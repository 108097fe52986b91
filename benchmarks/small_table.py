"""Issue 17, acceptance 6: on a small generated table (1,000 rows) whose label is a non-linear function of the
numeric columns plus a text keyword, polymodal's default ``fit`` and its ``quality`` preset against the simplest
strong baselines, side by side on the same split: gradient boosting on the numeric columns alone and a linear model
on TF-IDF of the text alone.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/small_table.py [--seeds 0 1 2] [--rows 1000]

Writes benchmarks/results/small_table.json and prints a markdown table (test accuracy per seed, mean).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
NUMERIC = ["x1", "x2", "x3", "x4"]
FILLER = [
    "the",
    "item",
    "arrived",
    "in",
    "a",
    "box",
    "and",
    "we",
    "used",
    "it",
    "over",
    "the",
    "weekend",
    "with",
    "the",
    "family",
    "at",
    "home",
]
KEYWORD = "refund"


def make_table(rows: int, seed: int) -> pd.DataFrame:
    """Label = [ sin(2 x1) · x2 + (x3 > 0.5) − 0.6 · 1{x4 < −1} + 1.2 · keyword > 0.4 ], 5% of labels flipped.

    Neither part alone decides it: the numeric part is non-linear (a product, a sine, thresholds) and the keyword
    ("refund" somewhere in a review of filler words) moves the score by as much as the numbers do."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(NUMERIC)))
    keyword = rng.random(rows) < 0.35
    score = np.sin(2 * x[:, 0]) * x[:, 1] + (x[:, 2] > 0.5) - 0.6 * (x[:, 3] < -1) + 1.2 * keyword
    y = score > 0.4
    flip = rng.random(rows) < 0.05
    y = np.where(flip, ~y, y)
    texts = []
    for k in keyword:
        words = list(rng.choice(FILLER, size=int(rng.integers(6, 12))))
        if k:
            words.insert(int(rng.integers(0, len(words) + 1)), KEYWORD)
        texts.append(" ".join(words))
    frame = pd.DataFrame(x, columns=NUMERIC)
    frame["review"] = texts
    frame["label"] = np.where(y, "yes", "no")
    return frame


def split(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(frame, test_size=0.25, random_state=seed, stratify=frame["label"])
    return train.reset_index(drop=True), test.reset_index(drop=True)


def gbm_numeric(train: pd.DataFrame, test: pd.DataFrame, seed: int) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(random_state=seed).fit(train[NUMERIC], train["label"])
    return float((model.predict(test[NUMERIC]) == test["label"]).mean())


def linear_text(train: pd.DataFrame, test: pd.DataFrame, seed: int) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    grid = {"logisticregression__C": [0.01, 0.1, 1.0, 10.0, 100.0]}
    model = GridSearchCV(make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=2000)), grid, cv=5)
    model.fit(train["review"], train["label"])
    return float((model.predict(test["review"]) == test["label"]).mean())


def polymodal_fit(preset: str | None) -> Callable[[pd.DataFrame, pd.DataFrame, int], float]:
    def run(train: pd.DataFrame, test: pd.DataFrame, seed: int) -> float:
        from polymodal import Predictor

        p = Predictor(label="label", preset=preset, seed=seed, verbose=False).fit(train)
        return float(p.evaluate(test)["accuracy"])

    return run


METHODS: dict[str, Callable[[pd.DataFrame, pd.DataFrame, int], float]] = {
    "gradient boosting, numeric columns alone (sklearn HistGradientBoosting)": gbm_numeric,
    "logistic regression, TF-IDF of the text alone (sklearn, C by CV)": linear_text,
    "polymodal fit, preset fast (one network)": polymodal_fit("fast"),
    "polymodal fit, default": polymodal_fit(None),
    "polymodal fit, preset quality": polymodal_fit("quality"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rows", type=int, default=1000)
    args = ap.parse_args()
    logging.getLogger("polymodal").setLevel(logging.WARNING)
    results: dict[str, list[float]] = {m: [] for m in METHODS}
    seconds: dict[str, float] = {m: 0.0 for m in METHODS}
    for seed in args.seeds:
        train, test = split(make_table(args.rows, seed), seed)
        for name, method in METHODS.items():
            start = time.perf_counter()
            results[name].append(method(train, test, seed))
            seconds[name] += time.perf_counter() - start
            print(f"seed {seed}: {name}: {results[name][-1]:.4f}", flush=True)
    out = {
        "rows": args.rows,
        "seeds": args.seeds,
        "load_average": os.getloadavg()[0],
        "accuracy": results,
        "seconds": {m: round(s, 1) for m, s in seconds.items()},
    }
    path = ROOT / "benchmarks" / "results" / "small_table.json"
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print("\n| method | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean | seconds (all seeds) |")
    print("|---|" + "---|" * (len(args.seeds) + 2))
    for name, accs in results.items():
        cells = " | ".join(f"{a:.3f}" for a in accs)
        print(f"| {name} | {cells} | {np.mean(accs):.3f} | {seconds[name]:.0f} |")
    print(f"\nload average at the end: {out['load_average']:.2f}")


if __name__ == "__main__":
    main()
