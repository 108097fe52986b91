"""Where the time of the AV-digits model goes under ONNX Runtime, fp32 vs static int8: a per-operator profile.

    .venv/bin/python benchmarks/int8_profile.py    # 3 minutes on 2 cores, 12 at load average 8 (+ 30 s training)
    .venv/bin/python benchmarks/int8_profile.py --report-only    # rewrite the docs section from the saved JSON

Model: the same as benchmarks/deploy_onnx.py's short protocol (polymodal defaults, image_cnn + audio_cnn, concat, 2
epochs on 4,000 training rows, seed 0; benchmarks/results/deploy/run, trained here when missing), or --run RUN.

Graphs: the fp32 export; static int8 with the recipe deploy_onnx.py timed (2.34x: Conv/MatMul/Gemm quantized, the
rest float) and with this version's default; the gated int8 graphs ``polymodal export --quantize int8`` writes (round 1
of the gate: the boundary layers float32) for both; and recipe variants (--variants, see ``VARIANTS``), all
calibrated on the same 256 training rows.

Profile: ``SessionOptions.enable_profiling`` over --profile-runs runs of one batch of --batch rows per thread count;
each node's fastest run is kept (a shared machine's other jobs only ever add time), then summed by operator type, by
group (float Conv, QLinearConv, ConvInteger, MatMulInteger, Quantize/Dequantize, layout Transposes, ...) and by
node, and the float32 nodes left in the int8 graph (the gate's float islands) are listed with their time. ORT runs
the graph after its own optimisations (Conv+BN+ReLU fusion, QDQ -> QLinearConv, NCHWc / NHWC layouts), so the
operator names are those of the optimised graph.

Speed: eager PyTorch and every graph timed in turn in each of --repeats rounds on the same pre-collated batches,
ms per row, min and median; speed-up = eager median / graph median. Accuracy: every graph vs eager on --test-rows
test rows (accuracy and agreement of the predicted class). The machine is shared: read ratios, not absolute times.

Writes benchmarks/results/int8_profile.json and the int8_profile section of docs/DEPLOYMENT.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _avdigits import LABEL, ROOT, ensure_data
from _report import machine, write_section
from deploy_onnx import get_model

from polymodal import Predictor
from polymodal.data.dataset import make_loader, prepare
from polymodal.data.processors import LoadContext
from polymodal.export.export import table_batches
from polymodal.export.int8_gate import agreement, boundary_layers
from polymodal.export.quantize import DEFAULT_STATIC, StaticRecipe, quantize

JSON = ROOT / "benchmarks" / "results" / "int8_profile.json"
# The recipe deploy_onnx.py measured at 2.34x (before this profile): QDQ, Conv/MatMul/Gemm only, per-channel,
# 7-bit weights; residual Adds, ReLUs and pools stay float between a DequantizeLinear and a QuantizeLinear.
BEFORE = StaticRecipe()
VARIANTS: dict[str, StaticRecipe] = {
    "before (QDQ, Conv/MatMul/Gemm, 7-bit)": BEFORE,
    "8-bit weights (reduce_range off)": StaticRecipe(reduce_range=False),
    "QOperator format": StaticRecipe(quant_format="qoperator"),
    "per-tensor weights": StaticRecipe(per_channel=False),
    "default (this version: + conv-stack Adds/ReLUs quantized)": DEFAULT_STATIC,
}

GROUPS = {  # operator type -> group of the time-share table
    "Conv": "float Conv",
    "FusedConv": "float Conv",
    "NchwcConv": "float Conv",
    "QLinearConv": "QLinearConv (int8 conv)",
    "ConvInteger": "ConvInteger",
    "MatMulInteger": "MatMulInteger",
    "DynamicQuantizeMatMul": "MatMulInteger",
    "MatMulIntegerToFloat": "MatMulInteger",
    "QGemm": "QGemm / QLinearMatMul (int8 dense)",
    "QLinearMatMul": "QGemm / QLinearMatMul (int8 dense)",
    "Gemm": "float Gemm / MatMul",
    "MatMul": "float Gemm / MatMul",
    "FusedMatMul": "float Gemm / MatMul",
    "FusedGemm": "float Gemm / MatMul",
    "QuantizeLinear": "QuantizeLinear",
    "DynamicQuantizeLinear": "QuantizeLinear",
    "DequantizeLinear": "DequantizeLinear",
    "Transpose": "layout (Transpose / Reorder)",
    "ReorderInput": "layout (Transpose / Reorder)",
    "ReorderOutput": "layout (Transpose / Reorder)",
    "QLinearAdd": "int8 elementwise / pool",
    "QLinearMul": "int8 elementwise / pool",
    "QLinearGlobalAveragePool": "int8 elementwise / pool",
    "QLinearConcat": "int8 elementwise / pool",
    "QLinearLeakyRelu": "int8 elementwise / pool",
    "Add": "float elementwise (Add, Relu, Mul, ...)",
    "Relu": "float elementwise (Add, Relu, Mul, ...)",
    "Mul": "float elementwise (Add, Relu, Mul, ...)",
    "Div": "float elementwise (Add, Relu, Mul, ...)",
    "Erf": "float elementwise (Add, Relu, Mul, ...)",
    "Gelu": "float elementwise (Add, Relu, Mul, ...)",
    "Where": "float elementwise (Add, Relu, Mul, ...)",
    "ReduceMean": "pooling (ReduceMean / ReduceMax / MaxPool)",
    "ReduceMax": "pooling (ReduceMean / ReduceMax / MaxPool)",
    "MaxPool": "pooling (ReduceMean / ReduceMax / MaxPool)",
    "GlobalAveragePool": "pooling (ReduceMean / ReduceMax / MaxPool)",
}
FLOAT_HEAVY = {"Conv", "FusedConv", "NchwcConv", "Gemm", "MatMul", "FusedMatMul", "FusedGemm"}


def ort_session(model: bytes, threads: int, profile_prefix: str | None = None) -> Any:
    """A session configured as polymodal's (onnx_graph.session: no spinning), optionally profiling."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def profile(model: bytes, feed: dict[str, np.ndarray], output: str, threads: int, runs: int) -> dict[str, Any]:
    """Node time (microseconds per run of ``feed``: each node's minimum over ``runs`` runs after a warm-up, its cost
    when no other job took the core, as a shared machine's medians are not) by node, with each node's operator
    type."""
    with tempfile.TemporaryDirectory(prefix="polymodal-prof-") as tmp:
        sess = ort_session(model, threads, str(Path(tmp) / "ort"))
        names = {i.name for i in sess.get_inputs()}
        f = {k: v for k, v in feed.items() if k in names}
        for _ in range(runs + 1):  # the first run (allocations, planning) is dropped below
            sess.run([output], f)
        trace = json.loads(Path(sess.end_profiling()).read_text())
    bounds = sorted(
        (e["ts"], e["ts"] + e["dur"]) for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"
    )[1:]
    per_node: dict[str, list[float]] = collections.defaultdict(lambda: [0.0] * len(bounds))
    node_op: dict[str, str] = {}
    for e in trace:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        i = next((j for j, (a, b) in enumerate(bounds) if a <= e["ts"] <= b), None)
        if i is None:
            continue
        node = e["name"][: -len("_kernel_time")]
        per_node[node][i] += e["dur"]
        node_op[node] = e["args"].get("op_name", "?")
    by_node = {n: min(t) for n, t in per_node.items()}
    by_op: collections.Counter[str] = collections.Counter()
    for n, us in by_node.items():
        by_op[node_op[n]] += us
    run_us = min(b - a for a, b in bounds)
    return {"by_op": dict(by_op), "by_node": by_node, "node_op": node_op, "run_us": run_us}


