"""The schema-driven server fuzz (tests/test_serving_fuzz.py) with many examples: requests generated from the
server's OpenAPI document (valid, mutated, raw bodies under each content type, multipart forms) must never get a 5xx.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_fuzz.py --examples 2000    # ~3 min on 2 cores

Runs pytest on the three fuzz tests with POLYMODAL_FUZZ_EXAMPLES set (hypothesis runs up to that many examples per
test, fewer when it exhausts a strategy; the requests actually sent are counted) and records the outcome in benchmarks/results/serve_fuzz.json and the
serve_fuzz section of docs/DEPLOYMENT.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=2000, help="examples per fuzz test (3 tests)")
    args = ap.parse_args()
    env = {**os.environ, "POLYMODAL_FUZZ_EXAMPLES": str(args.examples), "OMP_NUM_THREADS": "1"}
    count_file = ROOT / "benchmarks" / "results" / "serve_fuzz.count"
    env["POLYMODAL_FUZZ_COUNT_FILE"] = str(count_file)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_serving_fuzz.py"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    sent = int(count_file.read_text()) if count_file.exists() else 0
    count_file.unlink(missing_ok=True)
    result = {
        "examples_per_test": args.examples,
        "requests_sent": sent,
        "passed": proc.returncode == 0,
        "seconds": round(seconds, 1),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "machine": machine(),
        "command": f"python benchmarks/serve_fuzz.py --examples {args.examples}",
        "summary": out.strip().splitlines()[-1] if out.strip() else "",
    }
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "serve_fuzz.json").write_text(json.dumps(result, indent=2) + "\n")
    body = (
        f"{sent:,} generated requests (3 tests, up to {args.examples:,} examples each) in "
        f"{seconds:.0f} s: **{'no 5xx' if result['passed'] else 'FAILED: see the pytest output'}** "
        f"(`{result['summary']}`). Measured by `{result['command']}` on {result['machine']}; load average "
        f"{'/'.join(f'{x:.2f}' for x in load_before)} before."
    )
    write_section(ROOT / "docs" / "DEPLOYMENT.md", "serve_fuzz", body, title="# Deployment\n")
    print(out[-3000:])
    print(json.dumps(result, indent=2))
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
