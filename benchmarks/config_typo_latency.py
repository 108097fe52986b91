"""How fast a config typo is refused: `polymodal fit` on the AV-digits table with a misspelt encoder, fusion and
training key, timed end to end (process start to exit code 2), before any file of the table is decoded.

    .venv/bin/python benchmarks/config_typo_latency.py [--repeats 3]

Writes benchmarks/results/config_typo_latency.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _avdigits import ROOT, ensure_data

TYPOS = {
    "encoder parameter": "encoders:\n  image: {name: image_cnn, widht: 8}\n",
    "fusion parameter": "fusion: {name: late, combin: vote}\n",
    "training parameter": "training: {learnin_rate: 0.1}\n",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "avdigits")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    ensure_data(a.data)
    cli = Path(sys.executable).parent / "polymodal"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in TYPOS.items():
            cfg = Path(tmp) / "bad.yaml"
            cfg.write_text(text, encoding="utf-8")
            times, message, code = [], "", 0
            for _ in range(a.repeats):
                start = time.perf_counter()
                r = subprocess.run(
                    [
                        str(cli),
                        "fit",
                        str(a.data / "train.csv"),
                        "--label",
                        "label",
                        "--config",
                        str(cfg),
                        "--out",
                        str(Path(tmp) / "run"),
                    ],
                    capture_output=True,
                    text=True,
                )
                times.append(time.perf_counter() - start)
                message, code = r.stderr.strip().splitlines()[-1], r.returncode
            rows.append(
                {
                    "typo": name,
                    "exit_code": code,
                    "message": message,
                    "min_s": round(min(times), 3),
                    "median_s": round(statistics.median(times), 3),
                }
            )
    out = ROOT / "benchmarks" / "results" / "config_typo_latency.json"
    out.write_text(
        json.dumps({"load_average": os.getloadavg()[0], "repeats": a.repeats, "rows": rows}, indent=2) + "\n",
        encoding="utf-8",
    )
    print("| typo | exit code | message | min s | median s |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['typo']} | {r['exit_code']} | `{r['message']}` | {r['min_s']} | {r['median_s']} |")


if __name__ == "__main__":
    main()
