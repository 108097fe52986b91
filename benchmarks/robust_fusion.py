"""Graceful degradation (issue 22): the robust preset vs concat and late fusion, each swept for robustness against
the best model that ignores the damaged modality.

    python benchmarks/robust_fusion.py --dataset avdigits --seeds 3 --epochs 8      # the full protocol (~1 hour)
    python benchmarks/robust_fusion.py --dataset demo --seeds 3 --epochs 20         # the demo table, minutes

For each seed: fit ``robust`` (``--preset robust``: dynamic fusion with independent experts and a joint expert,
corruption augmentation), ``concat`` and ``late`` (``--preset fast`` with that fusion), and for every modality a
model that ignores it (on AV-digits: the single-modality model of the other modality). Each fused model is then swept
(``Predictor.evaluate(robustness=True, robustness_reference=...)``): AV-digits with the issue's default sweep (image
Gaussian noise up to σ 0.5, occlusion up to 0.7, audio white noise down to −5 dB, each modality missing), the demo
with every corruption that applies. A configuration *passes* a modality when every corrupted and the missing score
is at least the best-without score minus ``--tolerance`` (1 point).

Reduced runs: ``--train-rows`` / ``--test-rows`` take the first rows of each split, ``--sweep-rows`` the rows swept.
Results: benchmarks/results/robust_fusion_<dataset>/ (results.json, report.md, one robustness folder per model).
``--docs`` writes the report into docs/BENCHMARKS.md (section robust_fusion_<dataset>).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _avdigits import IGNORE, LABEL, ROOT, ensure_data
from _report import machine, write_section

from polymodal import Predictor
from polymodal.datasets.synthetic import generate

AVDIGITS_SWEEP = {"gaussian_noise": None, "occlusion": None, "white_noise": None}
VARIANTS = {"robust": ("robust", None), "concat": ("fast", "concat"), "late": ("fast", "late")}


def tables(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame, Path, list[str], str]:
    """(train, test, data root, columns to ignore, label)."""
    if args.dataset == "avdigits":
        data = args.data.resolve()
        ensure_data(data)
        train, test = pd.read_csv(data / "train.csv"), pd.read_csv(data / "test.csv")
        return train.head(args.train_rows), test.head(args.test_rows), data, IGNORE, LABEL
    data = (args.out / "data").resolve()
    if not (data / "train.csv").is_file():
        data.mkdir(parents=True, exist_ok=True)
        generate(data, args.train_rows or 600, seed=1, prefix="train_").to_csv(data / "train.csv", index=False)
        generate(data, args.test_rows or 300, seed=2, prefix="test_").to_csv(data / "test.csv", index=False)
    return pd.read_csv(data / "train.csv"), pd.read_csv(data / "test.csv"), data, [], "label"


def fit(
    train: pd.DataFrame,
    data: Path,
    label: str,
    ignore: list[str],
    preset: str,
    fusion: str | None,
    seed: int,
    epochs: int,
    out: Path,
) -> Predictor:
    if (out / "polymodal.json").is_file():
        return Predictor.load(out, verbose=False)
    cfg: dict = {"ignore": ignore, "training": {"max_epochs": epochs}}
    if fusion is not None:
        cfg["fusion"] = {"name": fusion}
    start = time.perf_counter()
    p = Predictor(label, config=cfg, data_root=data, seed=seed, preset=preset, verbose=False).fit(train)
    print(f"  fit {out.name}: {time.perf_counter() - start:.0f} s, load {os.getloadavg()[0]:.1f}", flush=True)
    p.save(out)
    return p


def run_seed(seed: int, args: argparse.Namespace) -> dict:
    train, test, data, ignore, label = tables(args)
    swept = test.sample(min(args.sweep_rows, len(test)), random_state=0) if args.sweep_rows else test
    sweep = AVDIGITS_SWEEP if args.dataset == "avdigits" else None
    models = {
        name: fit(train, data, label, ignore, *spec, seed, args.epochs, args.out / f"{name}-seed{seed}")
        for name, spec in VARIANTS.items()
    }
    modalities = {m.name: list(m.columns) for m in models["robust"].pipeline.modalities}
    without = {
        m: fit(
            train, data, label, ignore + cols, "fast", "concat", seed, args.epochs, args.out / f"without-{m}-seed{seed}"
        )
        for m, cols in modalities.items()
    }
    result: dict = {"seed": seed, "test_rows": len(test), "swept_rows": len(swept), "models": {}}
    for name, model in models.items():
        out_dir = args.out / f"robustness-{name}-seed{seed}"
        rep = model.evaluate(
            swept,
            data_root=data,
            robustness=True,
            corruptions=sweep,
            robustness_reference={m: [w] for m, w in without.items()},
            robustness_out=out_dir,
        )["robustness"]
        metric = rep.metric
        per_mod = {}
        for m in modalities:
            scores = [
                (c.corruption, lv, s)
                for c in rep.curves
                if c.modality == m
                for lv, s in zip(c.levels[1:], c.scores(metric)[1:])
            ]
            scores.append(("missing", math.nan, rep.missing[m][metric]))
            ref = rep.without(m)
            worst = min(scores, key=lambda t: t[2])
            per_mod[m] = {
                "best_without": ref,
                "worst": worst[2],
                "worst_case": f"{worst[0]} {'' if math.isnan(worst[1]) else f'{worst[1]:g}'}".strip(),
                "passes": all(s >= ref - args.tolerance for *_, s in scores),
                "scores": [
                    {"corruption": c, "level": None if math.isnan(lv) else lv, metric: s} for c, lv, s in scores
                ],
            }
        result["models"][name] = {"clean": rep.clean[metric], "metric": metric, "modalities": per_mod}
        print(
            f"  {name}: clean {rep.clean[metric]:.4f}; "
            + "; ".join(
                f"{m} worst {v['worst']:.4f} vs {v['best_without']:.4f} ({'ok' if v['passes'] else 'FAIL'})"
                for m, v in per_mod.items()
            ),
            flush=True,
        )
    return result


def report(results: list[dict], args: argparse.Namespace, command: str, seconds: float, load: str) -> str:
    names = list(VARIANTS)
    mods = list(results[0]["models"]["robust"]["modalities"])
    metric = results[0]["models"]["robust"]["metric"]
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {machine()} (shared with other jobs: load average at the end {load}); {seconds:.0f} s in all.  ",
        f"Protocol: {args.dataset}, {args.train_rows or 'all'} training rows (15% held out for validation), "
        f"{results[0]['test_rows']} test rows of which {results[0]['swept_rows']} swept, {args.epochs} epochs, seeds "
        f"{', '.join(str(r['seed']) for r in results)}. Reference per modality: the best model that ignores it "
        f"(`--preset fast`, concat, same data). Pass: every corrupted and the missing {metric} ≥ reference − "
        f"{args.tolerance:g}.",
        "",
        f"| model | seed | clean {metric} | "
        + " | ".join(f"{m}: worst (case) / best without / pass" for m in mods)
        + " |",
        "|---|---|---|" + "---|" * len(mods),
    ]
    for r in results:
        for n in names:
            d = r["models"][n]
            cells = [
                f"{v['worst']:.4f} ({v['worst_case']}) / {v['best_without']:.4f} / {'yes' if v['passes'] else '**no**'}"
                for v in (d["modalities"][m] for m in mods)
            ]
            lines.append(f"| {n} | {r['seed']} | {d['clean']:.4f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Full curves and per-row fusion weights: `robustness-<model>-seed<k>/robustness.md` under "
        f"`{args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=["avdigits", "demo"], default="avdigits")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "avdigits", help="the AV-digits folder")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--train-rows", type=int, default=None, help="first N training rows (default: all; demo 600)")
    ap.add_argument("--test-rows", type=int, default=None, help="first N test rows (default: all; demo 300)")
    ap.add_argument("--sweep-rows", type=int, default=2000, help="test rows swept (0 = all)")
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--out", type=Path, default=None, help="results folder")
    ap.add_argument("--docs", action="store_true", help="write the report into docs/BENCHMARKS.md")
    args = ap.parse_args()
    args.out = (args.out or ROOT / "benchmarks" / "results" / f"robust_fusion_{args.dataset}").resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/robust_fusion.py " + " ".join(shlex.quote(a) for a in sys.argv[1:] if a != "--docs")
    start = time.perf_counter()
    results = []
    for seed in range(args.seeds):
        print(f"seed {seed}", flush=True)
        results.append(run_seed(seed, args))
    seconds = time.perf_counter() - start
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    (args.out / "results.json").write_text(json.dumps({"command": command, "load": load, "results": results}, indent=1))
    body = report(results, args, command, seconds, load)
    (args.out / "report.md").write_text(body, encoding="utf-8")
    print(body)
    if args.docs:
        title = "AV-digits" if args.dataset == "avdigits" else "the demo table"
        write_section(
            ROOT / "docs" / "BENCHMARKS.md",
            f"robust_fusion_{args.dataset}",
            f"## Robust fusion on {title}: graceful degradation\n\n{body}",
        )


if __name__ == "__main__":
    main()
