"""AV-digits with polymodal's defaults and concat fusion: test accuracy, fit time, and training-loop overhead.

    .venv/bin/python benchmarks/avdigits_concat.py                 # ~30-45 minutes on 2 unloaded CPU cores

The published figures were measured in two runs (the second keeps the first's part of the JSON):

    .venv/bin/python benchmarks/avdigits_concat.py --skip-overhead --progress
    .venv/bin/python benchmarks/avdigits_concat.py --skip-accuracy --overhead-epochs 2 --repeats 2 --overhead-rows 5000

AV-digits (../shared/data/avdigits, built into --data if missing) pairs a degraded MNIST digit with a noisy spoken
digit of the same class; 20,000 training rows, 10,000 test rows. Two parts:

  accuracy  Predictor(label="label", ignore=["id", "split"]).fit(train rows) with every default (concat fusion,
            automatic epochs, early stopping, best-epoch restore), then evaluate on the test rows. Equivalent CLI:
            polymodal fit data/avdigits/train.csv --label label --ignore id,split --out runs/avdigits
  overhead  the same network trained for --overhead-epochs fixed epochs (no early stopping) by Predictor.fit and by
            a plain PyTorch loop over the same prepared data, collate (make_loader), model (build_model), AdamW
            parameter groups, lr schedule, gradient clipping and batch size. Both run the same per-epoch validation
            pass (loss + accuracy on the validation split, best-state copy). The runs alternate, --repeats times
            each, in one process; min and median seconds are reported as polymodal / plain ratios, both for the
            training loop alone and for the whole fit (decoding + processor fitting + training loop).

Writes benchmarks/results/avdigits_concat.json and the avdigits_concat section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shlex
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import lightning as L
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _avdigits import IGNORE, LABEL, LUDWIG, ROOT, ensure_data
from _report import machine, write_section

import polymodal.fitting as fitting
from polymodal import Predictor
from polymodal.config import PolymodalConfig
from polymodal.data.dataset import make_loader, prepare
from polymodal.data.processors import LoadContext, build_processors
from polymodal.data.readers import read_table
from polymodal.model import build_model
from polymodal.schema import infer_schema
from polymodal.tasks import build_task

SECTION = "avdigits_concat"
TARGET = LUDWIG


# ------------------------------------------------------------------------------------------------------- accuracy
def _print_epochs() -> None:
    """Print one line per finished epoch (polymodal's History callback keeps the rows; this only echoes them)."""
    from polymodal.training import callbacks

    inner = callbacks.History.on_train_epoch_end
    if getattr(inner, "_echo", False):
        return

    def echo(self, trainer, pl_module):
        inner(self, trainer, pl_module)
        r = self.rows[-1]
        print(
            f"    epoch {r['epoch'] + 1}: {r['seconds']:.0f} s, train_loss {r.get('train_loss', float('nan')):.4f}, "
            f"val_loss {r.get('val_loss', float('nan')):.4f}, val_accuracy {r.get('val_accuracy', float('nan')):.4f}",
            flush=True,
        )

    echo._echo = True
    callbacks.History.on_train_epoch_end = echo


def run_accuracy(
    train: pd.DataFrame,
    test: pd.DataFrame,
    root: Path,
    seed: int,
    config: dict | None,
    verbose: bool = False,
    time_limit: float | None = None,
) -> dict:
    _print_epochs()
    start = time.perf_counter()
    p = Predictor(
        LABEL, ignore=IGNORE, data_root=root, seed=seed, config=config, time_limit=time_limit, verbose=verbose
    ).fit(train)
    fit_s = time.perf_counter() - start
    m = p.evaluate(test, data_root=root)
    r = p.fit_result
    history = [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()} for row in r.history]
    return {
        "test_accuracy": round(m["accuracy"], 4),
        "test_rows": int(m["rows"]),
        "fit_seconds": round(fit_s, 1),
        "train_loop_seconds": round(sum(h["seconds"] for h in r.history), 1),
        "epochs_run": len(r.history),
        "max_epochs": p.config.training.max_epochs,
        "best_epoch": r.best_epoch + 1,
        "stopped_early": r.stopped_early,
        "time_limit": time_limit,
        "val_accuracy": round(r.validation.get("val_accuracy", float("nan")), 4),
        "batch_size": p.config.training.batch_size,
        "resolved_config": p.config.to_dict(),
        "history": history,
    }


