"""Issue 20, acceptance 5: two identical fits started at once finish in at most 1.15x the time of running them one
after the other (on the 2-core machine), with polymodal's thread defaults, side by side with the old behaviour.

Each fit is a subprocess ``polymodal fit --preset fast`` on a generated image + audio + text + numeric table
(``--rows`` training rows; about 30-60 s alone on 2 cores). For each setting and repeat: the two fits one after the
other (the sum of their wall times), then both at once (the wall time until both are done), and the ratio.

Settings (environment of the fit processes; everything else inherited, with OMP_NUM_THREADS, POLYMODAL_THREADS and
the OpenMP wait-policy variables removed first):

- ``default``: nothing set: polymodal's defaults (threads = the cores this process may use, fewer while other
  processes are busy: polymodal.cpu_share; libgomp's own spin-then-sleep)
- ``passive``: the defaults of the first issue-20 version: idle OpenMP threads sleep at once
  (POLYMODAL_OPENMP_PASSIVE=1), a fixed thread count (POLYMODAL_SHARE_CORES=0)
- ``old``: what polymodal did before issue 20: libgomp's own spin-then-sleep (GOMP_SPINCOUNT=300000, its default
  when OMP_WAIT_POLICY is unset, set explicitly) and threads = every core of the machine

``--explain`` also times ``polymodal explain`` of 4 rows alone and while one fit runs, per setting.

    .venv/bin/python benchmarks/concurrent_fits.py [--rows 600] [--repeats 2] [--explain] [--write-docs]

Writes benchmarks/results/concurrent_fits.json and prints a markdown table (with the load average before each run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

CLEARED = (
    "OMP_NUM_THREADS",
    "POLYMODAL_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "MKL_NUM_THREADS",
    "POLYMODAL_OPENMP_PASSIVE",
    "POLYMODAL_SHARE_CORES",
)
SETTINGS = {
    "default": {},
    "passive": {"POLYMODAL_OPENMP_PASSIVE": "1", "POLYMODAL_SHARE_CORES": "0"},
    "old": {"GOMP_SPINCOUNT": "300000", "POLYMODAL_THREADS": str(os.cpu_count() or 1)},
}


def env_for(setting: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(SETTINGS[setting])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    return env


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from polymodal.cli import app; app()", *args]


def fit_cmd(data: Path, out: Path) -> list[str]:
    return cli("fit", str(data / "train.csv"), "--label", "label", "--out", str(out), "--preset", "fast", "-q")


def run_together(cmds: list[list[str]], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds until every command is done (all started at once) and the CPU seconds they used."""
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in cmds]
    for p in procs:
        _, stderr = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a command failed ({p.returncode}): {' '.join(p.args)}\n{stderr.decode()[-3000:]}")
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)


def one_repeat(setting: str, data: Path, work: Path) -> dict[str, float | str]:
    env = env_for(setting)
    row: dict[str, float | str] = {"setting": setting, "load_before": loadavg()}
    a, b = work / f"{setting}-a", work / f"{setting}-b"
    wall_a, cpu_a = run_together([fit_cmd(data, a)], env)
    wall_b, cpu_b = run_together([fit_cmd(data, b)], env)
    row.update(one_after_other_s=wall_a + wall_b, one_after_other_cpu_s=cpu_a + cpu_b, alone_s=min(wall_a, wall_b))
    for d in (a, b):
        shutil.rmtree(d, ignore_errors=True)
    wall, cpu = run_together([fit_cmd(data, a), fit_cmd(data, b)], env)
    row.update(at_once_s=wall, at_once_cpu_s=cpu)
    row["ratio"] = wall / float(row["one_after_other_s"])
    for d in (a, b):
        shutil.rmtree(d, ignore_errors=True)
    return row


