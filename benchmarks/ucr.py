"""Issue 21, acceptance 2: polymodal's defaults on real UCR time-series data sets, next to published baselines.

    .venv/bin/python benchmarks/ucr.py                      # GunPoint, ItalyPowerDemand, ArrowHead
    .venv/bin/python benchmarks/ucr.py --datasets GunPoint  # one of them

The data sets ship inside the ``aeon`` wheel (``aeon/datasets/data/<Name>/<Name>_TRAIN.ts`` and ``_TEST.ts``). The
script fetches the wheel with ``pip download --no-deps aeon`` into a cache folder (``--wheel-dir``; or give
``--wheel`` a wheel you already have) and reads the ``.ts`` files straight out of the zip: aeon is never imported
or installed, and is no dependency of polymodal. Each series becomes a ``.npy`` file (steps x 1), so the table is
``series,label``, fitted with ``Predictor("label")`` and polymodal's defaults on the archive's own train/test split.

Next to it:
- the archive's published 1-NN DTW accuracy (full warping window, and the learned window) and 1-NN Euclidean
  accuracy: the UCR Time Series Classification Archive (2018), DataSummary table, https://www.cs.ucr.edu/~eamonn/
  time_series_data_2018/ (Dau et al., "The UCR Time Series Archive", IEEE/CAA J. Autom. Sinica 6(6), 2019);
- ROCKET's published accuracy (mean of 10 runs on the same split): Dempster, Petitjean and Webb, "ROCKET:
  exceptionally fast and accurate time series classification using random convolutional kernels", Data Mining
  and Knowledge Discovery 34(5), 2020; values from https://github.com/angus924/rocket, results/results_ucr.csv;
- 1-NN DTW (full window) and 1-NN Euclidean recomputed here on the extracted data, which checks both the
  extraction and the published numbers.

Acceptance: polymodal's defaults >= the published 1-NN DTW (full window) on each data set.
Writes benchmarks/results/ucr.json and the docs/BENCHMARKS.md section between the ucr markers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _report import machine, write_section

from polymodal import Predictor

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("GunPoint", "ItalyPowerDemand", "ArrowHead")
# Published test accuracies (1 - error rate). UCR 2018 DataSummary: ED (w=0), DTW (learned w), DTW (w=100);
# ROCKET: results/results_ucr.csv of angus924/rocket (mean of 10 runs).
PUBLISHED: dict[str, dict[str, float]] = {
    "GunPoint": {"ed": 1 - 0.0867, "dtw_learned": 1 - 0.0867, "dtw_full": 1 - 0.0933, "rocket": 1.0},
    "ItalyPowerDemand": {"ed": 1 - 0.0447, "dtw_learned": 1 - 0.0447, "dtw_full": 1 - 0.0496, "rocket": 0.9696},
    "ArrowHead": {"ed": 1 - 0.2000, "dtw_learned": 1 - 0.2000, "dtw_full": 1 - 0.2971, "rocket": 0.8143},
}


def aeon_wheel(wheel_dir: Path) -> Path:
    """The aeon wheel in ``wheel_dir``, fetched with pip (no dependencies, nothing installed) when absent."""
    found = sorted(wheel_dir.glob("aeon-*.whl"))
    if not found:
        wheel_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "aeon", "-d", str(wheel_dir)],
            check=True,
        )
        found = sorted(wheel_dir.glob("aeon-*.whl"))
    if not found:
        raise SystemExit(f"no aeon wheel in {wheel_dir} after pip download")
    return found[-1]


def parse_ts(text: str) -> tuple[list[np.ndarray], list[str]]:
    """The series (steps x channels, float32; '?' = NaN) and class labels of a sktime/aeon ``.ts`` file."""
    series, labels = [], []
    in_data = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower() == "@data"
            continue
        *dims, label = line.split(":")
        channels = [np.array([np.nan if v == "?" else float(v) for v in d.split(",")], np.float32) for d in dims]
        series.append(np.stack(channels, axis=1))
        labels.append(label.strip())
    if not in_data or not series:
        raise ValueError("no @data section with rows in the .ts text")
    return series, labels


def read_split(wheel: Path, name: str, split: str) -> tuple[list[np.ndarray], list[str]]:
    with zipfile.ZipFile(wheel) as z:
        text = z.read(f"aeon/datasets/data/{name}/{name}_{split}.ts").decode("utf-8")
    return parse_ts(text)


def write_table(out: Path, series: list[np.ndarray], labels: list[str], split: str) -> Path:
    """Each series as ``<split>/<i>.npy``; the table ``<split>.csv`` (series, label) next to them."""
    (out / split).mkdir(parents=True, exist_ok=True)
    paths = []
    for i, s in enumerate(series):
        rel = f"{split}/{i:05d}.npy"
        np.save(out / rel, s, allow_pickle=False)
        paths.append(rel)
    table = out / f"{split}.csv"
    # class labels as text ("c1", ...): numeric labels would make the task look like a regression
    pd.DataFrame({"series": paths, "label": [f"c{v}" for v in labels]}).to_csv(table, index=False)
    return table


def _dtw_matrix(test: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Full-window DTW distances (squared pointwise cost) of every test series to every training series.

    Vectorised over the (test, train) pairs; the recurrence runs over the two time axes."""
    n, m = test.shape[1], train.shape[1]
    prev = np.full((len(test), len(train), m), np.inf)
    for i in range(n):
        cur = np.empty_like(prev)
        row_cost = (test[:, None, i, None] - train[None, :, :]) ** 2  # (n_test, n_train, m)
        for j in range(m):
            if i == 0 and j == 0:
                best: np.ndarray | float = 0.0
            elif i == 0:
                best = cur[..., j - 1]
            elif j == 0:
                best = prev[..., 0]
            else:
                best = np.minimum(np.minimum(prev[..., j], cur[..., j - 1]), prev[..., j - 1])
            cur[..., j] = row_cost[..., j] + best
        prev = cur
    return prev[..., -1]


