"""AV-digits with every default: today's polymodal against a baseline commit's, side by side in one run.

    .venv/bin/python benchmarks/avdigits_speed.py                         # full data: about 30 minutes on 2 cores
    .venv/bin/python benchmarks/avdigits_speed.py --train-rows 2000 --test-rows 1000   # smoke run, a few minutes

Each fit is ``Predictor(label="label", ignore=["id", "split"]).fit(train)`` with every default, then ``evaluate``
on the test rows, in a fresh subprocess: the baseline with PYTHONPATH at the baseline's ``src`` (by default the
commit below, extracted with ``git archive`` into benchmarks/results/.baseline-<commit>/, no worktree needed), the
current one with this checkout's ``src``. The runs alternate (baseline, current, then current, baseline, ...) so
that a machine's load hits both alike; the load average is recorded around every run. Reports test accuracy and
fit time of each, and the current/baseline fit-time ratio on the min and the median.

``--env POLYMODAL_CPU_BF16=1`` runs the current code with bf16-mixed training on a CPU with native bfloat16
(opt-in: see polymodal/training/speed.py), to decide whether it can become the default.

Acceptance 6 of issue 20: current test accuracy >= 0.990 and fit time <= 40% of the baseline's.
Writes benchmarks/results/avdigits_speed.json and the avdigits_speed section of docs/BENCHMARKS.md (not for a
subset of the rows unless --write).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tarfile
import time
from datetime import date
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _avdigits import IGNORE, LABEL, ROOT, ensure_data

SECTION = "avdigits_speed"
#: main before issue 20's faster defaults (1,257 s for 0.9905 on 2 cores in the avdigits_concat section)
BASELINE_COMMIT = "61ffa483257e6c7b88997f8f5e437fb5349abd7c"
TARGET_ACCURACY, TARGET_RATIO = 0.990, 0.40


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def worker(data: Path, train_rows: int | None, test_rows: int | None, seed: int) -> dict:
    """One default fit + evaluation in this process (whichever polymodal PYTHONPATH gives)."""
    import pandas as pd

    import polymodal
    from polymodal import Predictor

    frame = pd.read_csv(data / "manifest.csv")
    train = frame[frame["split"] == "train"].reset_index(drop=True)
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    if train_rows:
        train = train.head(train_rows)
    if test_rows:
        test = test.head(test_rows)
    start = time.perf_counter()
    p = Predictor(LABEL, ignore=IGNORE, data_root=data, seed=seed, verbose=False).fit(train)
    fit_s = time.perf_counter() - start
    m = p.evaluate(test, data_root=data)
    r = p.fit_result
    # the precision Lightning ran with: recorded by the current code; the baseline predates the automatic choice
    precision = getattr(r, "precision", None) or p.config.training.precision or "32-true"
    return {
        "source": str(Path(polymodal.__file__).resolve().parents[1]),
        "test_accuracy": round(float(m["accuracy"]), 4),
        "fit_seconds": round(fit_s, 1),
        "epochs_run": len(r.history),
        "max_epochs": p.config.training.max_epochs,
        "best_epoch": r.best_epoch + 1,
        "batch_size": p.config.training.batch_size,
        "precision": precision,
        "epoch_seconds": [round(h["seconds"], 1) for h in r.history],
    }


def baseline_src(commit: str) -> Path:
    """The baseline commit's ``src`` folder, extracted once with ``git archive`` (read-only use)."""
    dest = ROOT / "benchmarks" / "results" / f".baseline-{commit[:12]}"
    if not (dest / "src" / "polymodal").is_dir():
        blob = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "src"], check=True, capture_output=True)
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=BytesIO(blob.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        tmp.replace(dest)
    return dest / "src"


def run_one(src: Path, a: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--data", str(a.data), "--seed", str(a.seed)]
    if a.train_rows:
        cmd += ["--train-rows", str(a.train_rows)]
    if a.test_rows:
        cmd += ["--test-rows", str(a.test_rows)]
    env = {**os.environ, "PYTHONPATH": str(src)}
    if src != (ROOT / "src").resolve():  # --env applies to the current code only; the baseline runs as it was
        for key in dict(kv.split("=", 1) for kv in a.env):
            env.pop(key, None)
    else:
        env.update(dict(kv.split("=", 1) for kv in a.env))
    before = _loadavg()
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["loadavg_before_after"] = f"{before} / {_loadavg()}"
    return res


def summarise(runs: dict[str, list[dict]]) -> dict:
    out: dict = {}
    for who, rs in runs.items():
        secs = [r["fit_seconds"] for r in rs]
        out[who] = {
            "fit_seconds_min": min(secs),
            "fit_seconds_median": round(statistics.median(secs), 1),
            "test_accuracy": [r["test_accuracy"] for r in rs],
        }
    for stat in ("min", "median"):
        out[f"ratio_{stat}"] = round(out["current"][f"fit_seconds_{stat}"] / out["baseline"][f"fit_seconds_{stat}"], 3)
    return out


def report(res: dict) -> str:
    s = res["summary"]
    cur, base = s["current"], s["baseline"]
    ok = min(cur["test_accuracy"]) >= TARGET_ACCURACY and s["ratio_median"] <= TARGET_RATIO
    lines = [
        "## AV-digits defaults: speed against the baseline",
        "",
        f"{res['train_rows']:,} training rows, {res['test_rows']:,} test rows; every default "
        '(`Predictor(label="label", ignore=["id", "split"]).fit(train)`), each fit in its own subprocess, '
        f"baseline = commit `{res['baseline_commit'][:12]}` (before issue 20's faster defaults), runs alternating"
        + (f"; current runs with {', '.join(res['env'])}" if res.get("env") else "")
        + ". "
        f"Measured by `{res['command']}` on {res['machine']}.",
        "",
        "| run | code | test accuracy | fit s | epochs run / max | best epoch | batch | precision | load avg before / after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(res["runs"]):
        lines.append(
            f"| {i + 1} | {r['who']} | {r['test_accuracy']:.4f} | {r['fit_seconds']:.0f} | {r['epochs_run']} / "
            f"{r['max_epochs']} | {r['best_epoch']} | {r['batch_size']} | {r['precision']} | "
            f"{r['loadavg_before_after']} |"
        )
    lines += [
        "",
        f"Fit time current / baseline: **{s['ratio_median']:.3f}** (median), {s['ratio_min']:.3f} (min); "
        f"baseline median {base['fit_seconds_median']:.0f} s, current median {cur['fit_seconds_median']:.0f} s.",
        "",
        f"Acceptance 6 (test accuracy >= {TARGET_ACCURACY}, fit time <= {TARGET_RATIO:.0%} of the baseline's): "
        + ("**met**." if ok else "**not met** on this run."),
        "",
        f"Results: `benchmarks/results/{SECTION}.json` ({res['date']}).",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "avdigits", help="AV-digits folder (built if missing)")
    ap.add_argument("--baseline-src", type=Path, default=None, help="the baseline's src folder (default: extracted)")
    ap.add_argument("--baseline-commit", default=BASELINE_COMMIT, help="commit extracted when --baseline-src is unset")
    ap.add_argument("--repeats", type=int, default=1, help="fits of each code (default 1)")
    ap.add_argument("--train-rows", type=int, default=None, help="first N training rows only (smoke run)")
    ap.add_argument("--test-rows", type=int, default=None, help="first N test rows only (smoke run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for the current code's fits only, e.g. POLYMODAL_CPU_BF16=1 (repeatable)",
    )
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--write", action="store_true", help="write the JSON and docs even for a subset of the rows")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.data = a.data.resolve()
    bad = [kv for kv in a.env if "=" not in kv]
    if bad:
        ap.error(f"--env takes KEY=VALUE, got {bad[0]!r}")
    if a.worker:
        print(json.dumps(worker(a.data, a.train_rows, a.test_rows, a.seed)), flush=True)
        return
    ensure_data(a.data)
    from _report import machine, write_section

    base = (a.baseline_src or baseline_src(a.baseline_commit)).resolve()
    cur = (ROOT / "src").resolve()
    runs: dict[str, list[dict]] = {"baseline": [], "current": []}
    ordered: list[dict] = []
    for i in range(a.repeats):
        for who in ("baseline", "current") if i % 2 == 0 else ("current", "baseline"):
            print(f"repeat {i + 1}/{a.repeats}: {who} ...", flush=True)
            r = run_one(base if who == "baseline" else cur, a)
            r["who"] = who
            runs[who].append(r)
            ordered.append(r)
            print(
                f"  {who}: test accuracy {r['test_accuracy']:.4f}, fit {r['fit_seconds']:.0f} s, "
                f"{r['epochs_run']} epochs, {r['precision']}, load {r['loadavg_before_after']}",
                flush=True,
            )
    import pandas as pd

    frame = pd.read_csv(a.data / "manifest.csv")
    n_train = int((frame["split"] == "train").sum())
    n_test = int((frame["split"] == "test").sum())
    argv = " ".join(shlex.quote(x) for x in sys.argv[1:])
    res = {
        "command": f".venv/bin/python benchmarks/avdigits_speed.py{' ' + argv if argv else ''}",
        "machine": machine(),
        "date": date.today().isoformat(),
        "baseline_commit": a.baseline_commit if a.baseline_src is None else f"(src at {base})",
        "train_rows": min(a.train_rows or n_train, n_train),
        "test_rows": min(a.test_rows or n_test, n_test),
        "env": a.env,
        "runs": ordered,
        "summary": summarise(runs),
    }
    text = report(res)
    print(text)
    subset = bool(a.train_rows or a.test_rows)
    if a.no_write or (subset and not a.write):
        return
    out = ROOT / "benchmarks" / "results" / f"{SECTION}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    write_section(ROOT / "docs" / "BENCHMARKS.md", SECTION, text)
    print(f"wrote {out.relative_to(ROOT)} and docs/BENCHMARKS.md")


if __name__ == "__main__":
    main()