# ------------------------------------------------------------------------------------------------------- overhead
def polymodal_fixed(train: pd.DataFrame, root: Path, epochs: int, seed: int) -> dict:
    """Predictor.fit for a fixed number of epochs; the training loop itself is timed by wrapping fit_model."""
    loop = {}
    inner = fitting.fit_model

    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            loop["s"] = time.perf_counter() - t

    cfg = {"training": {"max_epochs": epochs, "patience": 10_000}}
    fitting.fit_model = timed
    try:
        start = time.perf_counter()
        p = Predictor(LABEL, ignore=IGNORE, data_root=root, seed=seed, config=cfg, verbose=False).fit(train)
        total = time.perf_counter() - start
    finally:
        fitting.fit_model = inner
    return {
        "total_s": total,
        "loop_s": loop["s"],
        "epochs": len(p.fit_result.history),
        "val_accuracy": p.fit_result.validation.get("val_accuracy"),
    }


def plain_fixed(train: pd.DataFrame, root: Path, epochs: int, seed: int) -> dict:
    """The same preparation as Predictor.fit (polymodal's own functions), then a hand-written PyTorch loop."""
    start = time.perf_counter()
    cfg = PolymodalConfig.from_any(
        {"ignore": IGNORE, "data_root": str(root), "training": {"max_epochs": epochs, "seed": seed}}
    )
    table = read_table(train, cfg.data_root)
    frame = table.frame
    schema = infer_schema(frame, LABEL, cfg.columns, cfg.ignore)
    task = build_task("multiclass", cfg.task)
    task.fit_target(frame[LABEL])
    tr_pos, va_pos = fitting.split_rows(
        len(frame), cfg.training.validation_fraction, seed, task.encode_target(frame[LABEL])
    )
    ctx = LoadContext(table.root, cfg.limits)
    modalities, processors = build_processors(schema, cfg)
    for proc in processors.values():
        proc.fit(frame.iloc[tr_pos], ctx)
    prepared = prepare(frame, processors, ctx, targets=task.encode_target(frame[LABEL]), progress=False)
    tr, va = prepared.subset(tr_pos), prepared.subset(va_pos)  # no rows are dropped (on_error="fail")
    tcfg = cfg.training
    batch_size = fitting.auto_batch_size(len(tr))

    loop_start = time.perf_counter()
    L.seed_everything(seed, workers=True, verbose=False)
    model = build_model(cfg, modalities, processors, task)
    train_loader = make_loader(tr, processors, batch_size, True, task.target_dtype, 0, seed)
    val_loader = make_loader(va, processors, max(batch_size, 128), False, task.target_dtype, 0)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith(".pos") else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tcfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=tcfg.learning_rate,
    )
    total_steps = epochs * len(train_loader)
    warmup = max(1, int(tcfg.warmup_fraction * total_steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / warmup
            if s < warmup
            else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, total_steps - warmup))))
        ),
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    best, best_state = -1.0, None
    for _ in range(epochs):
        model.train()
        for batch in train_loader:
            loss = loss_fn(model(batch.inputs, batch.masks), batch.target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.gradient_clip)
            opt.step()
            sched.step()
        model.eval()
        correct, vloss, n = 0, 0.0, 0
        with torch.no_grad():
            for batch in val_loader:
                out = model(batch.inputs, batch.masks)
                vloss += float(loss_fn(out, batch.target)) * len(batch)
                correct += int((out.argmax(1) == batch.target).sum())
                n += len(batch)
        if correct / n > best:
            best = correct / n
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
    model.load_state_dict(best_state)
    end = time.perf_counter()
    return {"total_s": end - start, "loop_s": end - loop_start, "epochs": epochs, "val_accuracy": best}


def run_overhead(train: pd.DataFrame, root: Path, epochs: int, repeats: int, seed: int) -> dict:
    runs = {"polymodal": [], "plain": []}
    for i in range(repeats):
        order = ["polymodal", "plain"] if i % 2 == 0 else ["plain", "polymodal"]
        for who in order:
            r = (polymodal_fixed if who == "polymodal" else plain_fixed)(train, root, epochs, seed)
            runs[who].append(r)
            print(
                f"  overhead repeat {i + 1}/{repeats} {who:9s}: loop {r['loop_s']:.1f} s, total {r['total_s']:.1f} s,"
                f" val acc {r['val_accuracy']:.4f}",
                flush=True,
            )
    out = {
        "epochs": epochs,
        "repeats": repeats,
        "runs": {k: [{kk: round(vv, 4) for kk, vv in r.items()} for r in v] for k, v in runs.items()},
    }
    for part in ("loop_s", "total_s"):
        for stat, f in (("min", min), ("median", statistics.median)):
            pm, pl = f(r[part] for r in runs["polymodal"]), f(r[part] for r in runs["plain"])
            out[f"{part}_{stat}"] = {"polymodal": round(pm, 1), "plain": round(pl, 1), "ratio": round(pm / pl, 3)}
    return out