def summarise(prof: dict[str, Any], rows: int) -> dict[str, Any]:
    total = sum(prof["by_op"].values()) or 1
    groups: collections.Counter[str] = collections.Counter()
    for op, us in prof["by_op"].items():
        groups[GROUPS.get(op, "other")] += us
    top = sorted(prof["by_node"].items(), key=lambda kv: -kv[1])[:12]
    islands = [
        {"node": n, "op": prof["node_op"][n], "share": round(us / total, 4)}
        for n, us in sorted(prof["by_node"].items(), key=lambda kv: -kv[1])
        if prof["node_op"][n] in FLOAT_HEAVY
    ]
    return {
        "node_ms_per_row": round(total / 1000 / rows, 4),
        "run_ms_per_row": round(prof["run_us"] / 1000 / rows, 4),  # the fastest whole run: node time + overhead
        "groups": {g: round(us / total, 4) for g, us in groups.most_common()},
        "ops": {o: round(us / total, 4) for o, us in collections.Counter(prof["by_op"]).most_common()},
        "top_nodes": [{"node": n, "op": prof["node_op"][n], "share": round(us / total, 4)} for n, us in top],
        "float_islands": islands,
    }


def vnni() -> bool:
    """Whether this CPU has VNNI (u8 x s8 dot products in one instruction, the fast int8 path of ORT's kernels)."""
    try:
        return "vnni" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def ort_version() -> str:
    import onnxruntime as ort

    return str(ort.__version__)


