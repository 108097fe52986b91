"""Checkpoints and resume (issue 20): a fit killed with SIGKILL during epoch 3 of 5 and resumed with --resume ends
with the weights of an uninterrupted run; the killed run leaves no run directory; checkpoints unpickle nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from polymodal import Predictor
from polymodal.errors import ConfigError, ResumeError, RunDirError
from polymodal.rundir import read_run
from polymodal.training.checkpoint import (
    CHECKPOINT,
    FINGERPRINT,
    Checkpointing,
    checkpoint_epoch,
    read_checkpoint,
    resume_dir_for,
    write_checkpoint,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 180  # a generous bound for slow shared machines: only a hang reaches it
CONFIG = {
    "training": {"max_epochs": 5, "patience": 100, "batch_size": 16, "deterministic": True},
    "encoders": {"tabular": {"name": "tabular_mlp", "hidden": 8, "dim": 8}},
    "fusion": {"dim": 8},
}


def _table(path: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    frame = pd.DataFrame(x, columns=["x1", "x2", "x3"])
    frame["label"] = np.where(x[:, 0] + 0.5 * x[:, 1] > 0, "a", "b")
    frame.to_csv(path, index=False)
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT / "src")}


def _fit_args(table: Path, config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "polymodal.cli", "fit", str(table), "--label", "label", "--config", str(config)] + [
        "--preset",
        "fast",
        "--out",
        str(out),
        "--quiet",
    ]


def _fit(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=WAIT_S)


def test_fit_killed_in_epoch_3_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    # ~75 steps an epoch: long enough that the kill lands inside epoch 3, short enough for the whole test
    table = _table(tmp_path / "t.csv", 1500)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "run"
    ckpt = resume_dir_for(out) / CHECKPOINT
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(_fit_args(table, config, out), cwd=tmp_path, env=_env(), stderr=stderr)
        try:
            deadline = time.monotonic() + WAIT_S
            while proc.poll() is None and (checkpoint_epoch(ckpt) or 0) < 1:  # epoch 2's (0-based 1) checkpoint
                assert time.monotonic() < deadline, "the fit wrote no checkpoint of epoch 2"
                time.sleep(0.02)
            assert proc.poll() is None, "the fit ended before the kill: " + log.read_text(errors="replace")
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(WAIT_S) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    saved = checkpoint_epoch(ckpt)
    assert saved is not None and 1 <= saved < 4, saved  # killed after epoch 2 was saved and before the last epoch
    # the killed run's --out is never a half-valid run directory
    if out.exists():
        with pytest.raises(RunDirError):
            read_run(out, lambda files: files)

    resumed = _fit([*_fit_args(table, config, out), "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert not resume_dir_for(out).exists()  # a finished run leaves no checkpoint litter
    whole = _fit(_fit_args(table, config, tmp_path / "whole"), tmp_path)
    assert whole.returncode == 0, whole.stderr

    a, b = load_file(out / "model.safetensors"), load_file(tmp_path / "whole" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    again = _fit([*_fit_args(table, config, out), "--resume", "--overwrite"], tmp_path)
    assert again.returncode != 0 and "nothing to resume" in again.stderr


def _frame(n: int = 80, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    return pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "label": np.where(x[:, 0] > 0, "a", "b")})


def test_deterministic_fits_give_identical_weights() -> None:
    cfg = {**CONFIG, "training": {**CONFIG["training"], "max_epochs": 2, "modality_dropout": 0.2}}
    states = [
        Predictor("label", config=cfg, preset="fast", verbose=False).fit(_frame()).pipeline.model.state_dict()
        for _ in range(2)
    ]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not torch.are_deterministic_algorithms_enabled()  # the fit put the process-wide flag back


def test_resume_refuses_other_data_or_arguments_and_needs_a_folder(tmp_path: Path) -> None:
    cfg = {**CONFIG, "training": {**CONFIG["training"], "max_epochs": 1}}
    folder = tmp_path / "ck"
    with pytest.raises(ResumeError, match="nothing to resume"):
        Predictor("label", config=cfg, preset="fast", verbose=False).fit(_frame(), checkpoint_dir=folder, resume=True)
    with pytest.raises(ConfigError, match="checkpoint_dir"):
        Predictor("label", config=cfg, preset="fast", verbose=False).fit(_frame(), resume=True)
    # an interrupted fit's folder: its fingerprint recorded, as fit records it before training
    p = Predictor("label", config=cfg, preset="fast", verbose=False)
    checkpointing = p._checkpointing(_frame(), None, p._user_config, folder, False)
    assert checkpointing is not None and not folder.exists()  # created with the first checkpoint
    checkpointing.prepare()
    with pytest.raises(ResumeError, match="data"):
        p.fit(_frame(seed=1), checkpoint_dir=folder, resume=True)
    other = Predictor("label", config=cfg, preset="fast", seed=7, verbose=False)
    with pytest.raises(ResumeError, match="config.training.seed"):
        other.fit(_frame(), checkpoint_dir=folder, resume=True)
    # the same fit resumes (no epoch saved yet: from the start) and removes the folder when it succeeds
    p.fit(_frame(), checkpoint_dir=folder, resume=True)
    assert p.pipeline is not None and not folder.exists()


def test_checkpoint_round_trip_is_tensors_and_json(tmp_path: Path) -> None:
    state = {
        "epoch": 3,
        "state_dict": {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(2)},
        "optimizer_states": [{"state": {0: {"step": torch.tensor(5.0)}}, "param_groups": [{"betas": (0.9, 0.999)}]}],
        "callbacks": {"BestState": {"best_key": [0.5, -0.1], "best_state": None, "metrics": {"v": float("inf")}}},
    }
    path = tmp_path / "c.safetensors"
    write_checkpoint(path, state)
    back = read_checkpoint(path)
    assert back["epoch"] == 3 and checkpoint_epoch(path) == 3
    assert torch.equal(back["state_dict"]["w"], state["state_dict"]["w"])
    assert back["optimizer_states"][0]["state"][0]["step"].item() == 5.0  # an int key stays an int
    assert back["optimizer_states"][0]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert back["callbacks"]["BestState"]["metrics"]["v"] == float("inf")
    with pytest.raises(TypeError, match="tensors and JSON"):
        write_checkpoint(path, {"x": object()})
    assert checkpoint_epoch(path) == 3  # a failed write leaves the previous checkpoint intact


def test_checkpointing_refuses_a_foreign_folder(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(ResumeError, match="not a polymodal checkpoint folder"):
        Checkpointing(folder).begin({"a": 1})
    assert (folder / "notes.txt").exists()


def test_only_rank_0_clears_a_stale_checkpoint_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun every rank calls begin(); two ranks removing the same folder would race."""
    folder = tmp_path / "ckpt"
    first = Checkpointing(folder)
    first.begin({"a": 1})
    first.prepare()
    monkeypatch.setenv("RANK", "1")
    Checkpointing(folder).begin({"a": 2})
    assert (folder / FINGERPRINT).is_file()  # still there: rank 1 left it to rank 0
    monkeypatch.setenv("RANK", "0")
    Checkpointing(folder).begin({"a": 2})
    assert not folder.exists()


def test_a_stopped_fit_keeps_its_checkpoint_and_says_how_to_resume(tmp_path: Path) -> None:
    """SIGTERM (a preempted job) after an epoch: exit 143, no run directory, the checkpoint folder kept and named."""
    table = _table(tmp_path / "t.csv", 200)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "training": {**CONFIG["training"], "max_epochs": 100000}}))
    out = tmp_path / "run"
    ckpt = resume_dir_for(out) / CHECKPOINT
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(_fit_args(table, config, out), cwd=tmp_path, env=_env(), stderr=stderr)
        try:
            deadline = time.monotonic() + WAIT_S
            while proc.poll() is None and checkpoint_epoch(ckpt) is None:
                assert time.monotonic() < deadline, "the fit wrote no checkpoint"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(WAIT_S) == 143, log.read_text(errors="replace")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    kept = f"the last finished epoch is saved in {resume_dir_for(out)}: run the same command with --resume to continue"
    assert log.read_text().strip().splitlines()[-1] == f"interrupted by SIGTERM: nothing was written to {out}; {kept}"
    assert not out.exists()
    assert sorted(p.name for p in resume_dir_for(out).iterdir()) == ["last.safetensors", "resume.json"]
