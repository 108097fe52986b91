"""The demo data set needs several modalities: train on all columns, then on each single modality, same split.

    .venv/bin/python benchmarks/demo_modalities.py            # ~5 minutes on 2 CPU cores

Uses the exact data `polymodal demo` generates (1200 training rows, 400 test rows, seed 0) and polymodal's defaults.
Writes benchmarks/results/demo_modalities.json and the table in README.md between the demo_modalities markers.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _report import machine, write_section

from polymodal import Predictor
from polymodal.data.synthetic import make_demo

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ["image", "audio", "text", "reading", "region"]
VARIANTS = {
    "all columns": INPUTS,
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
        paths = make_demo(Path(tmp) / "data", n_train=a.rows, n_test=max(a.rows // 3, 50), seed=a.seed)
        for name, keep in VARIANTS.items():
            ignore = [c for c in INPUTS if c not in keep]
            start = time.perf_counter()
            p = Predictor("label", ignore=ignore, seed=a.seed, verbose=False).fit(paths.train)
            m = p.evaluate(paths.test)
            results.append({"model": name, "columns": keep, "test_accuracy": round(m["accuracy"], 4),
                            "test_rows": int(m["rows"]), "fit_seconds": round(time.perf_counter() - start, 1),
                            "epochs": p.fit_result.epochs_run + 1})
            print(json.dumps(results[-1]), flush=True)

    out = ROOT / "benchmarks" / "results" / "demo_modalities.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "results": results}, indent=2) + "\n")
    lines = ["| model | columns | test accuracy | fit time (s) |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {', '.join(r['columns'])} | {r['test_accuracy']:.3f} | {r['fit_seconds']:.0f} |"
              for r in results]
    body = "\n".join(lines) + (f"\n\nMeasured by `python benchmarks/demo_modalities.py` on {machine()}; "
                               f"{results[0]['test_rows']} held-out test rows, polymodal defaults.")
    if not a.no_write:
        write_section(ROOT / "README.md", "demo_modalities", body)
    print(body)


if __name__ == "__main__":
    main()