def one_nn(train_x: list[np.ndarray], train_y: list[str], test_x: list[np.ndarray], test_y: list[str]) -> dict:
    """1-NN accuracy with Euclidean and full-window DTW distances (univariate, equal-length series)."""
    a = np.stack([s[:, 0] for s in test_x]).astype(np.float64)
    b = np.stack([s[:, 0] for s in train_x]).astype(np.float64)
    ytr, yte = np.array(train_y), np.array(test_y)
    ed = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    dtw = _dtw_matrix(a, b)
    return {
        "ed": float((ytr[ed.argmin(axis=1)] == yte).mean()),
        "dtw_full": float((ytr[dtw.argmin(axis=1)] == yte).mean()),
    }


def run(wheel: Path, name: str, seed: int, tmp: Path, baselines: bool, config: Path | None) -> dict[str, Any]:
    train_x, train_y = read_split(wheel, name, "TRAIN")
    test_x, test_y = read_split(wheel, name, "TEST")
    out = tmp / name
    train, test = write_table(out, train_x, train_y, "train"), write_table(out, test_x, test_y, "test")
    start = time.perf_counter()
    p = Predictor("label", config=config, seed=seed, verbose=False).fit(train)
    fit_seconds = time.perf_counter() - start
    m = p.evaluate(test)
    r: dict[str, Any] = {
        "dataset": name,
        "train_rows": len(train_x),
        "test_rows": len(test_x),
        "length": int(train_x[0].shape[0]),
        "classes": len(set(train_y)),
        "polymodal": round(float(m["accuracy"]), 4),
        "fit_seconds": round(fit_seconds, 1),
        "epochs": p.fit_result.epochs_run,
        # what the default fit chose on validation (member -> weight; the network alone when nothing beat it)
        "weights": {
            m["member"]: round(float(m["weight"]), 3)
            for m in p.fit_summary().get("members", [])
            if m["member"] != "ensemble" and m.get("weight", 0) > 0
        }
        or {"network": 1.0},
        "published": {k: round(v, 4) for k, v in PUBLISHED[name].items()},
    }
    if baselines:
        start = time.perf_counter()
        r["recomputed"] = {k: round(v, 4) for k, v in one_nn(train_x, train_y, test_x, test_y).items()}
        r["recomputed_seconds"] = round(time.perf_counter() - start, 1)
    r["reaches_1nn_dtw"] = r["polymodal"] >= r["published"]["dtw_full"]
    print(json.dumps(r), flush=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated, among " + ", ".join(DATASETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wheel", type=Path, help="an aeon wheel already downloaded (default: pip download it)")
    ap.add_argument(
        "--wheel-dir", type=Path, default=Path(tempfile.gettempdir()) / "polymodal-ucr", help="where to keep the wheel"
    )
    ap.add_argument(
        "--config",
        type=Path,
        help="a polymodal config file instead of the defaults (reported in its own section, ucr_config)",
    )
    ap.add_argument("--no-baselines", action="store_true", help="skip recomputing 1-NN ED/DTW here")
    ap.add_argument("--no-write", action="store_true", help="print only; do not update the results and the docs")
    a = ap.parse_args()
    names = [n.strip() for n in a.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in PUBLISHED]
    if unknown:
        raise SystemExit(f"unknown data set(s) {unknown}; choose among {', '.join(DATASETS)}")

    wheel = a.wheel or aeon_wheel(a.wheel_dir)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        results = [run(wheel, n, a.seed, Path(tmp), not a.no_baselines, a.config) for n in names]
    load_after = os.getloadavg()

    what = "defaults" if a.config is None else f"with {a.config.name}"
    lines = [
        f"## UCR archive: polymodal {what} vs 1-NN DTW and ROCKET (issue 21)",
        "",
        f"| data set | train / test rows | length | classes | polymodal {what} | 1-NN DTW (full window) | "
        "1-NN DTW (learned window) | 1-NN Euclidean | ROCKET | 1-NN DTW / ED recomputed here | fit time (s) | "
        "members chosen (weight) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        pub, rec = r["published"], r.get("recomputed")
        recomputed = f"{rec['dtw_full']:.3f} / {rec['ed']:.3f}" if rec else "n/a"
        lines.append(
            f"| {r['dataset']} | {r['train_rows']} / {r['test_rows']} | {r['length']} | {r['classes']} | "
            f"**{r['polymodal']:.3f}** | {pub['dtw_full']:.3f} | {pub['dtw_learned']:.3f} | {pub['ed']:.3f} | "
            f"{pub['rocket']:.3f} | {recomputed} | "
            f"{r['fit_seconds']:.0f} | {', '.join(f'{k} {v:.2f}' for k, v in r['weights'].items())} |"
        )
    command = "python benchmarks/ucr.py" + ("" if names == list(DATASETS) else f" --datasets {','.join(names)}")
    if a.config is not None:
        command += f" --config {a.config}"
    verdict = ", ".join(f"{r['dataset']} {'yes' if r['reaches_1nn_dtw'] else 'NO'}" for r in results)
    body = "\n".join(lines) + (
        f"\n\nTest accuracy on each data set's own train/test split; polymodal: `Predictor('label')` with "
        f"{'every default' if a.config is None else f'the config {a.config}'}, seed {a.seed}, the series as `.npy` "
        "files (the `timeseries` kind). Data: the `.ts` files inside "
        f"the `{wheel.name}` wheel (fetched at benchmark time with `pip download --no-deps aeon`; aeon is not a "
        "dependency). Published 1-NN numbers: the UCR Time Series Classification Archive (2018), DataSummary "
        "(https://www.cs.ucr.edu/~eamonn/time_series_data_2018/; Dau et al. 2019). ROCKET: Dempster, Petitjean and "
        "Webb, Data Mining and Knowledge Discovery 34(5), 2020, mean of 10 runs "
        "(https://github.com/angus924/rocket, results/results_ucr.csv). The default fit trains the fused network "
        "and the classical members that apply (for a time-series column: `rocket`, polymodal's own ROCKET) on the "
        "training split less 15% held out for validation, and keeps the greedy selection of them on validation "
        "(last column). The machine was shared with other jobs: fit times are indicative only. "
        f"Reaches 1-NN DTW (full window): {verdict}. Measured by `{command}` on {machine()}; load average "
        f"{load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end (1-minute)."
    )
    print(body)
    if a.no_write:
        return
    section = "ucr" if a.config is None else "ucr_config"
    out = ROOT / "benchmarks" / "results" / f"{section}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": machine(),
        "command": command,
        "config": None if a.config is None else a.config.read_text(encoding="utf-8"),
        "load_average": [round(v, 2) for v in (*load_before, *load_after)],
        "results": results,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    write_section(ROOT / "docs" / "BENCHMARKS.md", section, body)


if __name__ == "__main__":
    main()
