"""Where an AV-digits training epoch goes: decode, collate (image / audio, with and without augmentation), forward,
backward, optimizer step, validation, best-state copy, and Lightning's overhead over the same work.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/epoch_profile.py --rows 3000           # about 2-4 minutes

The rows are the first --rows of the AV-digits training split (85/15 split as ``fit`` does); the network, batch
size, optimizer and schedule are the defaults that ``Predictor.fit`` resolves for that table. One plain epoch is
timed stage by stage (each collate is also timed again without augmentation, so its augmentation share shows),
then one epoch of ``fitting.train`` (Lightning) on the same rows. Writes benchmarks/results/epoch_profile.json
and the epoch_profile section of docs/BENCHMARKS.md (``--no-write``: print only). ``--label`` names the run in the
table, so that runs of two source trees (PYTHONPATH) can be put side by side with ``--append``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _avdigits import IGNORE, LABEL, ROOT, ensure_data
from _report import machine, write_section

import polymodal.fitting as fitting
from polymodal.config import PolymodalConfig
from polymodal.data.dataset import Collator, make_loader, prepare
from polymodal.data.processors import LoadContext, build_processors
from polymodal.data.readers import read_table
from polymodal.model import build_model
from polymodal.schema import infer_schema
from polymodal.tasks import build_task
from polymodal.training.callbacks import BestState
from polymodal.training.module import param_groups

SECTION = "epoch_profile"


def setup(train: pd.DataFrame, root: Path, seed: int):
    cfg = PolymodalConfig.from_any({"ignore": IGNORE, "data_root": str(root), "training": {"seed": seed}})
    table = read_table(train, cfg.data_root)
    frame = table.frame
    schema = infer_schema(frame, LABEL, cfg.columns, cfg.ignore)
    task = build_task("multiclass", cfg.task)
    task.fit_target(frame[LABEL])
    y = task.encode_target(frame[LABEL])
    tr_pos, va_pos = fitting.split_rows(len(frame), cfg.training.validation_fraction, seed, y)
    ctx = LoadContext(table.root, cfg.limits)
    modalities, processors = build_processors(schema, cfg)
    for proc in processors.values():
        proc.fit(frame.iloc[tr_pos], ctx)
    t = time.perf_counter()
    prepared = prepare(frame, processors, ctx, targets=y, progress=False)
    decode_s = time.perf_counter() - t
    fitting.resolve_training(cfg.training, len(tr_pos))
    torch.manual_seed(seed)
    model = build_model(cfg, modalities, processors, task)
    return cfg, task, processors, prepared.subset(tr_pos), prepared.subset(va_pos), frame, va_pos, decode_s, model


def _autocast(precision: str):
    on = precision.startswith("bf16")
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=on)


def _layout(model, precision: str):
    """channels-last as ``fit_model`` does when the code has it (training.speed); nothing for a baseline tree."""
    try:
        from polymodal.training.speed import channels_last
    except ImportError:
        return contextlib.nullcontext()
    return channels_last(model)


def build_model_like(cfg, processors, task, frame):
    """A fresh network for the profiled table (the torch generator seeded by the caller)."""
    schema = infer_schema(frame, LABEL, cfg.columns, cfg.ignore)
    modalities, _ = build_processors(schema, cfg)
    return build_model(cfg, modalities, processors, task)


def plain_epoch(cfg, task, processors, tr, va, model, precision: str = "32-true") -> dict[str, float]:
    """One epoch by hand, every stage timed; each processor's collate timed again with train=False."""
    with _layout(model, precision):
        return _plain_epoch(cfg, task, processors, tr, va, model, precision)


def _plain_epoch(cfg, task, processors, tr, va, model, precision: str) -> dict[str, float]:
    tm: dict[str, float] = defaultdict(float)
    bs = cfg.training.batch_size
    opt = torch.optim.AdamW(param_groups(model, cfg.training.learning_rate, cfg.training.weight_decay))
    train_c = Collator(tr, processors, True, task.target_dtype)
    plain_c = Collator(tr, processors, False, task.target_dtype)
    order = np.random.default_rng(0).permutation(len(tr))
    model.train()
    for s in range(0, len(order) - bs + 1, bs):
        idx = order[s : s + bs].tolist()
        for m, p in processors.items():
            items = [tr.items[m][i] for i in idx]
            t = time.perf_counter()
            p.collate(items, True)
            tm[f"collate {m} (train)"] += time.perf_counter() - t
            t = time.perf_counter()
            p.collate(items, False)
            tm[f"collate {m} (no augmentation)"] += time.perf_counter() - t
        t = time.perf_counter()
        batch = train_c(idx)
        tm["collate all (train)"] += time.perf_counter() - t
        t = time.perf_counter()
        with _autocast(precision):
            loss = model.loss(model.outputs(batch), batch.target, task)
        tm["forward + loss"] += time.perf_counter() - t
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        tm["backward"] += time.perf_counter() - t
        t = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.training.gradient_clip)
        opt.step()
        tm["clip + optimizer step"] += time.perf_counter() - t
    del plain_c
    model.eval()
    loader = make_loader(va, processors, max(bs, 128), False, task.target_dtype)
    with torch.no_grad():
        t = time.perf_counter()
        batches = list(loader)
        tm["validation collate"] = time.perf_counter() - t
        t = time.perf_counter()
        for b in batches:
            with _autocast(precision):
                model.outputs(b)
        tm["validation forward"] = time.perf_counter() - t
    best = BestState("val_accuracy", "max", 1)
    t = time.perf_counter()
    best._snapshot(model)
    tm["best-state copy"] = time.perf_counter() - t
    return dict(tm)


