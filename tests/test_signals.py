"""Stop signals and output paths (issue 19): SIGTERM / SIGINT during a command exit 143 / 130 with one line saying
what was kept and no partial output; an output path that cannot be written exits 2 before any work.

The signal tests run the real command in a subprocess, on a tiny numeric table with many epochs, so that training is
still running when the signal is sent (they wait for the first epoch lines of its log, then signal it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from conftest import study_trials
from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.tuning.study import JOURNAL

REPO_ROOT = Path(__file__).resolve().parents[1]

# a generous bound for slow shared machines: only a hang reaches it
WAIT_S = 180
ENDLESS = {
    "training": {"max_epochs": 100000, "patience": 100000, "batch_size": 16},
    "encoders": {"tabular": {"name": "tabular_mlp", "hidden": 8, "dim": 8}},
    "fusion": {"dim": 8},
}


@pytest.fixture
def endless(tmp_path: Path) -> tuple[Path, Path]:
    """A 60-row numeric table and a config that trains (almost) forever."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    table = tmp_path / "t.csv"
    pd.DataFrame({"x1": x, "x2": rng.normal(size=60), "label": np.where(x > 0, "a", "b")}).to_csv(table, index=False)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(ENDLESS))
    return table, config


def _run_until(args: list[str], cwd: Path, started: str | Callable[[], bool], signum: int) -> tuple[int, str]:
    """Start ``polymodal ARGS``, wait until its log shows ``started`` (or until ``started()``), send ``signum``;
    (exit code, stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT / "src")}
    log = cwd / "stderr.txt"
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "polymodal.cli", *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
        try:
            deadline = time.monotonic() + WAIT_S
            while proc.poll() is None and not (
                started() if callable(started) else started in log.read_text(errors="replace")
            ):
                assert time.monotonic() < deadline, "the command did not start training"
                time.sleep(0.2)
            assert proc.poll() is None, "the command ended before the signal: " + log.read_text(errors="replace")
            proc.send_signal(signum)
            code = proc.wait(WAIT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return code, log.read_text(errors="replace")


def _hidden(folder: Path) -> list[str]:
    """Temp siblings the atomic writes would leave (.NAME.*.tmp / .old)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(
    ("signum", "code", "existing"), [(signal.SIGTERM, 143, False), (signal.SIGINT, 130, True)], ids=["TERM", "INT"]
)
def test_a_stop_signal_during_fit_exits_non_zero_and_writes_nothing(endless, tmp_path, signum, code, existing):
    """Bug 1 (SIGTERM exited 0: Lightning's SystemExit without a code) and the weak point SIGINT (exit 1, no
    message): 143 / 130, one line naming the signal and --out, no temp folder; no run directory, or with
    --overwrite the existing one left as it was."""
    table, config = endless
    args = ["fit", str(table), "-l", "label", "-c", str(config), "--out", "run"]
    if existing:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "keep.txt").write_text("old")
        (tmp_path / "run" / "polymodal.json").write_text("{}")  # --overwrite replaces only a run directory
        args.append("--overwrite")
    rc, stderr = _run_until(args, tmp_path, "epoch 3/", signum)
    name = signal.Signals(signum).name
    assert rc == code, stderr[-3000:]
    said = "run was left as it was" if existing else "nothing was written to run"
    assert stderr.strip().splitlines()[-1] == f"interrupted by {name}: {said}"
    assert "Traceback" not in stderr
    if existing:
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["keep.txt", "polymodal.json"]
    else:
        assert not (tmp_path / "run").exists()
    assert _hidden(tmp_path) == []


def _running_trial(out: Path) -> Callable[[], bool]:
    """Whether a trial of the study in ``out`` is running; the journal is read again only when it has grown."""
    seen = {"size": -1}

    def running() -> bool:
        size = (out / JOURNAL).stat().st_size if (out / JOURNAL).exists() else 0
        if size == seen["size"]:
            return False
        seen["size"] = size
        return any(t.state == optuna.trial.TrialState.RUNNING for t in study_trials(out))

    return running


