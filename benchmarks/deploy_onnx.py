"""AV-digits deployment benchmark: eager PyTorch vs ONNX Runtime fp32 vs int8 (dynamic and static), side by side in
one run, and test accuracy vs pruning sparsity.

    .venv/bin/python benchmarks/deploy_onnx.py            # ~10 minutes on 2 CPU cores (+ training, see below)

Model: benchmarks/results/avdigits_compare/runs/fusion-concat-seed0 (the AV-digits comparison's concat model, 5
epochs on the 20,000 training rows) when it exists; otherwise one trained here with a short protocol: polymodal
defaults (image_cnn + audio_cnn, concat), max_epochs 2, on --train-rows training rows (seed 0), kept in
benchmarks/results/deploy/run. The report says which.

Accuracy: every backend on the same --test-rows test rows (default: all 10,000), decoded once.
Speed: the model only (decoding and collating are the same Python code for every backend), on pre-collated test
batches of 64 rows and of 1 row; the backends are timed in turn within each of --repeats rounds; the figure is
milliseconds per row, min and median over the rounds, and the speed ratio is eager's median over the backend's.
Threads: each of --threads (default 1 and 2: this machine has 2 cores) for both PyTorch and ONNX Runtime.
Static int8 is calibrated on 256 training rows.

Writes benchmarks/results/deploy_onnx.json and the deploy_onnx section of docs/BENCHMARKS.md and docs/DEPLOYMENT.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _avdigits import IGNORE, LABEL, ROOT, ensure_data
from _report import machine, write_section

from polymodal import Predictor
from polymodal.data.dataset import make_loader, prepare
from polymodal.data.processors import LoadContext
from polymodal.export.export import ExportConfig, export_run, table_batches
from polymodal.export.onnx_graph import session, to_onnx
from polymodal.export.prune import apply_pruning, make_permanent, sparsity
from polymodal.export.quantize import quantize
from polymodal.fitting import fine_tune

COMPARE_RUN = ROOT / "benchmarks" / "results" / "avdigits_compare" / "runs" / "fusion-concat-seed0"
OUT = ROOT / "benchmarks" / "results" / "deploy"


def get_model(data: Path, train_rows: int) -> tuple[Path, str]:
    copy = OUT / "compare-concat-seed0"  # a private copy: the comparison benchmark may rewrite its results folder
    if (COMPARE_RUN / "model.safetensors").is_file():
        shutil.copytree(COMPARE_RUN, copy, dirs_exist_ok=True)
    if (copy / "model.safetensors").is_file():
        return copy, (
            "the AV-digits comparison's concat model (benchmarks/avdigits_compare.py: 5 epochs on "
            "all 20,000 training rows, seed 0)"
        )
    run = OUT / "run"
    protocol = (
        f"a short-protocol concat model trained here: polymodal defaults, max_epochs 2, on {train_rows:,} "
        f"training rows (random, seed 0)"
    )
    if not (run / "model.safetensors").is_file():
        train = pd.read_csv(data / "train.csv")
        train = train.sample(min(train_rows, len(train)), random_state=0)
        start = time.perf_counter()
        p = Predictor(
            LABEL, config={"ignore": IGNORE, "training": {"max_epochs": 2}}, data_root=data, seed=0, verbose=False
        ).fit(train)
        p.save(run, overwrite=True)
        print(f"trained the short-protocol model in {time.perf_counter() - start:.0f} s", flush=True)
    return run, protocol


def time_backend(run_fn, batches, n_rows: int) -> float:
    start = time.perf_counter()
    for b in batches:
        run_fn(b)
    return (time.perf_counter() - start) * 1000 / n_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "avdigits")
    ap.add_argument("--train-rows", type=int, default=4000)
    ap.add_argument("--test-rows", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--fine-tune-rows", type=int, default=4000, help="training rows of the pruning fine-tune (0: none)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(max(a.threads))
    ensure_data(a.data)
    load_before = [round(x, 2) for x in os.getloadavg()]  # other processes sharing the cores skew the timings
    run, protocol = get_model(a.data, a.train_rows)
    p = Predictor.load(run, verbose=False)
    model, procs, task = p.model.eval(), p.processors, p.task

    # --- graphs -----------------------------------------------------------------------------------------
    fp32, sig = to_onnx(model, procs)
    calib = [sig.feed(b) for b in table_batches(p, a.data / "train.csv", 256, a.data)]
    graphs = {
        "onnx fp32": fp32,
        "onnx int8 dynamic": quantize(fp32, "dynamic"),
        "onnx int8 static": quantize(fp32, "static", calib),
    }
    sessions = {t: {k: session(v, t) for k, v in graphs.items()} for t in a.threads}

    def ort_run(name, threads):
        sess = sessions[threads][name]
        names = {i.name for i in sess.get_inputs()}
        return lambda b: sess.run([sig.output], {k: v for k, v in sig.feed(b).items() if k in names})[0]

    def eager(b):
        with torch.inference_mode():
            return model(b.inputs, b.masks).numpy()

    def backends_for(threads):
        return {"eager (torch)": eager, **{k: ort_run(k, threads) for k in graphs}}

    backends = backends_for(max(a.threads))

    # --- accuracy on the test rows ----------------------------------------------------------------------
    test = pd.read_csv(a.data / "test.csv").head(a.test_rows)
    start = time.perf_counter()
    prepared = prepare(test, procs, LoadContext(a.data, p.config.limits), progress=False)
    print(f"decoded {len(prepared)} test rows in {time.perf_counter() - start:.0f} s", flush=True)
    labels = test[LABEL].iloc[prepared.rows].reset_index(drop=True)
    batches64 = list(make_loader(prepared, procs, 64, False))
    results: dict[str, dict] = {}
    for name, fn in backends.items():
        outs = np.concatenate([fn(b) for b in batches64])
        results[name] = {"accuracy": round(float(task.metrics(labels, outs)["accuracy"]), 4)}
        print(name, results[name], flush=True)

    # --- speed, interleaved -----------------------------------------------------------------------------
    speed_sets = {64: batches64[:8], 1: list(make_loader(prepared.subset(range(64)), procs, 1, False))}
    for threads in a.threads:
        torch.set_num_threads(threads)
        fns = backends_for(threads)
        for bs, bl in speed_sets.items():
            n = sum(len(b) for b in bl)
            for fn in fns.values():  # warm-up (allocations, ORT's first-run planning)
                fn(bl[0])
            times: dict[str, list[float]] = {k: [] for k in fns}
            for _ in range(a.repeats):
                for name, fn in fns.items():
                    times[name].append(time_backend(fn, bl, n))
            for name in fns:
                results[name][f"t{threads}_b{bs}"] = {
                    "min": round(min(times[name]), 4),
                    "median": round(statistics.median(times[name]), 4),
                }
    torch.set_num_threads(max(a.threads))
    base = results["eager (torch)"]
    for r in results.values():
        for threads in a.threads:
            for bs in speed_sets:
                k = f"t{threads}_b{bs}"
                r[k]["speedup"] = round(base[k]["median"] / r[k]["median"], 2)
        r["accuracy_delta_points"] = round(100 * (r["accuracy"] - base["accuracy"]), 2)

    # --- pruning: accuracy vs sparsity, without and with a short fine-tune -----------------------------------
    def accuracy(m) -> float:
        m.eval()
        with torch.inference_mode():
            outs = np.concatenate([m(b.inputs, b.masks).numpy() for b in batches64])
        return round(float(task.metrics(labels, outs)["accuracy"]), 4)

    tune = pd.read_csv(a.data / "train.csv").sample(a.fine_tune_rows, random_state=1) if a.fine_tune_rows else None
    pruning = []
    for amount in (0.0, 0.3, 0.5, 0.7, 0.9):
        m = copy.deepcopy(model)
        apply_pruning(m, amount)
        make_permanent(m)
        row = {"amount": amount, "sparsity": round(sparsity(m), 3), "accuracy": accuracy(m)}
        if amount >= 0.5 and tune is not None:
            q = Predictor.load(run, verbose=False)
            apply_pruning(q.model, amount)
            fine_tune(q.pipeline, tune, 1, a.data)
            make_permanent(q.model)
            row["accuracy_fine_tuned"] = accuracy(q.model)
        pruning.append(row)
        print(pruning[-1], flush=True)

    # --- the export command's own parity figure on real rows -------------------------------------------------
    export = export_run(
        run,
        OUT / "export",
        ExportConfig(quantize="int8", calibration_rows=256),
        data=a.data / "train.csv",
        data_root=a.data,
        overwrite=True,
    )
    parity = {k: v.max_abs_diff for k, v in export.parity.items()}

    OUT.mkdir(parents=True, exist_ok=True)
    record = {
        "machine": machine(),
        "model": protocol,
        "run": str(run.relative_to(ROOT)),
        "test_rows": len(prepared),
        "threads": a.threads,
        "repeats": a.repeats,
        "fine_tune_rows": a.fine_tune_rows,
        "loadavg_at_start": load_before,
        "backends": results,
        "pruning": pruning,
        "export_parity_max_abs_diff": parity,
        "graph_bytes": {k: len(v) for k, v in graphs.items()},
    }
    (ROOT / "benchmarks" / "results" / "deploy_onnx.json").write_text(json.dumps(record, indent=2) + "\n")
    body = report(record)
    print(body)
    if not a.no_write:
        write_section(ROOT / "docs" / "BENCHMARKS.md", "deploy_onnx", body)
        write_section(ROOT / "docs" / "DEPLOYMENT.md", "deploy_onnx", body, title="# Deployment\n")


def report(r: dict) -> str:
    lines = [
        "## Deployment: ONNX Runtime fp32 and int8 vs eager PyTorch (AV-digits)",
        "",
        f"{r['test_rows']:,} test rows; model: {r['model']}.",
        "",
        "| backend | test accuracy | Δ vs eager (points) | graph size |",
        "|---|---|---|---|",
    ]
    for name, b in r["backends"].items():
        size = r["graph_bytes"].get(name)
        lines.append(
            f"| {name} | {b['accuracy']:.4f} | {b['accuracy_delta_points']:+.2f} | "
            f"{'' if size is None else f'{size / 1e6:.2f} MB'} |"
        )
    keys = sorted(
        {k for b in r["backends"].values() for k in b if k.startswith("t")},
        key=lambda k: (int(k[1:].split("_")[0]), -int(k.split("_b")[1])),
    )
    lines += [
        "",
        "Model time per row in ms (median over rounds; min in brackets) and speed-up over eager:",
        "",
        "| backend | " + " | ".join(f"{k.split('_')[0][1:]} thread(s), batch {k.split('_b')[1]}" for k in keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for name, b in r["backends"].items():
        lines.append(
            f"| {name} | "
            + " | ".join(f"{b[k]['median']:.2f} ({b[k]['min']:.2f}) **{b[k]['speedup']:.2f}×**" for k in keys)
            + " |"
        )
    lines += [
        "",
        f"Pruning (magnitude, each linear/conv layer, `polymodal prune --amount A`); fine-tuned: 1 epoch at a "
        f"tenth of the learning rate on {r.get('fine_tune_rows', 0):,} training rows "
        f"(`--fine-tune TABLE --epochs 1`):",
        "",
        "| amount | sparsity | test accuracy | after fine-tuning |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {x['amount']:.1f} | {x['sparsity']:.3f} | {x['accuracy']:.4f} | "
        + (f"{x['accuracy_fine_tuned']:.4f} |" if "accuracy_fine_tuned" in x else " |")
        for x in r["pruning"]
    ]
    par = ", ".join(f"{k} {v:.1e}" for k, v in r["export_parity_max_abs_diff"].items())
    lines += [
        "",
        f"`polymodal export --quantize int8 --calibration train.csv` parity (max abs diff of the outputs vs "
        f"eager, 256 real rows): {par}.",
        "",
        f"Speed: the model's forward pass only (same threads for PyTorch and ONNX Runtime), backends "
        f"timed in turn in each of {r['repeats']} rounds, speed-up = eager median / backend median; load average "
        f"when the run started {r['loadavg_at_start']} (other jobs on the 2 cores). Measured by "
        f"`python benchmarks/deploy_onnx.py` on {r['machine']}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
