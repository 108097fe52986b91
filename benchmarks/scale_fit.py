"""Peak memory of a one-epoch fit as the table grows (issue 20, acceptance 1, fit part).

Generates a synthetic image (32x32 PNG files) + text + tabular table, then runs ``Predictor(preset="fast").fit`` for
one epoch on the first 10,000 and 100,000 rows, each in a fresh process, and reports that process's peak RSS and
rows/s. ``--store memory`` is the old path (every decoded item held in RAM); ``disk`` (the default) is the
on-disk sample store, which starts empty (cold) in each child, so the run includes decoding every file.

    OMP_NUM_THREADS=1 python benchmarks/scale_fit.py --rows 10000 100000 --store disk memory

Acceptance: with the disk store, peak RSS at 100k rows <= 1.3x the peak at 10k rows. ``fit_rss_rows(...)`` is the
function ``benchmarks/scale.py`` (predict part) can import to join both tables.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def make_table(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` rows of image (PNG on disk) + text + three tabular columns; reused when already written."""
    from polymodal.datasets.synthetic import generate_image_text

    path = folder / f"table_{n}.csv"
    if path.is_file():
        return path
    frame = generate_image_text(folder, n, seed=seed)
    rng = np.random.default_rng(seed + 1)
    frame["price"] = rng.normal(50, 10, n).round(2)
    frame["weight"] = rng.gamma(2.0, 1.5, n).round(3)
    frame["region"] = rng.choice(["north", "south", "east", "west"], n)
    frame.to_csv(path, index=False)
    return path


def child(table: Path, store: str, cache: Path, stage: str = "fit") -> dict:
    """One fit in this process (called through a subprocess so that peak RSS is this fit's alone). ``stage``
    "prepare": only the data path (processors fitted on 2,000 rows, then every row decoded by ``prepare``)."""
    os.environ["POLYMODAL_SAMPLE_CACHE"] = "memory" if store == "memory" else str(cache)
    import torch

    from polymodal import Predictor

    torch.set_num_threads(1)
    frame = pd.read_csv(table)
    t0 = time.perf_counter()
    if stage == "prepare":
        from polymodal.config import PolymodalConfig
        from polymodal.data.dataset import prepare
        from polymodal.data.processors import LoadContext, build_processors
        from polymodal.schema import infer_schema

        cfg = PolymodalConfig()
        _, procs = build_processors(infer_schema(frame, "label"), cfg)
        ctx = LoadContext(table.parent.resolve(), cfg.limits)
        for p in procs.values():
            p.fit(frame.head(2000), ctx)
        t0 = time.perf_counter()
        prepared = prepare(frame, procs, ctx, progress=False)
        assert len(prepared) == len(frame)
    else:
        Predictor(
            "label",
            preset="fast",
            config={"training": {"max_epochs": 1}},
            data_root=table.parent,
            seed=0,
            verbose=False,
        ).fit(frame)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "rows": len(frame),
        "store": store,
        "seconds": round(seconds, 1),
        "rows_per_s": round(len(frame) / seconds),
        "peak_rss_mb": round(peak / 2**20),
    }


def fit_rss_rows(folder: Path, rows: list[int], stores: list[str], stage: str = "fit") -> list[dict]:
    """One record per (rows, store): peak RSS, seconds and rows/s of a one-epoch fit, each in a fresh process."""
    big = make_table(folder, max(rows))
    out = []
    for n in rows:
        table = big if n == max(rows) else folder / f"table_{n}.csv"
        if not table.is_file():
            pd.read_csv(big).head(n).to_csv(table, index=False)
        for store in stores:
            with tempfile.TemporaryDirectory(dir=folder) as cache:
                r = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        str(table),
                        "--store",
                        store,
                        "--cache",
                        cache,
                        "--stage",
                        stage,
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
            rec = json.loads(r.stdout.strip().splitlines()[-1])
            print(json.dumps(rec), flush=True)
            out.append(rec)
    return out


def _load() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--store", nargs="+", default=["disk"], choices=["disk", "memory"])
    ap.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "polymodal-scale-fit")
    ap.add_argument("--stage", default="fit", choices=["fit", "prepare"], help="prepare: the data path alone")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.store[0], args.cache, args.stage)))
        return
    args.folder.mkdir(parents=True, exist_ok=True)
    print(
        f"load average: {Path('/proc/loadavg').read_text().split()[:3]}; {time.strftime('%Y-%m-%d %H:%M')}", flush=True
    )
    records = fit_rss_rows(args.folder, sorted(args.rows), args.store, args.stage)
    for store in args.store:
        mine = [r for r in records if r["store"] == store]
        if len(mine) >= 2:
            ratio = mine[-1]["peak_rss_mb"] / mine[0]["peak_rss_mb"]
            print(f"{store}: peak RSS {mine[0]['rows']} -> {mine[-1]['rows']} rows: x{ratio:.2f} (acceptance <= 1.3)")
    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
