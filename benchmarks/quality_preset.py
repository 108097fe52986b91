"""The quality preset (issue 17, acceptance 4): on the demo data and on AV-digits, is the ensemble at least as good on
test as its best member, and does the leaderboard list every member with validation and test scores?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quality_preset.py                 # demo + AV-digits subsample
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quality_preset.py --dataset demo

Demo: `polymodal demo`'s data (1200 training rows, 400 test rows, seed 0), polymodal defaults, no time limit (the
preset's fixed plan). AV-digits: a stratified subsample of the built table (default 2000 training and 1000 test rows
of data/avdigits, see docs/BENCHMARKS.md; skipped with a message when it is not built), with a time limit shared by
the members. Writes benchmarks/results/quality_preset.json and the "Quality preset" section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from _report import machine, write_section

from polymodal import Predictor
from polymodal.datasets.synthetic import make_demo

ROOT = Path(__file__).resolve().parents[1]


def _subsample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if n >= len(frame):
        return frame
    share = n / len(frame)
    parts = [g.sample(frac=share, random_state=seed) for _, g in frame.groupby("label", sort=True)]
    return pd.concat(parts).sort_index()


def run_one(
    name: str, train: Path | pd.DataFrame, test: Path | pd.DataFrame, time_limit: float | None, **kw: Any
) -> dict:
    load_before = os.getloadavg()
    start = time.perf_counter()
    p = Predictor("label", preset="quality", time_limit=time_limit, verbose=False, **kw).fit(train)
    fit_seconds = time.perf_counter() - start
    board = p.leaderboard(test)
    load_after = os.getloadavg()
    metric, mode = p.task.monitor
    better = (lambda a, b: a >= b) if mode == "max" else (lambda a, b: a <= b)
    members = board[(board["model"] != "ensemble") & (board["status"] == "ok")]
    ens = board[board["model"] == "ensemble"].iloc[0]
    best_test = members.loc[members["score_test"].idxmax() if mode == "max" else members["score_test"].idxmin()]
    best_val = members.loc[members["score_val"].idxmax() if mode == "max" else members["score_val"].idxmin()]
    cols = ["model", "kind", "modalities", "fusion", "weight", "score_val", "score_test", "fit_seconds", "status"]
    result = {
        "dataset": name,
        "metric": metric,
        "time_limit": time_limit,
        "fit_seconds": round(fit_seconds, 1),
        "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
        "ensemble_test": float(ens["score_test"]),
        "best_member_test": {"member": best_test["model"], "score": float(best_test["score_test"])},
        "best_member_val": {"member": best_val["model"], "score_test": float(best_val["score_test"])},
        "at_least_best_member_on_test": bool(better(ens["score_test"], best_test["score_test"])),
        "at_least_best_val_member_on_test": bool(better(ens["score_test"], best_val["score_test"])),
        "every_member_scored": bool(members["score_val"].notna().all() and members["score_test"].notna().all()),
        "leaderboard": json.loads(board[[c for c in cols if c in board.columns]].to_json(orient="records")),
    }
    print(json.dumps(result, indent=1), flush=True)
    return result


def markdown(r: dict) -> str:
    lines = [
        f"**{r['dataset']}** ({r['metric']}; fit {r['fit_seconds']:.0f} s"
        + (f", time limit {r['time_limit']:.0f} s" if r["time_limit"] else ", no time limit")
        + f"; 1-minute load average {r['load_average'][0]:.1f} before, {r['load_average'][1]:.1f} after)",
        "",
        "| model | kind | modalities | fusion | weight | validation | test | fit s | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def num(v: Any, digits: int = 4) -> str:
        return "" if v is None else f"{v:.{digits}f}"

    for row in r["leaderboard"]:
        name = f"**{row['model']}**" if row["model"] == "ensemble" else row["model"]
        lines.append(
            f"| {name} | {row.get('kind') or ''} | {row.get('modalities') or ''} | {row.get('fusion') or ''} | "
            f"{num(row.get('weight'), 3)} | {num(row.get('score_val'))} | {num(row.get('score_test'))} | "
            f"{num(row.get('fit_seconds'), 0)} | {row.get('status') or ''} |"
        )
    verdict = "yes" if r["at_least_best_member_on_test"] else "no"
    lines += [
        "",
        f"Ensemble {r['ensemble_test']:.4f} on test; best member on test: {r['best_member_test']['member']} "
        f"{r['best_member_test']['score']:.4f} (ensemble at least as good: {verdict}); the member best on validation, "
        f"{r['best_member_val']['member']}, scores {r['best_member_val']['score_test']:.4f} on test.",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=["demo", "avdigits", "all"], default="all")
    ap.add_argument("--demo-rows", type=int, default=1200, help="demo training rows (test rows: a third)")
    ap.add_argument("--avdigits", type=Path, default=ROOT / "data" / "avdigits", help="the built AV-digits folder")
    ap.add_argument("--avdigits-train", type=int, default=2000, help="AV-digits training rows (stratified subsample)")
    ap.add_argument("--avdigits-test", type=int, default=1000, help="AV-digits test rows (stratified subsample)")
    ap.add_argument("--avdigits-time-limit", type=float, default=600.0, help="seconds for the whole AV-digits fit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print only; do not update docs/BENCHMARKS.md")
    a = ap.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if a.dataset in ("demo", "all"):
            paths = make_demo(Path(tmp) / "demo", n_train=a.demo_rows, n_test=max(a.demo_rows // 3, 50), seed=a.seed)
            results.append(run_one("demo data", paths.train, paths.test, None, seed=a.seed))
        if a.dataset in ("avdigits", "all"):
            manifest = a.avdigits / "manifest.csv"
            if not manifest.is_file():
                print(
                    f"AV-digits skipped: {manifest} does not exist. Build it with `make bench-avdigits` (or "
                    f"../shared/data/avdigits/build.py --out {a.avdigits}) and run this again.",
                    file=sys.stderr,
                )
            else:
                frame = pd.read_csv(manifest)
                train = _subsample(frame[frame["split"] == "train"], a.avdigits_train, a.seed)
                test = _subsample(frame[frame["split"] == "test"], a.avdigits_test, a.seed)
                results.append(
                    run_one(
                        f"AV-digits ({len(train)} training / {len(test)} test rows)",
                        train,
                        test,
                        a.avdigits_time_limit,
                        seed=a.seed,
                        data_root=a.avdigits,
                        ignore=["id", "split"],
                    )
                )
    if not results:
        sys.exit("nothing was run")
    out = ROOT / "benchmarks" / "results" / "quality_preset.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "results": results}, indent=2) + "\n")
    body = "## Quality preset: ensemble vs its members\n\n" + "\n\n".join(markdown(r) for r in results)
    body += (
        f"\n\nMeasured by `OMP_NUM_THREADS=1 python benchmarks/quality_preset.py` on {machine()} (a machine shared "
        "with other jobs: see the load averages). Members the preset trains here: the fused network (concat), one "
        "network per modality, a late-fusion network, and every registered classical member that applies; weights by "
        "greedy selection on the validation split (accuracy, ties by log-loss)."
    )
    if not a.no_write:
        write_section(ROOT / "docs" / "BENCHMARKS.md", "quality_preset", body)
    print(body)


if __name__ == "__main__":
    main()
