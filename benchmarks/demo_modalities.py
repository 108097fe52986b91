"""The demo data set needs several modalities: run `polymodal demo` (all columns, timed end to end), then train on
each single modality of the same data, same split, and compare test accuracy.

    .venv/bin/python benchmarks/demo_modalities.py            # ~8 minutes on 2 CPU cores

Uses polymodal's defaults and the demo's data (1200 training rows, 400 test rows, seed 0).
Writes benchmarks/results/demo_modalities.json and the table in README.md between the demo_modalities markers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import machine, write_section

from polymodal import Predictor
from polymodal.datasets.synthetic import make_demo

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ["image", "audio", "text", "reading", "region"]
VARIANTS = {
    "image only": ["image"],
    "audio only": ["audio"],
    "text only": ["text"],
    "tabular only (reading + region)": ["reading", "region"],
    "reading only": ["reading"],
    "region only": ["region"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1200, help="training rows (test rows: a third), as `polymodal demo`")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print only; do not update README.md")
    a = ap.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        # 1. The demo command itself, timed end to end (data generation, fit, save, evaluation, report).
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "polymodal.cli",
                "demo",
                "--out",
                tmp,
                "--rows",
                str(a.rows),
                "--seed",
                str(a.seed),
                "--quiet",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        demo_seconds = time.perf_counter() - start
        p = Predictor.load(Path(tmp) / "run", verbose=False)
        test = Path(tmp) / "data" / "test.csv"
        m = p.evaluate(test)
        results.append(
            {
                "model": "all columns (`polymodal demo`)",
                "columns": INPUTS,
                "test_accuracy": round(m["accuracy"], 4),
                "test_rows": int(m["rows"]),
                "fit_seconds": p.fit_result.fit_seconds,
                "epochs": p.fit_result.epochs_run,
                "demo_seconds": round(demo_seconds, 1),
            }
        )
        print(json.dumps(results[-1]), flush=True)
        # 2. Each single modality on the same data and split.
        paths = make_demo(Path(tmp) / "data", n_train=a.rows, n_test=max(a.rows // 3, 50), seed=a.seed)
        for name, keep in VARIANTS.items():
            ignore = [c for c in INPUTS if c not in keep]
            start = time.perf_counter()
            p = Predictor("label", ignore=ignore, seed=a.seed, verbose=False).fit(paths.train)
            m = p.evaluate(paths.test)
            results.append(
                {
                    "model": name,
                    "columns": keep,
                    "test_accuracy": round(m["accuracy"], 4),
                    "test_rows": int(m["rows"]),
                    "fit_seconds": round(time.perf_counter() - start, 1),
                    "epochs": p.fit_result.epochs_run,
                }
            )
            print(json.dumps(results[-1]), flush=True)

    out = ROOT / "benchmarks" / "results" / "demo_modalities.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "results": results}, indent=2) + "\n")
    lines = ["| model | columns | test accuracy | fit time (s) |", "|---|---|---|---|"]
    lines += [
        f"| {r['model']} | {', '.join(r['columns'])} | {r['test_accuracy']:.3f} | {r['fit_seconds']:.0f} |"
        for r in results
    ]
    body = "\n".join(lines) + (
        f"\n\n`polymodal demo` took {results[0]['demo_seconds']:.0f} s end to end (data generation, fit, evaluation, HTML report). "
        f"Measured by `python benchmarks/demo_modalities.py` on {machine()}; "
        f"{results[0]['test_rows']} held-out test rows, polymodal defaults."
    )
    if not a.no_write:
        write_section(ROOT / "README.md", "demo_modalities", body)
    print(body)


if __name__ == "__main__":
    main()
