"""Issue 21, acceptance 1: the generated video and sensor tasks need what the new kinds were built for.

    .venv/bin/python benchmarks/new_modalities.py                 # both tasks
    .venv/bin/python benchmarks/new_modalities.py --task sensors  # one of them

video   target ``direction`` of the generated motion clips (polymodal.datasets.video: a disc orbiting the centre
        clockwise or counterclockwise from a uniform start angle, so every single frame, and the set of frames, is
        the same whatever the direction). The default video model (frames in order, each with its difference from
        the previous frame) against the same data seen as one frame (``processing.video_frames: 1``) and as frames
        pooled without order or differences; the last two must sit at chance (0.5) +- 5 points, the first >= 0.95.
        A fourth row (frames in order without the differences) shows what the difference channels bring; it has
        no pass/fail line.
sensors target ``label`` of the generated activities (polymodal.datasets.sensors: cadence only in the accelerometer,
        turning only in the gyroscope): both sensors + placement (defaults) >= 0.95, each sensor alone (with the
        placement column) measurably below (at best 0.5 by construction).

Writes benchmarks/results/new_modalities.json and the table in docs/BENCHMARKS.md between the new_modalities
markers (with the machine, the date and the load average). ``--no-write`` prints only.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import machine, write_section

from polymodal import Predictor
from polymodal.datasets.video import DIRECTIONS, SLIDE_DIRECTIONS

assert len(DIRECTIONS) == len(SLIDE_DIRECTIONS)
CHANCE = 1 / len(DIRECTIONS)  # the directions are drawn uniformly

ROOT = Path(__file__).resolve().parents[1]

# Variants as config overrides on polymodal's defaults: the model the task needs first, then the ones that must fail.
VIDEO_VARIANTS: dict[str, dict[str, Any]] = {
    "frames in order (defaults)": {},
    "one frame (processing.video_frames: 1)": {"processing": {"video_frames": 1}},
    "frames pooled without order (encoders.video: temporal mean, motion none)": {
        "encoders": {"video": {"name": "video_cnn", "temporal": "mean", "motion": "none"}}
    },
    "frames in order without differences (encoders.video.motion: none)": {
        "encoders": {"video": {"name": "video_cnn", "motion": "none"}}
    },
}
#: the video variants that must sit at chance (the first variant must reach 0.95; the others are for information)
VIDEO_AT_CHANCE = (
    "one frame (processing.video_frames: 1)",
    "frames pooled without order (encoders.video: temporal mean, motion none)",
)
HEADINGS = {
    "video": "## Generated video task: the direction of motion needs frames in order (issue 21)",
    "sensors": "## Generated sensor task: accelerometer + gyroscope fused vs each alone (issue 21)",
}
SENSOR_VARIANTS: dict[str, list[str]] = {  # name -> ignored columns
    "accel + gyro + placement (defaults)": [],
    "accel + placement": ["gyro"],
    "gyro + placement": ["accel"],
}


def _fit(train: Path, test: Path, label: str, ignore: list[str], config: dict[str, Any], seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    p = Predictor(label, ignore=ignore or None, config=config or None, seed=seed, verbose=False).fit(train)
    fit_seconds = time.perf_counter() - start
    m = p.evaluate(test)
    return {
        "test_accuracy": round(float(m["accuracy"]), 4),
        "test_rows": int(m["rows"]),
        "fit_seconds": round(fit_seconds, 1),
        "epochs": p.fit_result.epochs_run,
    }


def run_video(tmp: Path, rows: int, seed: int, motion: str = "orbit") -> list[dict[str, Any]]:
    from polymodal.datasets.video import make_video_task

    paths = make_video_task(tmp / "video", n_train=rows, n_test=max(rows // 3, 50), seed=seed, motion=motion)
    results = []
    for name, config in VIDEO_VARIANTS.items():
        r = {"task": "video", "target": "direction", "motion": motion, "model": name, "config": config}
        r |= _fit(paths.train, paths.test, "direction", ["label", "pitch", "audio"], config, seed)
        print(json.dumps(r), flush=True)
        results.append(r)
    return results


def run_sensors(tmp: Path, rows: int, seed: int) -> list[dict[str, Any]]:
    from polymodal.datasets.sensors import make_sensors

    paths = make_sensors(tmp / "sensors", n_train=rows, n_test=max(rows // 3, 50), seed=seed)
    results = []
    for name, ignore in SENSOR_VARIANTS.items():
        r = {"task": "sensors", "target": "label", "model": name, "ignore": ignore}
        r |= _fit(paths.train, paths.test, "label", ignore, {}, seed)
        print(json.dumps(r), flush=True)
        results.append(r)
    return results


def _checks(results: list[dict[str, Any]]) -> list[str]:
    """Acceptance 1 of issue 21, as pass/fail lines."""
    by = {(r["task"], r["model"]): r["test_accuracy"] for r in results}
    lines = []
    video = [r for r in results if r["task"] == "video"]
    if video:
        first, rest = video[0], video[1:]
        lines.append(f"video, frames in order >= 0.95: {'pass' if first['test_accuracy'] >= 0.95 else 'FAIL'}")
        for r in rest:
            if r["model"] not in VIDEO_AT_CHANCE:
                continue
            ok = abs(r["test_accuracy"] - CHANCE) <= 0.05
            lines.append(f"video, {r['model']} at chance {CHANCE:.2f} +- 0.05: {'pass' if ok else 'FAIL'}")
    sensors = [r for r in results if r["task"] == "sensors"]
    if sensors:
        fused = by[("sensors", sensors[0]["model"])]
        lines.append(f"sensors, fused >= 0.95: {'pass' if fused >= 0.95 else 'FAIL'}")
        for r in sensors[1:]:
            # "measurably below": at least 10 points under the fused model
            ok = r["test_accuracy"] <= fused - 0.10
            lines.append(f"sensors, {r['model']} >= 10 points below fused: {'pass' if ok else 'FAIL'}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["video", "sensors", "both"], default="both")
    ap.add_argument("--rows", type=int, default=800, help="training rows per task (test rows: a third, at least 50)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--motion", choices=["orbit", "slide"], default="orbit", help="the video task's motion (datasets.video)"
    )
    ap.add_argument("--no-write", action="store_true", help="print only; do not update the results and the docs")
    a = ap.parse_args()

    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if a.task in ("video", "both"):
            results += run_video(Path(tmp), a.rows, a.seed, a.motion)
        if a.task in ("sensors", "both"):
            results += run_sensors(Path(tmp), a.rows, a.seed)
    load_after = os.getloadavg()
    command = "python benchmarks/new_modalities.py" + ("" if a.task == "both" else f" --task {a.task}")
    if a.rows != 800:
        command += f" --rows {a.rows}"
    if a.motion != "orbit" and a.task != "sensors":
        command += f" --motion {a.motion}"
    load = f"load average {load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end (1-minute)"
    out = ROOT / "benchmarks" / "results" / "new_modalities.json"
    runs = json.loads(out.read_text()) if out.exists() else {}
    for task in ("video", "sensors"):
        task_results = [r for r in results if r["task"] == task]
        if not task_results:
            continue
        lines = [
            HEADINGS[task],
            "",
            "| model | test accuracy | test rows | fit time (s) | epochs |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['model']} | {r['test_accuracy']:.3f} | {r['test_rows']} | {r['fit_seconds']:.0f} | {r['epochs']} |"
            for r in task_results
        ]
        body = "\n".join(lines) + (
            f"\n\nTarget `{task_results[0]['target']}`, {a.rows} training rows, seed {a.seed}, polymodal defaults "
            f"unless the model says otherwise. Measured by `{command}` on {machine()}; {load}.\n\n"
            + "\n".join(f"- {c}" for c in _checks(task_results))
        )
        print(body, flush=True)
        if a.no_write:
            continue
        runs[task] = {
            "machine": machine(),
            "load_average": [round(v, 2) for v in (*load_before, *load_after)],
            "command": command,
            "results": task_results,
        }
        write_section(ROOT / "docs" / "BENCHMARKS.md", f"new_modalities_{task}", body)
    if not a.no_write:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(runs, indent=2) + "\n")


if __name__ == "__main__":
    main()
