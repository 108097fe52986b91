"""Zero-shot classification (issue 23, acceptance 4): a retrieval model trained on caption <-> image pairs of
scenes classifies new single-object images into "<colour> <shape>" labels (18 classes), a classification it was
never trained for, from text prompts only.

    .venv/bin/python benchmarks/zero_shot.py --rows 3000 --epochs 20 --threads 1     # the retrieval benchmark's fit
    .venv/bin/python benchmarks/zero_shot.py --rows 1000 --epochs 8 --threads 1      # a reduced run

The retrieval fit is benchmarks/retrieval.py's (image_cnn with coordinates, text_rnn, symmetric InfoNCE) on
distinct multi-object scenes (make_pairs). The test images are new scenes of one object each: (a) at the centre,
labels prompted as "a {label} at the centre"; (b) at a random cell, prompted as "a {label}" (no position: a
prompt shorter than any training caption). Accuracy is compared with chance (1/18) and with the same network
untrained.

Writes benchmarks/results/zero_shot.json and the zero_shot section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section
from retrieval import config

from polymodal import Predictor
from polymodal.datasets.pairs import make_pairs
from polymodal.datasets.scenes import COLOURS, SHAPES, SceneObject, generate_captioning

ROOT = Path(__file__).resolve().parents[1]
LABELS = [f"{c} {s}" for c in COLOURS for s in SHAPES]
TASKS = {"centre": "a {label} at the centre", "anywhere": "a {label}"}


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def single_objects(out: Path, n: int, centre: bool, seed: int, prefix: str) -> tuple[Path, list[str]]:
    rng = np.random.default_rng(seed)
    scenes, truth = [], []
    for _ in range(n):
        colour, shape = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
        row, col = (1, 1) if centre else (int(rng.integers(3)), int(rng.integers(3)))
        scenes.append((SceneObject(colour, shape, row, col),))
        truth.append(f"{colour} {shape}")
    path = out / f"{prefix}.csv"
    generate_captioning(out, scenes, seed=seed, prefix=prefix)[["image"]].to_csv(path, index=False)
    return path, truth


def accuracy(p: Predictor, table: Path, truth: list[str], prompt: str) -> float:
    pred = p.zero_shot(table, LABELS, prompt).predictions.to_numpy()
    return float(np.mean(pred == np.asarray(truth)))


def run(a: argparse.Namespace) -> tuple[dict, str]:
    res: dict = {"rows": a.rows, "epochs": a.epochs, "tests": a.tests, "labels": len(LABELS), "chance": 1 / len(LABELS)}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        pairs = make_pairs(out, n_train=a.rows, n_test=200, seed=a.seed)
        tests = {name: single_objects(out, a.tests, name == "centre", a.seed + 7, f"zs_{name}") for name in TASKS}
        common = {"problem_type": "retrieval", "query": ["caption"], "target": ["image"], "seed": a.seed}
        untrained = Predictor(config=config(1, a.batch_size, 1e-12), verbose=False, **common).fit(pairs.train)
        load0, start = _load(), time.perf_counter()
        p = Predictor(config=config(a.epochs, a.batch_size, a.lr), verbose=True, **common).fit(pairs.train)
        res["fit_seconds"], res["load_average"] = round(time.perf_counter() - start, 1), [load0, _load()]
        res["retrieval_recall@10"] = round(float(p.evaluate(pairs.test)["recall@10"]), 4)
        res["tasks"] = {
            name: {
                "prompt": prompt,
                "trained": round(accuracy(p, tests[name][0], tests[name][1], prompt), 4),
                "untrained": round(accuracy(untrained, tests[name][0], tests[name][1], prompt), 4),
            }
            for name, prompt in TASKS.items()
        }
    rows = [
        f"| {name} | `{t['prompt']}` | {t['trained']:.3f} | {t['untrained']:.3f} | {res['chance']:.3f} |"
        for name, t in res["tasks"].items()
    ]
    body = "\n".join(
        [
            "## Zero-shot classification (issue 23): colour + shape of new single-object scenes",
            "",
            f"A retrieval model (caption <-> image, benchmarks/retrieval.py's configuration) trained on {a.rows} "
            f"multi-object scene pairs for {a.epochs} epochs (held-out Recall@10 {res['retrieval_recall@10']:.3f} "
            f"among 200), then `Predictor.zero_shot` on {a.tests} new images of one object each into the "
            f"{len(LABELS)} labels '<colour> <shape>' (never a training target). Prompts name no article rule: "
            "'a orange ...' where captions say 'an orange ...'.",
            "",
            "| object placed | prompt | accuracy (trained) | untrained network | chance |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Fit {res['fit_seconds']:.0f} s; load average {res['load_average'][0]} before, "
            f"{res['load_average'][1]} after (a shared machine).",
            "",
            f"Measured by `python benchmarks/zero_shot.py --rows {a.rows} --epochs {a.epochs} --tests {a.tests} "
            f"--batch-size {a.batch_size} --lr {a.lr} --threads {torch.get_num_threads()}` on {machine()}.",
        ]
    )
    return res, body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--tests", type=int, default=540)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-docs", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
        os.environ.setdefault("POLYMODAL_THREADS", str(a.threads))
    res, body = run(a)
    out = ROOT / "benchmarks" / "results" / "zero_shot.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(body)
    if not a.no_docs:
        write_section(ROOT / "docs" / "BENCHMARKS.md", "zero_shot", body)


if __name__ == "__main__":
    main()
