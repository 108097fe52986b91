"""The ``polymodal`` command: info, validate, fit, predict, evaluate (in-process via CliRunner) and --help."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from polymodal import Predictor


def test_console_script_help():
    exe = Path(sys.executable).parent / "polymodal"
    if not exe.exists():
        exe = Path(shutil.which("polymodal") or "")
    assert exe.is_file(), "the polymodal console script is not installed in this environment"
    r = subprocess.run(
        [str(exe), "--help"], capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "120"}
    )
    assert r.returncode == 0, r.stderr
    for command in ("fit", "predict", "evaluate", "validate", "info", "demo"):
        assert command in r.stdout


def test_info(cli, train_csv):
    r = cli("info", train_csv, "--label", "label", "--quiet")
    assert r.exit_code == 0, r.stderr
    out = " ".join(r.stdout.split())
    for needle in (
        "image",
        "audio",
        "text",
        "numeric",
        "category",
        "target (binary)",
        "modalities: image",
        "tabular (tabular: reading, region)",
    ):
        assert needle in out, needle


def test_validate_clean_table(cli, train_csv, tmp_path):
    report = tmp_path / "report.csv"
    r = cli("validate", train_csv, "--label", "label", "--report", report, "--quiet")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "ok" in r.stdout and "80 rows, no problems found" in r.stdout
    assert list(pd.read_csv(report).columns) == ["row", "column", "problem"] and len(pd.read_csv(report)) == 0


def test_validate_reports_every_problem(cli, tiny_data, tmp_path):
    root = tiny_data.parent
    (root / "images" / "t_00002.png").write_bytes(b"not a png at all")
    os.remove(root / "audio" / "t_00004.wav")
    frame = pd.read_csv(tiny_data)
    frame.loc[6, "label"] = None
    frame.to_csv(tiny_data, index=False)
    report = tmp_path / "report.csv"
    r = cli("validate", tiny_data, "--label", "label", "--report", report, "--quiet")
    assert r.exit_code == 2
    issues = pd.read_csv(report)
    assert [(int(a), b) for a, b in zip(issues["row"], issues["column"])] == [(2, "image"), (4, "audio"), (6, "label")]
    assert "3 problems in 3 of 40 rows" in r.stdout


def test_fit_predict_evaluate(cli, tiny_data, tiny_config_file, tmp_path):
    run = tmp_path / "run"
    r = cli("fit", tiny_data, "--label", "label", "--out", run, "--config", tiny_config_file, "--seed", "1", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert "saved to" in r.stdout and "best epoch 1 of 1" in " ".join(r.stdout.split())
    assert (run / "model.safetensors").is_file()

    # refuses to overwrite without --overwrite
    r = cli("fit", tiny_data, "--label", "label", "--out", run, "--config", tiny_config_file, "--quiet")
    assert r.exit_code == 2 and "already exists" in r.stderr

    out = tmp_path / "preds.csv"
    r = cli("predict", run, tiny_data, "--out", out, "--proba", "--quiet")
    assert r.exit_code == 0, r.stderr
    preds = pd.read_csv(out)
    assert list(preds.columns) == ["row", "prediction", "proba_no", "proba_yes"]
    assert preds["row"].tolist() == list(range(40))
    assert set(preds["prediction"]) <= {"no", "yes"}
    assert (preds[["proba_no", "proba_yes"]].sum(axis=1) - 1).abs().max() < 1e-6
    expected = Predictor.load(run, verbose=False).predict(tiny_data)
    assert preds["prediction"].tolist() == expected.tolist()
    assert not list(tmp_path.glob(".preds.csv.*"))

    r = cli("predict", run, tiny_data, "--quiet")  # to stdout
    assert r.exit_code == 0 and r.stdout.splitlines()[0] == "row,prediction"
    assert len(r.stdout.splitlines()) == 41

    r = cli("evaluate", run, tiny_data, "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    metrics = json.loads(r.stdout)
    assert {"accuracy", "f1_macro", "log_loss", "roc_auc", "rows"} <= set(metrics)
    # the CLI prints the library's numbers: the accuracy of the run's own predictions on the table
    truth = pd.read_csv(tiny_data)["label"]
    assert metrics["rows"] == 40
    assert metrics["accuracy"] == pytest.approx(float((expected.to_numpy() == truth.to_numpy()).mean()))

    r = cli("evaluate", run, tiny_data, "--quiet")
    assert r.exit_code == 0 and "accuracy" in r.stdout


def test_fit_with_on_error_skip_reports_and_succeeds(cli, tiny_data, tiny_config_file, tmp_path):
    (tiny_data.parent / "images" / "t_00003.png").write_bytes(os.urandom(64))
    run = tmp_path / "run"
    r = cli(
        "fit",
        tiny_data,
        "--label",
        "label",
        "--out",
        run,
        "--config",
        tiny_config_file,
        "--on-error",
        "skip",
        "--quiet",
    )
    assert r.exit_code == 0, r.stderr
    assert "skipped" in r.stderr and "row 3" in r.stderr and "image" in r.stderr
    assert (run / "model.safetensors").is_file()


def test_unknown_command_and_bad_option(cli, tiny_data, run_dir):
    from typer.testing import CliRunner

    from polymodal.cli import app

    r = CliRunner().invoke(app, ["nope"])
    assert r.exit_code == 2
    r = cli("predict", run_dir, tiny_data, "--on-error", "explode", "--quiet")
    assert r.exit_code == 2 and "explode" in r.stderr