def lightning_epoch(cfg, task, processors, tr, va, frame, va_pos, model, precision: str) -> float:
    training = cfg.training.model_copy()
    training.max_epochs = 1
    training.precision = precision  # type: ignore[assignment]
    val_labels = frame[LABEL].iloc[va_pos].reset_index(drop=True)  # (no row is dropped: on_error=fail)
    t = time.perf_counter()
    fitting.train(model, task, processors, tr, va, val_labels, training, verbose=False)
    return time.perf_counter() - t


def report(runs: list[dict]) -> str:
    stages = [k for k in runs[0]["stages"]]
    head = "| stage | " + " | ".join(f"{r['label']} s" for r in runs) + " |"
    lines = [
        "## Where an AV-digits epoch goes",
        "",
        f"First {runs[0]['rows']:,} AV-digits training rows (85% trained on, 15% validated), default network and "
        f"batch size ({runs[0]['batch_size']}); for each column (a training precision, from the same initial weights) one "
        "epoch timed stage by stage by a plain loop, then one epoch of `fitting.train` (Lightning) on the same rows. Collate rows: each processor's batch collation, timed with "
        "augmentation (train) and again without; the training loop itself collates once (the `collate all` row).",
        "",
        head,
        "|---|" + "---|" * len(runs),
    ]
    for k in stages:
        lines.append(f"| {k} | " + " | ".join(f"{r['stages'].get(k, float('nan')):.2f}" for r in runs) + " |")
    lines.append(
        "| **plain epoch (sum, without the extra collates)** | "
        + " | ".join(f"{r['plain_epoch_s']:.2f}" for r in runs)
        + " |"
    )
    lines.append(
        "| **Lightning epoch (fitting.train, 1 epoch)** | "
        + " | ".join(f"{r['lightning_epoch_s']:.2f}" for r in runs)
        + " |"
    )
    lines.append(
        "| decode (prepare, all rows, once per fit) | " + " | ".join(f"{r['decode_s']:.2f}" for r in runs) + " |"
    )
    lines += [""]
    for r in runs:
        lines.append(
            f"- {r['label']}: `{r['command']}` ({r['source']}), {r['machine']}, load average before/after: {r['loadavg']}."
        )
    lines += ["", f"Results: `benchmarks/results/{SECTION}.json`."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "avdigits", help="AV-digits folder (built if missing)")
    ap.add_argument("--rows", type=int, default=3000, help="training rows profiled (default 3000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label", default="current", help="the column name of this run in the docs table")
    ap.add_argument("--append", action="store_true", help="add this run beside those already in the JSON")
    ap.add_argument(
        "--precisions",
        default="32-true,bf16-mixed",
        help="comma-separated training precisions profiled one after the other, each from the same initial "
        "weights (default 32-true,bf16-mixed; bf16 as autocast, with channels-last weights when the code has them)",
    )
    ap.add_argument("--no-write", action="store_true", help="print only")
    a = ap.parse_args()
    frame = pd.read_csv(ensure_data(a.data.resolve()))
    train = frame[frame["split"] == "train"].head(a.rows).reset_index(drop=True)
    load0 = Path("/proc/loadavg").read_text().split()[:3]
    cfg, task, procs, tr, va, fr, va_pos, decode_s, model = setup(train, a.data.resolve(), a.seed)
    import polymodal

    new_runs = []
    for precision in a.precisions.split(","):
        torch.manual_seed(a.seed)  # the same initial weights for every variant
        model = build_model_like(cfg, procs, task, fr)
        stages = plain_epoch(cfg, task, procs, tr, va, model, precision)
        plain = sum(v for k, v in stages.items() if not k.startswith("collate ") or k == "collate all (train)")
        light = lightning_epoch(cfg, task, procs, tr, va, fr, va_pos, model, precision)
        load1 = Path("/proc/loadavg").read_text().split()[:3]
        new_runs.append(
            {
                "label": f"{a.label} {precision}",
                "rows": a.rows,
                "batch_size": cfg.training.batch_size,
                "precision": precision,
                "source": str(Path(polymodal.__file__).resolve().parents[1]),
                "stages": {k: round(v, 3) for k, v in stages.items()},
                "plain_epoch_s": round(plain, 3),
                "lightning_epoch_s": round(light, 3),
                "decode_s": round(decode_s, 3),
                "loadavg": f"{' '.join(load0)} / {' '.join(load1)}",
                "command": "benchmarks/epoch_profile.py " + " ".join(shlex.quote(x) for x in sys.argv[1:]),
                "machine": machine(),
                "date": date.today().isoformat(),
            }
        )
        load0 = load1
    out = ROOT / "benchmarks" / "results" / f"{SECTION}.json"
    runs = new_runs
    if a.append and out.is_file():
        labels = {r["label"] for r in new_runs}
        runs = [r for r in json.loads(out.read_text())["runs"] if r["label"] not in labels] + new_runs
    text = report(runs)
    print(text)
    if a.no_write:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs}, indent=2) + "\n", encoding="utf-8")
    write_section(ROOT / "docs" / "BENCHMARKS.md", SECTION, text)


if __name__ == "__main__":
    main()