def test_sigint_during_tune_says_the_study_was_kept(endless, tmp_path):
    """tune writes its study as it goes: the message says where it is and that the same command resumes it; the
    trial the signal stopped is marked failed (stale: not counted), none is left running."""
    table, config = endless
    out = tmp_path / "study"
    rc, stderr = _run_until(
        ["tune", str(table), "-l", "label", "-c", str(config), "--out", "study", "--time-limit", "600", "--no-prune"],
        tmp_path,
        _running_trial(out),
        signal.SIGINT,
    )
    assert rc == 130, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted by SIGINT: the study was kept in study/study.journal"), last
    assert "run the same command again to resume it" in last
    trials = study_trials(out)
    assert trials and not any(t.state == optuna.trial.TrialState.RUNNING for t in trials)
    interrupted = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(interrupted) == 1 and interrupted[0].user_attrs.get("stale") is True
    assert _hidden(tmp_path) == [] and _hidden(tmp_path / "study") == []


@pytest.mark.parametrize(
    "args",
    [
        ["fit", "t.csv", "-l", "label"],
        ["compare", "t.csv", "-l", "label"],
        ["tune", "t.csv", "-l", "label", "--time-limit", "60"],
        ["export", "run"],
        ["prune", "run"],
        ["explain", "run", "t.csv"],
        ["evaluate", "run", "t.csv", "--robustness"],
        ["demo"],
    ],
    ids=lambda a: a[0],
)
def test_an_out_folder_under_a_file_exits_2_before_any_work(tmp_path, monkeypatch, args):
    """--out under a file failed only after training: now every command checks its outputs first (the table and
    run named here do not even exist: the output is checked before they are read)."""
    monkeypatch.chdir(tmp_path)
    Path("existing_file.txt").write_text("x")
    r = CliRunner().invoke(app, [*args, "--out", "existing_file.txt/run"])
    assert r.exit_code == 2, r.output
    assert "existing_file.txt is a file, not a folder" in r.output
    assert Path("existing_file.txt").read_text() == "x"


@pytest.mark.parametrize(
    "args", [["predict", "run", "t.csv"], ["report", "run", "t.csv"], ["leaderboard", "run", "t.csv"]]
)
def test_an_out_file_that_cannot_be_written_exits_2_before_any_work(tmp_path, monkeypatch, args):
    """predict --out DIR gave a traceback after predicting: now exit 2 and a message, as for a file under a file."""
    monkeypatch.chdir(tmp_path)
    Path("folder").mkdir()
    Path("existing_file.txt").write_text("x")
    r = CliRunner().invoke(app, [*args, "--out", "folder"])
    assert r.exit_code == 2, r.output
    assert "--out folder is a folder; give the name of a file to write" in r.output
    r = CliRunner().invoke(app, [*args, "--out", "existing_file.txt/preds.csv"])
    assert r.exit_code == 2, r.output
    assert "existing_file.txt is a file, not a folder" in r.output


def test_validate_report_under_a_file_exits_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("existing_file.txt").write_text("x")
    r = CliRunner().invoke(app, ["validate", "t.csv", "-l", "label", "--report", "existing_file.txt/r.csv"])
    assert r.exit_code == 2 and "--report existing_file.txt/r.csv" in r.output, r.output


def test_a_signal_inside_deferred_takes_effect_at_its_end():
    """The two renames that replace a folder are never separated by a signal; the signal still stops the command."""
    from polymodal.signals import Interrupted, deferred, stop_on_signals

    done, before = [], signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as caught, stop_on_signals():
        with deferred():
            signal.raise_signal(signal.SIGTERM)
            done.append("after the signal")
        done.append("after the block")
    assert done == ["after the signal"]
    assert caught.value.exit_code == 143 and caught.value.name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back


def test_a_second_signal_while_stopping_is_ignored():
    """The cleanup after the first signal (temp folders removed) is not cut short by a second one."""
    from polymodal.signals import Interrupted, stop_on_signals

    cleaned = []
    with pytest.raises(Interrupted), stop_on_signals():
        try:
            signal.raise_signal(signal.SIGINT)
        finally:
            signal.raise_signal(signal.SIGINT)
            cleaned.append(True)
    assert cleaned == [True]


def test_lightning_stop_exits_come_out_as_the_interruptions_they_are():
    """Without the command line's handlers (the Python API), Lightning ends fit by SystemExit: without a code after
    SIGTERM (exit 0) and with 1 after Ctrl-C; fit_model turns them back into exceptions."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from polymodal.signals import Interrupted
    from polymodal.training.fit import _stops_as_exceptions

    with pytest.raises(Interrupted) as caught, _stops_as_exceptions():
        raise SIGTERMException
    assert caught.value.signum == signal.SIGTERM
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), _stops_as_exceptions():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # as Lightning does before its sys.exit(1)
            sys.exit(1)
    assert signal.getsignal(signal.SIGINT) is before
