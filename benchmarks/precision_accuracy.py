"""Does bf16-mixed training keep accuracy on AV-digits? float32 and bf16-mixed, same rows, seeds and epochs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/precision_accuracy.py                # ~5-15 minutes on 2 cores
    .venv/bin/python benchmarks/precision_accuracy.py --train-rows 17000 --test-rows 10000 --epochs 12

The network alone (preset "fast", so that the classical members of a small table's default fit do not mix in),
the first --train-rows training rows (15% held out for validation by ``fit``), --epochs fixed epochs, evaluated on
the first --test-rows test rows; each seed trained in both precisions, alternating. bf16-mixed needs a CPU with
native bfloat16 (AVX512-BF16/AMX) to be fast; it runs (slowly, emulated) elsewhere. Writes
benchmarks/results/precision_accuracy.json (``--no-write``: print only).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _avdigits import IGNORE, LABEL, ROOT, ensure_data
from _report import machine

from polymodal import Predictor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "avdigits", help="AV-digits folder (built if missing)")
    ap.add_argument("--train-rows", type=int, default=1500, help="first N training rows (default 1500)")
    ap.add_argument("--test-rows", type=int, default=1500, help="first N test rows (default 1500)")
    ap.add_argument("--epochs", type=int, default=8, help="fixed epochs per fit (default 8)")
    ap.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    a = ap.parse_args()
    data = a.data.resolve()
    frame = pd.read_csv(ensure_data(data))
    train = frame[frame["split"] == "train"].head(a.train_rows).reset_index(drop=True)
    test = frame[frame["split"] == "test"].head(a.test_rows).reset_index(drop=True)
    runs = []
    for i, seed in enumerate(int(s) for s in a.seeds.split(",")):
        for precision in ("32-true", "bf16-mixed") if i % 2 == 0 else ("bf16-mixed", "32-true"):
            load = Path("/proc/loadavg").read_text().split()[0]
            start = time.perf_counter()
            p = Predictor(
                LABEL,
                ignore=IGNORE,
                data_root=data,
                seed=seed,
                verbose=False,
                preset="fast",
                config={"training": {"precision": precision, "max_epochs": a.epochs}},
            ).fit(train)
            fit_s = time.perf_counter() - start
            m = p.evaluate(test, data_root=data)
            r = {
                "precision": precision,
                "seed": seed,
                "test_accuracy": round(float(m["accuracy"]), 4),
                "val_accuracy": round(float(p.fit_result.validation.get("val_accuracy", float("nan"))), 4),
                "fit_seconds": round(fit_s, 1),
                "loadavg_before": load,
            }
            runs.append(r)
            print(json.dumps(r), flush=True)
    mean = {
        prec: round(statistics.mean(r["test_accuracy"] for r in runs if r["precision"] == prec), 4)
        for prec in ("32-true", "bf16-mixed")
    }
    res = {
        "command": "benchmarks/precision_accuracy.py " + " ".join(shlex.quote(x) for x in sys.argv[1:]),
        "machine": machine(),
        "train_rows": len(train),
        "test_rows": len(test),
        "epochs": a.epochs,
        "runs": runs,
        "mean_test_accuracy": mean,
    }
    print(json.dumps(res["mean_test_accuracy"]))
    if not a.no_write:
        out = ROOT / "benchmarks" / "results" / "precision_accuracy.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