def time_fn(fn: Callable[[Any], Any], batches: list[Any], rows: int) -> float:
    start = time.perf_counter()
    for b in batches:
        fn(b)
    return (time.perf_counter() - start) * 1000 / rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "avdigits")
    ap.add_argument("--run", type=Path, help="a run directory (default: deploy_onnx.py's short-protocol model)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--profile-runs", type=int, default=15, help="profiled runs of one batch per graph and threads")
    ap.add_argument("--speed-batches", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--test-rows", type=int, default=2000)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help=f"recipes to try: {list(VARIANTS)}")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--report-only", action="store_true", help="rewrite the docs section from the saved JSON")
    a = ap.parse_args()
    if a.report_only:
        write_section(ROOT / "docs" / "DEPLOYMENT.md", "int8_profile", report(json.loads(JSON.read_text())))
        return
    ensure_data(a.data)
    load_before = [round(x, 2) for x in os.getloadavg()]
    run, protocol = (a.run, f"the run {a.run}") if a.run else get_model(a.data, 4000)
    p = Predictor.load(run, verbose=False)
    model, procs, task = p.model.eval(), p.processors, p.task

    from polymodal.export.onnx_graph import to_onnx

    fp32, sig = to_onnx(model, procs)
    calib = [sig.feed(b) for b in table_batches(p, a.data / "train.csv", 256, a.data)]
    graphs: dict[str, bytes] = {"onnx fp32": fp32}
    for name in a.variants:
        graphs[f"int8 {name}"] = quantize(fp32, "static", calib, recipe=VARIANTS[name])
    kept = boundary_layers(fp32)
    for name, recipe in (("before", BEFORE), ("default", DEFAULT_STATIC)):
        graphs[f"int8 {name}, gated (boundary layers float32: what export writes)"] = quantize(
            fp32, "static", calib, exclude=kept, recipe=recipe
        )

    test = pd.read_csv(a.data / "test.csv").head(a.test_rows)
    prepared = prepare(test, procs, LoadContext(a.data, p.config.limits), progress=False)
    labels = test[LABEL].iloc[prepared.rows].reset_index(drop=True)
    batches = list(make_loader(prepared, procs, a.batch, False))

    def eager(b: Any) -> np.ndarray:
        with torch.inference_mode():
            return model(b.inputs, b.masks).numpy()

    def graph_fn(sess: Any) -> Callable[[Any], np.ndarray]:
        names = {i.name for i in sess.get_inputs()}
        return lambda b: sess.run([sig.output], {k: v for k, v in sig.feed(b).items() if k in names})[0]

    # --- accuracy and agreement -------------------------------------------------------------------------
    torch.set_num_threads(max(a.threads))
    ref = np.concatenate([eager(b) for b in batches])
    base_acc = float(task.metrics(labels, ref)["accuracy"])
    results: dict[str, dict[str, Any]] = {"eager (torch)": {"accuracy": round(base_acc, 4)}}
    for name, g in graphs.items():
        out = np.concatenate([graph_fn(ort_session(g, max(a.threads)))(b) for b in batches])
        acc = float(task.metrics(labels, out)["accuracy"])
        results[name] = {
            "accuracy": round(acc, 4),
            "accuracy_delta_points": round(100 * (acc - base_acc), 2),
            "agreement": round(agreement(ref, out, True), 4),
            "bytes": len(g),
        }
        print(name, results[name], flush=True)

    # --- speed, side by side ------------------------------------------------------------------------------
    speed = batches[: a.speed_batches]
    rows = sum(len(b) for b in speed)
    for threads in a.threads:
        torch.set_num_threads(threads)
        fns = {"eager (torch)": eager, **{k: graph_fn(ort_session(g, threads)) for k, g in graphs.items()}}
        for fn in fns.values():
            fn(speed[0])
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(a.repeats):
            for name, fn in fns.items():
                times[name].append(time_fn(fn, speed, rows))
        base = statistics.median(times["eager (torch)"])
        for name, t in times.items():
            med = statistics.median(t)
            results[name][f"t{threads}"] = {
                "min": round(min(t), 4),
                "median": round(med, 4),
                "speedup": round(base / med, 2),
            }
        print(threads, {k: v[f"t{threads}"] for k, v in results.items()}, flush=True)

    # --- per-operator profile -------------------------------------------------------------------------
    feed, prof_rows = sig.feed(batches[0]), len(batches[0])
    profiles: dict[str, dict[str, Any]] = {}
    for threads in a.threads:
        for name, g in graphs.items():
            prof = profile(g, feed, sig.output, threads, a.profile_runs)
            profiles.setdefault(name, {})[f"t{threads}"] = summarise(prof, prof_rows)
    load_after = [round(x, 2) for x in os.getloadavg()]
    record = {
        "machine": machine(),
        "vnni": vnni(),
        "onnxruntime": ort_version(),
        "model": protocol,
        "batch": a.batch,
        "threads": a.threads,
        "repeats": a.repeats,
        "test_rows": len(prepared),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "gate_boundary_layers_float32": kept,
        "recipes": {k: VARIANTS[k].to_dict() for k in a.variants},
        "default_recipe": DEFAULT_STATIC.to_dict(),
        "results": results,
        "profiles": profiles,
    }
    JSON.write_text(json.dumps(record, indent=2) + "\n")
    body = report(record)
    print(body)
    if not a.no_write:
        write_section(ROOT / "docs" / "DEPLOYMENT.md", "int8_profile", body, title="# Deployment\n")