def explain_times(setting: str, data: Path, run: Path, work: Path) -> dict[str, float | str]:
    env = env_for(setting)
    cmd = cli("explain", str(run), str(data / "test.csv"), "--rows", "4", "--no-importance", "--out", str(work / "x"))
    cmd += ["-q"]
    alone, _ = run_together([cmd], env)
    busy = work / f"{setting}-busy"
    fit = subprocess.Popen(fit_cmd(data, busy), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(20)  # the fit is training by now (table decoded)
        during, _ = run_together([cmd], env)
    finally:
        fit.kill()
        fit.wait()
    shutil.rmtree(busy, ignore_errors=True)
    return {"setting": setting, "explain_alone_s": alone, "explain_during_fit_s": during, "load": loadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=600, help="training rows of the generated table")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--explain", action="store_true", help="also time explain of 4 rows alone / during a fit")
    ap.add_argument("--write-docs", action="store_true", help="rewrite the section in docs/BENCHMARKS.md")
    ap.add_argument(
        "--render",
        type=Path,
        help="only render the table from the JSON lines this script printed (a run stopped before its end)",
    )
    args = ap.parse_args()

    from _report import machine, write_section

    from polymodal.datasets.synthetic import make_demo

    rows: list[dict[str, float | str]] = []
    explains: list[dict[str, float | str]] = []
    if args.render:
        for line in args.render.read_text().splitlines():
            if line.startswith("{"):
                item = json.loads(line)
                (explains if "explain_alone_s" in item else rows).append(item)
        args.settings = [s for s in SETTINGS if any(r["setting"] == s for r in rows)]
    if not args.render:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            data = work / "data"
            make_demo(data, n_train=args.rows, n_test=200, seed=0)
            for r in range(args.repeats):  # settings interleaved: slow drifts of the machine's load hit both alike
                for setting in args.settings:
                    row = one_repeat(setting, data, work)
                    row["repeat"] = r
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            if args.explain:
                run = work / "explained"
                subprocess.run(fit_cmd(data, run), env=env_for("default"), check=True, stdout=subprocess.DEVNULL)
                for setting in args.settings:
                    explains.append(explain_times(setting, data, run, work))
                    print(json.dumps(explains[-1]), flush=True)

    repeats = max([int(r["repeat"]) for r in rows], default=-1) + 1
    lines = [
        "## Two fits at once: thread defaults vs spinning OpenMP threads (issue 20, acceptance 5)",
        "",
        f"Machine: {machine()}; `os.sched_getaffinity`: {len(os.sched_getaffinity(0))} cores.",
        f"Two `polymodal fit --preset fast` subprocesses on a generated {args.rows}-row image + audio + text + "
        f"numeric table; {repeats} repeat(s), settings interleaved. Settings: see the script's docstring "
        "(`default`: polymodal's defaults, sharing the cores; `passive`: sleeping OpenMP threads, a fixed count; "
        "`old`: libgomp's spin-then-sleep and every core, as before issue 20).",
        "",
        "| setting | alone (min) s | one after the other s (min / median) | both at once s (min / median) "
        "| ratio (min / median) | CPU s of both fits: one after the other / at once (median) | load avg before |",
        "|---|---|---|---|---|---|---|",
    ]
    for setting in args.settings:
        mine = [r for r in rows if r["setting"] == setting]

        def stat(key: str, mine: list[dict[str, float | str]] = mine) -> tuple[float, float]:
            values = [float(r[key]) for r in mine]
            return min(values), statistics.median(values)

        seq, both, ratio = stat("one_after_other_s"), stat("at_once_s"), stat("ratio")
        cpu_seq, cpu_both = stat("one_after_other_cpu_s")[1], stat("at_once_cpu_s")[1]
        lines.append(
            f"| {setting} | {stat('alone_s')[0]:.1f} | {seq[0]:.1f} / {seq[1]:.1f} | {both[0]:.1f} / {both[1]:.1f} "
            f"| {ratio[0]:.2f} / {ratio[1]:.2f} | {cpu_seq:.0f} / {cpu_both:.0f} | {', '.join(str(r['load_before']) for r in mine)} |"
        )
    if explains:
        lines += [
            "",
            "| setting | explain 4 rows alone s | explain 4 rows during a fit s | load avg after |",
            "|---|---|---|---|",
        ]
        for e in explains:
            lines.append(
                f"| {e['setting']} | {float(e['explain_alone_s']):.1f} | {float(e['explain_during_fit_s']):.1f} "
                f"| {e['load']} |"
            )
    table = "\n".join(lines)
    print(table)
    out = ROOT / "benchmarks" / "results" / "concurrent_fits.json"
    out.write_text(json.dumps({"rows": args.rows, "fits": rows, "explain": explains}, indent=2) + "\n")
    if args.write_docs:
        cmd = "`.venv/bin/python benchmarks/concurrent_fits.py " + f"--rows {args.rows} --repeats {args.repeats}"
        cmd += " --explain`" if args.explain else "`"
        body = "\n".join([lines[0], "", f"Command: {cmd}", "", *lines[2:]])
        write_section(ROOT / "docs" / "BENCHMARKS.md", "concurrent-fits", body)


if __name__ == "__main__":
    main()
