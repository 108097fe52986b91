"""Fuzz the table readers, the loaders, the processors' load and schema inference with many generated inputs.

The property (the same as tests/test_hostile_inputs.py, with far more examples): every input either loads or raises
one of polymodal's own errors. Any other exception is counted as uncaught, with its type, message and input.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/fuzz_loaders.py --examples 12000

writes benchmarks/results/fuzz_loaders.json (per target: inputs, loaded, refused, uncaught, seconds, examples of
uncaught exceptions) and prints a summary; exit code 1 when anything was uncaught.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import warnings
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the targets live beside the suite's tests

from fuzz_targets import TARGETS, Target

from polymodal.errors import PolymodalError

OUT = Path(__file__).resolve().parent / "results" / "fuzz_loaders.json"


def fuzz(target: Target, examples: int, seed: int) -> dict:
    counts = {"inputs": 0, "loaded": 0, "refused": 0, "uncaught": 0}
    found: dict[str, dict] = {}

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],  # no shrinking: every input counts once, a crash is recorded, not minimised
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis_seed(seed)  # reproducible runs
    @given(target.inputs)
    def check(value):
        counts["inputs"] += 1
        try:
            target.run(value)
        except PolymodalError:
            counts["refused"] += 1
        except Exception as e:  # the property's failure: recorded, and the run goes on
            counts["uncaught"] += 1
            frame = traceback.extract_tb(e.__traceback__)[-1]
            key = f"{type(e).__name__} at {Path(frame.filename).name}:{frame.lineno}"
            hit = found.setdefault(key, {"count": 0, "message": str(e)[:300], "input": repr(value)[:300]})
            hit["count"] += 1
        else:
            counts["loaded"] += 1

    start = time.perf_counter()
    check()
    return {**counts, "seconds": round(time.perf_counter() - start, 1), "uncaught_by_place": found}


def write(results: dict, args: argparse.Namespace, complete: bool) -> dict:
    """The report so far, written atomically (after every target: a long run that is stopped keeps its figures)."""
    total = {k: sum(r[k] for r in results.values()) for k in ("inputs", "loaded", "refused", "uncaught")}
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/fuzz_loaders.py " + " ".join(sys.argv[1:]),
        "complete": complete,
        "examples_per_target": args.examples,
        "seed": args.seed,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "total": total,
        "targets": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(args.out)
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=12_000, help="generated inputs per target")
    ap.add_argument("--seed", type=int, default=0, help="hypothesis seed")
    ap.add_argument("--only", nargs="*", help="run only these targets")
    ap.add_argument("--out", type=Path, default=OUT, help="where the JSON results go")
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # decoders warn about every corrupt header; the counts are what matter here
    results = {}
    for target in TARGETS:
        if args.only and target.name not in args.only:
            continue
        r = fuzz(target, args.examples, args.seed)
        results[target.name] = r
        print(
            f"{target.name:14s} {r['inputs']:>8,} inputs  {r['loaded']:>8,} loaded  {r['refused']:>8,} refused  "
            f"{r['uncaught']:>5,} uncaught  {r['seconds']:>7.1f} s",
            flush=True,
        )
        for key, hit in r["uncaught_by_place"].items():
            print(f"    {hit['count']:>5} x {key}: {hit['message'][:120]}  input={hit['input'][:120]}", flush=True)
        write(results, args, complete=False)
    report = write(results, args, complete=True)
    total = report["total"]
    print(f"total: {total['inputs']:,} inputs, {total['uncaught']:,} uncaught; load average {report['load_average']}")
    return 1 if total["uncaught"] else 0


if __name__ == "__main__":
    sys.exit(main())