def report(r: dict[str, Any]) -> str:
    t0 = f"t{r['threads'][0]}"
    res, prof = r["results"], r["profiles"]
    fp32, before = "onnx fp32", "int8 before (QDQ, Conv/MatMul/Gemm, 7-bit)"
    after = next((k for k in res if k.startswith("int8 default")), before)
    lines = [
        "## Static int8: where the time goes (per-operator profile)",
        "",
        f"Model: {r['model']}; batch {r['batch']}; {r['test_rows']:,} test rows for accuracy. Speed: eager and every "
        f"graph timed in turn in each of {r['repeats']} rounds, ms per row (median, min in brackets), speed-up = "
        "eager median / graph median. Shared 2-core machine: read the ratios.",
        "",
        "| graph | accuracy (Δ points vs eager) | agreement with eager | "
        + " | ".join(f"{t} thread(s): ms/row, speed-up" for t in r["threads"])
        + " |",
        "|---|---|---|" + "---|" * len(r["threads"]),
    ]
    for name, b in res.items():
        acc = f"{b['accuracy']:.4f}" + (f" ({b['accuracy_delta_points']:+.2f})" if "agreement" in b else "")
        agree = f"{b['agreement']:.2%}" if "agreement" in b else ""
        keys = [f"t{t}" for t in r["threads"]]
        cells = [f"{b[k]['median']:.3f} ({b[k]['min']:.3f}) **{b[k]['speedup']:.2f}×**" for k in keys]
        lines.append(f"| {name} | {acc} | {agree} | " + " | ".join(cells) + " |")
    gated_before = next((k for k in res if k.startswith("int8 before, gated")), None)
    gated_after = next((k for k in res if k.startswith("int8 default, gated")), None)
    shown = {
        n: label
        for n, label in (
            (fp32, "fp32"),
            (before, "int8 before"),
            (after, "int8 default"),
            (gated_before, "int8 before, gated"),
            (gated_after, "int8 default, gated"),
        )
        if n in prof
    }
    groups = {g for n in shown for g in prof[n][t0]["groups"]}
    lines += [
        "",
        f"Share of node time by operator group ({r['threads'][0]} thread, ONNX Runtime's profiler: each node's "
        "fastest of the profiled runs of one batch; operators of the graph after ORT's own optimisations):",
        "",
        "| group | " + " | ".join(shown.values()) + " |",
        "|---|" + "---|" * len(shown),
    ]
    for g in sorted(groups, key=lambda g: -max(prof[n][t0]["groups"].get(g, 0) for n in shown)):
        lines.append(f"| {g} | " + " | ".join(f"{prof[n][t0]['groups'].get(g, 0):.1%}" for n in shown) + " |")
    lines.append("| node time, ms/row | " + " | ".join(f"{prof[n][t0]['node_ms_per_row']:.3f}" for n in shown) + " |")
    runs = " | ".join(f"{prof[n][t0]['run_ms_per_row']:.3f}" for n in shown)
    lines.append(f"| fastest whole run, ms/row | {runs} |")
    if gated_after:
        isl = prof[gated_after][t0]["float_islands"]
        lines += [
            "",
            "Float32 islands of the gated graph (the gate keeps "
            + ", ".join(f"`{k}`" for k in r["gate_boundary_layers_float32"])
            + " float32): "
            + ", ".join(f"`{i['node']}` ({i['op']}, {i['share']:.1%} of node time)" for i in isl)
            + ".",
        ]
    g_after = prof[after][t0]["groups"]
    qdq = lambda n: sum(prof[n][t0]["groups"].get(k, 0) for k in ("QuantizeLinear", "DequantizeLinear"))  # noqa: E731
    conv = g_after.get("QLinearConv (int8 conv)", 0)
    speed = lambda n: res[n][t0]["speedup"]  # noqa: E731
    lines += [
        "",
        "What bounds static int8 here: the int8 convolutions themselves. In the default recipe's graph QLinearConv "
        "(ORT's MLAS kernels, NHWC, u8 activations x s8 weights"
        + (", VNNI on this CPU" if r.get("vnni") else "")
        + f") takes {conv:.0%} of node time; quantize/dequantize fell from {qdq(before):.1%} (before: residual Adds "
        f"and ReLUs ran in float between a DequantizeLinear and a QuantizeLinear) to {qdq(after):.1%}, and what "
        "remains besides is pooling (the audio encoder's ReduceMean over frequencies, in float) and layout "
        f"Transposes. int8 node time is {prof[after][t0]['node_ms_per_row'] / prof[fp32][t0]['node_ms_per_row']:.0%} "
        f"of fp32's. Summed node minima are {prof[after][t0]['node_ms_per_row'] / prof[after][t0]['run_ms_per_row']:.0%} "
        f"of the fastest whole int8 run ({prof[fp32][t0]['node_ms_per_row'] / prof[fp32][t0]['run_ms_per_row']:.0%} "
        f"for fp32): at load average {r['loadavg_before'][0]} on 2 cores every whole run is stretched by other jobs' time "
        "slices, which per-node minima escape; on a quiet machine the two should be close. "
        f"Speed-up over eager, {r['threads'][0]} thread, batch {r['batch']}, this run: before "
        f"{speed(before):.2f}×, default {speed(after):.2f}×"
        + (
            f"; gated (what `polymodal export` writes): before {speed(gated_before):.2f}×, "
            f"default {speed(gated_after):.2f}×"
            if gated_before and gated_after
            else ""
        )
        + ". The 2.34× of the deploy_onnx section (benchmarks/deploy_onnx.py, 2026-11-23: the 20,000-row comparison "
        "model, load average 5.3) is the `before` recipe; side by side here it measures "
        f"{speed(before):.2f}×. Tried and not kept (speed-up over eager in the same run): "
        + ", ".join(f"{k[5:]} {speed(k):.2f}×" for k in res if k.startswith("int8 ") and k not in shown)
        + " (8-bit weights also saturate on CPUs without VNNI: see quantize.py). Saving the "
        "ORT_ENABLE_ALL-optimised graph offline only saves session start-up (and ties the file to this CPU's "
        "layouts), so it is not done. Timings with 2 threads: eager PyTorch's OpenMP threads wait on the cores "
        "other jobs hold far longer than ONNX Runtime's non-spinning ones, so the 2-thread speed-ups here mostly "
        "measure that contention; the 1-thread column is the comparable one.",
    ]
    top = prof[after][t0]["top_nodes"][:8]
    lines += [
        "",
        f"Slowest nodes of `{after}` ({r['threads'][0]} thread): "
        + ", ".join(f"`{x['node']}` {x['op']} {x['share']:.1%}" for x in top)
        + ".",
        "",
        f"Measured by `python benchmarks/int8_profile.py` on {r['machine']}"
        + (f", onnxruntime {r['onnxruntime']}" if "onnxruntime" in r else "")
        + f"; load average {r['loadavg_before']} "
        f"before, {r['loadavg_after']} after (other jobs on the 2 cores).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