# --------------------------------------------------------------------------------------------------------- report
def report(res: dict) -> str:
    lines = [
        "## AV-digits, defaults + concat fusion",
        "",
        f"Data: AV-digits v1 ({res['data']}), {res['train_rows']:,} training rows (15% of them held out for "
        f"validation by `fit`), {res['test_rows']:,} test rows.",
        "",
    ]
    a = res.get("accuracy")
    if a:
        ok = a["test_accuracy"] >= TARGET
        limited = (
            f" except `time_limit={a['time_limit']:.0f}` s (Lightning's `max_time`: training stops at the first "
            f"step past it and that partial epoch is validated; the cosine schedule was planned for "
            f"{a['max_epochs']} epochs)"
            if a.get("time_limit")
            else ""
        )
        secs = [h["seconds"] for h in a["history"]]
        lines += [
            '`Predictor(label="label", ignore=["id", "split"]).fit(train)` with every default' + limited + " "
            f"(CLI: `polymodal fit data/avdigits/train.csv --label label --ignore id,split --out runs/avdigits`). "
            f"Measured by `{a['command']}` on {a['machine']}.",
            "",
            "| model | test accuracy | fit time | epochs run / max | best epoch | validation accuracy |",
            "|---|---|---|---|---|---|",
            f"| polymodal defaults, concat fusion | **{a['test_accuracy']:.4f}** | {a['fit_seconds']:.0f} s "
            f"| {a['epochs_run']} / {a['max_epochs']} | {a['best_epoch']} | {a['val_accuracy']:.4f} |",
            f"| Ludwig 0.11.0 defaults (reference, from the data README) | {TARGET:.3f} | 831 s | 8 | | |",
            "",
            f"Seconds per epoch (training + validation): min {min(secs):.0f}, median {statistics.median(secs):.0f}, "
            f"max {max(secs):.0f}; the validation split is 15% of the training rows, chosen by `fit`.",
            "",
            (
                f"Target (test accuracy >= {TARGET}) **met**. {res.get('note', '')}".rstrip()
                if ok
                else f"Target (test accuracy >= {TARGET}) **not met**: {a['test_accuracy']:.4f}. {res.get('note', '')}".rstrip()
            ),
            "",
        ]
    o = res.get("overhead")
    if o:
        lt, tt = o["loop_s_min"], o["total_s_min"]
        lm, tm = o["loop_s_median"], o["total_s_median"]
        lines += [
            f"Overhead: the same network, {o['epochs']} fixed epochs on the first {o.get('train_rows', res['train_rows']):,} "
            f"training rows (split 85/15 into training/validation as `fit` does) (no early stopping), trained by `Predictor.fit` "
            "and by a plain PyTorch loop over the same prepared data, collate (`make_loader`), model (`build_model`), "
            "AdamW groups, warmup/cosine schedule, gradient clipping and batch size; both run the same per-epoch "
            f"validation pass and keep the best state. Alternating runs in one process, {o['repeats']} each. "
            f"Measured by `{o['command']}` on {o['machine']}.",
            "",
            "| seconds | polymodal min | plain min | ratio (min) | polymodal median | plain median | ratio (median) |",
            "|---|---|---|---|---|---|---|",
            f"| training loop | {lt['polymodal']:.1f} | {lt['plain']:.1f} | {lt['ratio']:.3f} | {lm['polymodal']:.1f} "
            f"| {lm['plain']:.1f} | {lm['ratio']:.3f} |",
            f"| whole fit (decode + processors + loop) | {tt['polymodal']:.1f} | {tt['plain']:.1f} | {tt['ratio']:.3f} "
            f"| {tm['polymodal']:.1f} | {tm['plain']:.1f} | {tm['ratio']:.3f} |",
            "",
        ]
    lines.append(f"Results: `benchmarks/results/{SECTION}.json` ({res['date']}).")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data",
        type=Path,
        default=ROOT / "data" / "avdigits",
        help="AV-digits folder (built there with ../shared/data/avdigits/build.py if missing)",
    )
    ap.add_argument("--repeats", type=int, default=2, help="runs of each trainer in the overhead part (default 2)")
    ap.add_argument("--overhead-epochs", type=int, default=2, help="fixed epochs per overhead run (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-accuracy", action="store_true", help="only the overhead part")
    ap.add_argument("--skip-overhead", action="store_true", help="only the accuracy part")
    ap.add_argument(
        "--limit",
        type=int,
        default=None,
        help="use only the first N training and N test rows (smoke test; implies --no-write)",
    )
    ap.add_argument("--no-write", action="store_true", help="print only; write neither the JSON nor the docs")
    ap.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="seconds of training at most in the accuracy part (default: none, as polymodal's default)",
    )
    ap.add_argument(
        "--overhead-rows",
        type=int,
        default=None,
        help="train the overhead part on the first N training rows only (default: all)",
    )
    ap.add_argument("--progress", action="store_true", help="show polymodal's progress bars in the accuracy part")
    ap.add_argument(
        "--render-only",
        action="store_true",
        help="run nothing; rewrite the docs section from benchmarks/results/avdigits_concat.json",
    )
    ap.add_argument("--note", default="", help="text added after the accuracy verdict in the docs (e.g. why)")
    a = ap.parse_args()

    out = ROOT / "benchmarks" / "results" / f"{SECTION}.json"
    if a.render_only:
        res = json.loads(out.read_text(encoding="utf-8"))
        if a.note:
            res["note"] = a.note
            out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
        (ROOT / "docs").mkdir(exist_ok=True)
        write_section(ROOT / "docs" / "BENCHMARKS.md", SECTION, report(res))
        print(report(res))
        return
    data = a.data.resolve()
    frame = pd.read_csv(ensure_data(data))
    train = frame[frame["split"] == "train"].reset_index(drop=True)
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    if a.limit:
        train, test, a.no_write = train.head(a.limit), test.head(a.limit), True
    torch.set_num_threads(torch.get_num_threads())
    argv = " ".join(shlex.quote(x) for x in sys.argv[1:])
    res = {
        "command": f".venv/bin/python benchmarks/avdigits_concat.py{' ' + argv if argv else ''}",
        "machine": machine(),
        "date": date.today().isoformat(),
        "data": str(data.relative_to(ROOT)) if data.is_relative_to(ROOT) else str(data),
        "train_rows": len(train),
        "test_rows": len(test),
        "target": TARGET,
    }
    if not a.skip_accuracy:
        print("accuracy: Predictor.fit with defaults ...", flush=True)
        res["accuracy"] = run_accuracy(train, test, data, a.seed, None, a.progress, a.time_limit)
        acc = res["accuracy"]
        acc["command"], acc["machine"], acc["date"] = res["command"], res["machine"], res["date"]
        print(
            f"  test accuracy {acc['test_accuracy']:.4f}, fit {acc['fit_seconds']:.0f} s, "
            f"{acc['epochs_run']} epochs (best {acc['best_epoch']})",
            flush=True,
        )
    if not a.skip_overhead:
        print(f"overhead: {a.overhead_epochs} epochs x {a.repeats} repeats, polymodal vs plain PyTorch ...", flush=True)
        sub = train.head(a.overhead_rows) if a.overhead_rows else train
        res["overhead"] = run_overhead(sub, data, a.overhead_epochs, a.repeats, a.seed)
        res["overhead"]["train_rows"] = len(sub)
        o = res["overhead"]
        o["command"], o["machine"], o["date"] = res["command"], res["machine"], res["date"]
        print(
            f"  loop ratio min {o['loop_s_min']['ratio']:.3f}, median {o['loop_s_median']['ratio']:.3f}; "
            f"whole-fit ratio min {o['total_s_min']['ratio']:.3f}",
            flush=True,
        )
    out = ROOT / "benchmarks" / "results" / f"{SECTION}.json"
    if out.is_file() and not a.no_write and (a.skip_accuracy or a.skip_overhead):
        old = json.loads(out.read_text(encoding="utf-8"))  # keep the part that was not re-run
        for part in ("accuracy", "overhead"):
            if part not in res and part in old:
                res[part] = old[part]
    if a.note:
        res["note"] = a.note
    text = report(res)
    print(text)
    if a.no_write:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    docs = ROOT / "docs" / "BENCHMARKS.md"
    docs.parent.mkdir(parents=True, exist_ok=True)
    write_section(docs, SECTION, text)
    print(f"wrote {out.relative_to(ROOT)} and {docs.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
