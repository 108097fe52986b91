"""Wall time of every example's ``--tiny`` mode (what CI and a first-time reader run), one fresh process each.

    .venv/bin/python benchmarks/examples_tiny.py

Writes benchmarks/results/examples_tiny.json and prints a markdown table; the examples' docstrings quote these
figures. Run it on an idle machine: the load average at the end is recorded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    rows = []
    for script in sorted((ROOT / "examples").glob("seed*.py")):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            r = subprocess.run([sys.executable, str(script), "--tiny", "--out", tmp], capture_output=True, text=True)
            seconds = time.perf_counter() - start
        if r.returncode != 0:
            sys.exit(f"{script.name} --tiny failed:\n{r.stderr[-2000:]}")
        rows.append({"example": script.name, "seconds": round(seconds, 1)})
        print(f"{script.name}: {seconds:.1f} s", flush=True)
    out = ROOT / "benchmarks" / "results" / "examples_tiny.json"
    out.write_text(json.dumps({"load_average": os.getloadavg()[0], "rows": rows}, indent=2) + "\n", encoding="utf-8")
    print("| example | `--tiny` wall time (s) |\n|---|---|")
    for r in rows:
        print(f"| {r['example']} | {r['seconds']} |")


if __name__ == "__main__":
    main()
