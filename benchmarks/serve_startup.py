"""How soon `polymodal serve` says something, and how soon it serves: a tiny model trained on generated data, then
`polymodal serve` started on loopback, the time of each log line taken from process start.

    .venv/bin/python benchmarks/serve_startup.py [--repeats 3]

Prints a markdown table and writes benchmarks/results/serve_startup.json. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "training": {"max_epochs": 1, "batch_size": 16},
    "encoders": {
        "image": {"name": "image_cnn", "width": 8, "dim": 16, "stages": 2},
        "audio": {"name": "audio_cnn", "width": 8, "dim": 16, "stages": 2},
        "text": {"name": "text_rnn", "hidden": 16, "embedding_dim": 16, "dim": 16},
        "tabular": {"name": "tabular_mlp", "hidden": 16, "dim": 16},
    },
    "fusion": {"dim": 32},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lines_until_serving(run: Path) -> dict[str, float]:
    """Seconds from process start to the first log line and to the 'serving' line."""
    cli = Path(sys.executable).parent / "polymodal"
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(cli), "serve", str(run), "--host", "127.0.0.1", "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    times: dict[str, float] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            t = time.perf_counter() - start
            times.setdefault("first_line_s", t)
            if line.startswith("serving"):
                times["serving_s"] = t
                break
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    from polymodal import Predictor
    from polymodal.datasets.synthetic import generate

    with tempfile.TemporaryDirectory() as tmp:
        frame = generate(Path(tmp), 80, seed=0)
        Predictor("label", config=TINY, data_root=tmp, verbose=False).fit(frame).save(Path(tmp) / "run")
        runs = [lines_until_serving(Path(tmp) / "run") for _ in range(a.repeats)]
    result = {
        k: {"min": round(min(r[k] for r in runs), 2), "median": round(statistics.median(r[k] for r in runs), 2)}
        for k in ("first_line_s", "serving_s")
    }
    out = ROOT / "benchmarks" / "results" / "serve_startup.json"
    out.write_text(
        json.dumps({"load_average": os.getloadavg()[0], "repeats": a.repeats, **result}, indent=2) + "\n",
        encoding="utf-8",
    )
    print("| line | min s | median s |\n|---|---|---|")
    for k, v in result.items():
        print(f"| {k.removesuffix('_s').replace('_', ' ')} | {v['min']} | {v['median']} |")


if __name__ == "__main__":
    main()
