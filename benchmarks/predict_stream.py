"""Streaming prediction over many rows: `polymodal predict RUN - --stream` fed --rows JSON lines on stdin, its
resident memory sampled as it goes (flat memory = the same peak after 10% of the rows as after all of them).

    .venv/bin/python benchmarks/predict_stream.py                  # 100,000 rows; a few minutes on 2 CPU cores

Model: a cheap one (text + numeric + category columns of the demo's data, fast preset, 1 epoch) trained here into
benchmarks/results/predict_stream/run, so that the figure is the streaming path's, not image decoding's. Input: the
demo's test rows cycled to --rows lines, one malformed line every 10,000 (each must come back as an error object).
Checks: one answer per line, in order; prints rows/s, the peak RSS after 10%, 50% and 100% of the rows, and the
load average. Writes benchmarks/results/predict_stream.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "predict_stream"
COLUMNS = ["text", "reading", "region"]


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=256, help="--stream-batch")
    args = ap.parse_args()

    from polymodal import Predictor
    from polymodal.datasets.synthetic import make_demo

    data = make_demo(OUT / "data", n_train=400, n_test=200, seed=0)
    run = OUT / "run"
    if not (run / "manifest.json").exists():
        train = pd.read_csv(data.train)[[*COLUMNS, "label"]]
        cfg = {"training": {"max_epochs": 1}}
        Predictor("label", config=cfg, preset="fast", verbose=False, seed=0).fit(train).save(run)
    test = pd.read_csv(data.test)[COLUMNS]
    records = [json.dumps({k: (None if pd.isna(v) else v) for k, v in r.items()}) for r in test.to_dict("records")]

    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-c", "from polymodal.cli import app; app()", "predict", str(run), "-", "--stream"]
    cmd += ["--stream-batch", str(args.batch), "--quiet"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=1 << 16)
    assert proc.stdin is not None and proc.stdout is not None
    bad = {i for i in range(5_000, args.rows, 10_000)}

    def feed() -> None:
        assert proc.stdin is not None
        for i in range(args.rows):
            line = "{malformed" if i in bad else records[i % len(records)]
            proc.stdin.write((line + "\n").encode())
        proc.stdin.close()

    start = time.perf_counter()
    threading.Thread(target=feed, daemon=True).start()
    peak, marks, answered, errors, in_order = 0, {}, 0, 0, True
    checkpoints = {args.rows // 10: "10%", args.rows // 2: "50%", args.rows: "100%"}
    for raw in proc.stdout:
        answer = json.loads(raw)
        in_order &= answer["row"] == answered
        errors += "problem" in answer
        answered += 1
        if answered % 500 == 0 or answered == args.rows:
            peak = max(peak, _rss_kib(proc.pid))
        if answered in checkpoints:
            marks[checkpoints[answered]] = round(peak / 1024, 1)
    proc.wait()
    seconds = time.perf_counter() - start
    result = {
        "rows": args.rows,
        "answered": answered,
        "in_order": bool(in_order),
        "error_objects": errors,
        "malformed_lines": len(bad),
        "seconds": round(seconds, 1),
        "rows_per_s": round(answered / seconds),
        "peak_rss_mib_after": marks,
        "exit_code": proc.returncode,
        "stream_batch": args.batch,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
    }
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "predict_stream.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
