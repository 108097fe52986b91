"""Issue 20, acceptance 1: peak memory and throughput as the table grows.

Generates an image + text + tabular table (32x32 PNGs on disk; ``--images`` distinct files, reused across rows so
that a million-row table needs no million files: decoding still reads and decodes each distinct file once per
chunk), then measures, each in a fresh subprocess (peak RSS = that process's ``ru_maxrss`` from ``os.wait4``):

- ``fit``: one training epoch of ``Predictor(preset="fast")`` (``training.max_epochs: 1``) at each ``--rows-fit``
  size; rows/s = rows / wall time of the whole ``fit`` (decoding included);
- ``predict``: ``polymodal predict RUN TABLE --out preds.csv`` over ``--rows-predict`` rows, with the table as CSV and
  as Parquet (``--formats``; the run is a 1-epoch model fitted on 2,000 rows).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale.py                      # 10k/100k fit, 1M predict
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale.py --rows-fit 2000,20000 --rows-predict 100000  # smoke

Writes benchmarks/results/scale.json and the docs/BENCHMARKS.md section "scale" (with the load average before and
after each measurement: the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "scale"
DEFAULT_ROWS_FIT = "10000,100000"
DEFAULT_ROWS_PREDICT = 1_000_000
WORDS = [
    "red",
    "green",
    "blue",
    "small",
    "large",
    "round",
    "square",
    "soft",
    "hard",
    "bright",
    "dark",
    "light",
    "heavy",
    "quick",
    "slow",
    "warm",
    "cold",
]


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def make_images(folder: Path, count: int, seed: int) -> list[str]:
    """``count`` distinct 32x32 RGB PNGs whose mean colour carries the class (a learnable signal)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        base = np.array([200, 40, 40]) if i % 2 else np.array([40, 40, 200])
        pixels = np.clip(base + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
        name = f"images/{i:05d}.png"
        Image.fromarray(pixels).save(folder.parent / name)
        names.append(name)
    return names


def make_table(root: Path, rows: int, images: int, seed: int) -> pd.DataFrame:
    """``rows`` rows: image (one of ``images`` files), text (4-10 words), two numbers, a category, a binary label."""
    rng = np.random.default_rng(seed)
    names = sorted(p.relative_to(root).as_posix() for p in (root / "images").glob("*.png"))[:images]
    pick = rng.integers(0, len(names), rows)
    label = np.where(pick % 2 == 1, "red", "blue")
    lengths = rng.integers(4, 11, rows)
    vocab = np.array(WORDS)
    words = rng.integers(0, len(WORDS), (rows, 10))
    texts = [" ".join(vocab[words[i, : lengths[i]]]) for i in range(rows)]
    return pd.DataFrame(
        {
            "image": np.asarray(names, dtype=object)[pick],
            "text": texts,
            "x1": rng.normal(size=rows).round(4) + (label == "red") * 0.5,
            "x2": rng.normal(size=rows).round(4),
            "shop": rng.choice(["north", "south", "east", "west"], rows),
            "label": label,
        }
    )


def run_measured(cmd: list[str], cwd: Path) -> dict:
    """Run ``cmd``; its wall time and peak RSS (MiB) from the kernel's accounting of that one process."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONPATH": str(ROOT / "src")}
    before = loadavg()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.decode(errors='replace')[-3000:]}")
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
        "load_before": before,
        "load_after": loadavg(),
    }


FIT_CHILD = """
import sys, time
from polymodal import Predictor
table, out = sys.argv[1], sys.argv[2]
p = Predictor("label", preset="fast", config={"training": {"max_epochs": 1}}, verbose=False, seed=0)
p.fit(table)
if out != "-":
    p.save(out)
"""


def measure_fit(root: Path, table: Path, rows: int, out: str = "-") -> dict:
    r = run_measured([sys.executable, "-c", FIT_CHILD, str(table), out], root)
    return {"what": "fit (1 epoch, preset fast)", "rows": rows, **r, "rows_per_s": round(rows / r["seconds"], 1)}


def measure_predict(root: Path, run: Path, table: Path, rows: int, chunk_rows: int | None) -> dict:
    out = root / f"preds_{table.suffix[1:]}.csv"
    cmd = [sys.executable, "-m", "polymodal.cli", "predict", str(run), str(table), "--out", str(out), "--quiet"]
    if chunk_rows is not None:
        cmd += ["--chunk-rows", str(chunk_rows)]
    r = run_measured(cmd, root)
    with open(out, "rb") as f:
        written = sum(1 for _ in f) - 1
    if written != rows:
        raise RuntimeError(f"predict wrote {written} rows, expected {rows}")
    out.unlink()
    return {
        "what": f"predict ({table.suffix[1:]} table)",
        "rows": rows,
        **r,
        "rows_per_s": round(rows / r["seconds"], 1),
    }


def report(results: list[dict], args: argparse.Namespace, command: str) -> str:
    lines = [
        "## Scale: peak memory and throughput (issue 20, acceptance 1)",
        "",
        f"`{command}` — {machine()}; {args.images} distinct 32x32 PNGs reused across the rows; each figure from a "
        "fresh process (peak RSS = its `ru_maxrss`).",
        "",
        "| measurement | rows | wall s | rows/s | peak RSS MiB | load avg before → after |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['what']} | {r['rows']:,} | {r['seconds']:.1f} | {r['rows_per_s']:,.0f} | {r['peak_rss_mib']:,.0f} "
            f"| {r['load_before']} → {r['load_after']} |"
        )
    if args.rows_fit != DEFAULT_ROWS_FIT or args.rows_predict != DEFAULT_ROWS_PREDICT:
        lines += [
            "",
            f"Reduced sizes: the acceptance sizes are the defaults (fit at {DEFAULT_ROWS_FIT} rows, predict at "
            f"{DEFAULT_ROWS_PREDICT:,} rows); run `benchmarks/scale.py` without options for them.",
        ]
    predicts = [r for r in results if r["what"].startswith("predict")]
    if predicts:
        lines += [
            "",
            "Predict reads, decodes and writes one chunk at a time (`--chunk-rows`, default 8,192): its peak RSS does "
            "not grow with the table (compare runs at two sizes).",
        ]
    fits = [r for r in results if r["what"].startswith("fit")]
    if len(fits) >= 2:
        lo, hi = fits[0], fits[-1]
        lines += [
            "",
            f"Peak RSS of fit from {lo['rows']:,} to {hi['rows']:,} rows: "
            f"{hi['peak_rss_mib'] / lo['peak_rss_mib']:.2f}x (acceptance: at most 1.3x).",
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows-fit", default=DEFAULT_ROWS_FIT, help="comma-separated table sizes for the fit epoch")
    ap.add_argument("--rows-predict", type=int, default=DEFAULT_ROWS_PREDICT, help="rows of the predicted table")
    ap.add_argument("--images", type=int, default=300, help="distinct image files")
    ap.add_argument("--chunk-rows", type=int, default=None, help="polymodal predict --chunk-rows (default: its own)")
    ap.add_argument(
        "--formats",
        default="csv,parquet",
        choices=["csv,parquet", "csv", "parquet"],
        help="table formats of the predict measurement (one per predict run)",
    )
    ap.add_argument("--skip-fit", action="store_true", help="measure predict only")
    ap.add_argument("--work", type=Path, default=None, help="folder for the generated data (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite the docs/BENCHMARKS.md section")
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: rewrite the docs section from --out (pass the sizes it was run with)",
    )
    args = ap.parse_args()
    if args.report_only:
        payload = json.loads(args.out.read_text(encoding="utf-8"))
        write_section(ROOT / "docs" / "BENCHMARKS.md", SECTION, report(payload["results"], args, payload["command"]))
        return
    command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale.py " + " ".join(sys.argv[1:])

    work = args.work or Path(tempfile.mkdtemp(prefix="polymodal-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    make_images(work / "images", args.images, seed=0)
    results: list[dict] = []
    if not args.skip_fit:
        for rows in [int(v) for v in args.rows_fit.split(",") if v]:
            table = work / f"fit_{rows}.csv"
            make_table(work, rows, args.images, seed=rows).to_csv(table, index=False)
            results.append(measure_fit(work, table, rows))
            print(json.dumps(results[-1]), flush=True)
    # the predicting model: one epoch on 2,000 rows
    train = work / "train_2000.csv"
    make_table(work, 2000, args.images, seed=1).to_csv(train, index=False)
    run = work / "run"
    if not run.exists():
        measure_fit(work, train, 2000, str(run))
    frame = make_table(work, args.rows_predict, args.images, seed=2)
    tables = []
    for fmt in [f for f in args.formats.split(",") if f]:
        tables.append(work / f"predict.{fmt}")
        getattr(frame, f"to_{fmt}")(tables[-1], index=False)
    del frame
    for table in tables:
        results.append(measure_predict(work, run, table, args.rows_predict, args.chunk_rows))
        print(json.dumps(results[-1]), flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": command, "machine": machine(), "images": args.images, "results": results}
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    body = report(results, args, command)
    print(body)
    if not args.no_docs:
        write_section(ROOT / "docs" / "BENCHMARKS.md", SECTION, body)


if __name__ == "__main__":
    main()
