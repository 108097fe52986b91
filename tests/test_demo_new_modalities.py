"""`polymodal demo --task sensors` and `--task video`: the real command with tiny models (issue 21).

The tiny 40-row models are near chance, so these check the wiring (the generated columns reach the right kinds,
the run is saved and evaluates); benchmarks/new_modalities.py measures the real accuracies."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from polymodal import Predictor


def _kinds(run) -> dict[str, str]:
    schema = json.loads((run / "schema.json").read_text(encoding="utf-8"))
    return {c["name"]: c["kind"] for c in schema["columns"]}


def test_demo_sensors_tiny(cli, tmp_path, tiny_config_file):
    out = tmp_path / "demo"
    r = cli("demo", "--task", "sensors", "--out", out, "--rows", "40", "--config", tiny_config_file, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert "sensors demo: test metrics" in r.stdout and "accuracy" in r.stdout
    run = out / "run"
    kinds = _kinds(run)
    assert kinds["accel"] == kinds["gyro"] == "timeseries", kinds
    assert kinds["placement"] == "category", kinds
    test = out / "data" / "test.csv"
    metrics = Predictor.load(run, verbose=False).evaluate(test)
    assert metrics["rows"] == len(pd.read_csv(test)) == 30


def test_demo_video_tiny(cli, tmp_path, tiny_config_file):
    pytest.importorskip("av")
    out = tmp_path / "demo"
    r = cli("demo", "--task", "video", "--out", out, "--rows", "24", "--config", tiny_config_file, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert "video demo: test metrics" in r.stdout
    kinds = _kinds(out / "run")
    assert kinds["video"] == "video" and kinds["audio"] == "audio", kinds
    # the label's parts are left out of the inputs
    assert kinds["direction"] == kinds["pitch"] == "ignore", kinds
    proba = Predictor.load(out / "run", verbose=False).predict_proba(out / "data" / "test.csv")
    assert len(proba) == 30 and proba.to_numpy().sum(axis=1) == pytest.approx(1.0, abs=1e-4)


def test_demo_unknown_task_lists_the_new_ones(cli, tmp_path):
    r = cli("demo", "--task", "radar", "--out", tmp_path / "d")
    assert r.exit_code == 2
    assert "sensors" in r.stderr and "video" in r.stderr
