"""Issue 25, acceptance 3: on the generated Chinese review task (``polymodal.datasets.reviews_zh``), test accuracy of
the from-scratch text encoder with each ``processing.text_segmentation`` (regex = a clause per token, as before CJK
support; char; char_bigram; word = jieba), side by side on the same split and seeds.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cjk_text.py [--seeds 0 1 2] [--rows 1000] [--epochs 15]

Writes benchmarks/results/cjk_text_<rows>rows.json (with the load average: the timings are wall times) and prints a markdown
table. The best mean accuracy decides ``polymodal.data.segment.DEFAULT_SEGMENTATION``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from polymodal import Predictor
from polymodal.data.segment import SEGMENTERS
from polymodal.datasets.reviews_zh import generate_reviews

ROOT = Path(__file__).resolve().parents[1]


def run(segmentation: str, rows: int, epochs: int, seed: int) -> tuple[float, float]:
    train, test = generate_reviews(rows, seed=seed), generate_reviews(rows // 2, seed=1000 + seed)
    config = {
        "processing": {"text_segmentation": segmentation},
        "training": {"max_epochs": epochs, "seed": seed},
    }
    start = time.perf_counter()
    p = Predictor("label", config=config, verbose=False).fit(train)
    return float(p.evaluate(test)["accuracy"]), time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rows", type=int, default=1000, help="training rows (test rows: half as many)")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--segmentations", nargs="+", default=SEGMENTERS.names())
    a = ap.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    results: dict[str, dict[str, list[float]]] = {}
    for seg in a.segmentations:
        for seed in a.seeds:
            acc, seconds = run(seg, a.rows, a.epochs, seed)
            r = results.setdefault(seg, {"accuracy": [], "seconds": []})
            r["accuracy"].append(round(acc, 4))
            r["seconds"].append(round(seconds, 1))
            print(f"{seg} seed {seed}: accuracy {acc:.3f} ({seconds:.0f} s)", flush=True)
    majority = float((generate_reviews(a.rows // 2, seed=1000 + a.seeds[0])["label"] == "负面").mean())
    load = os.getloadavg()[0]
    out = {
        "rows": a.rows,
        "epochs": a.epochs,
        "seeds": a.seeds,
        "majority_class_rate": round(majority, 4),
        "load_average": load,
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
    }
    path = ROOT / "benchmarks" / "results" / f"cjk_text_{a.rows}rows.json"
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nload average {load:.2f}; majority class {majority:.3f}")
    print("| text_segmentation | test accuracy per seed | mean | fit s (mean) |\n|---|---|---|---|")
    for seg, r in results.items():
        accs = ", ".join(f"{x:.3f}" for x in r["accuracy"])
        print(f"| {seg} | {accs} | {np.mean(r['accuracy']):.3f} | {np.mean(r['seconds']):.0f} |")


if __name__ == "__main__":
    main()
