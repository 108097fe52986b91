"""Training on several processes (DDP through Lightning, gloo on CPU): validation gathered from every rank, the best
epoch restored, one run directory written by rank 0 (issue 20, acceptance 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from pydantic import ValidationError

from polymodal import Predictor
from polymodal.config import TrainingConfig
from polymodal.errors import ConfigError
from polymodal.fitting import split_rows
from polymodal.ranks import is_main_process, process_rank
from polymodal.tasks.base import Task
from polymodal.training.distributed import check_settings, gather_outputs

REPO_ROOT = Path(__file__).resolve().parents[1]


def _regression_table(path: Path, n: int) -> pd.DataFrame:
    """Numbers and a category, a noisy numeric target: a continuous metric (rmse) shows any row left out."""
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    y = 2 * x1 - x2 + (colour == "red") * 1.5 + rng.normal(scale=0.3, size=n)
    frame = pd.DataFrame({"x1": x1, "x2": x2, "colour": colour, "y": y})
    frame.to_csv(path, index=False)
    return frame


def test_ddp_two_processes_gather_validation_and_write_one_run_dir(tmp_path):
    n = 140  # validation: 21 rows, odd, so the distributed sampler pads one rank with a repeated row
    frame = _regression_table(tmp_path / "t.csv", n)
    # A high learning rate on a tiny net: the validation error goes up after epoch 2, and patience 1 stops there, so
    # the best epoch is not the last one (and both ranks must agree to stop, or one would wait for the other forever)
    config = {
        "training": {"max_epochs": 5, "batch_size": 16, "learning_rate": 0.3, "patience": 1, "accelerator": "cpu"},
        "encoders": {"tabular": {"name": "tabular_mlp", "hidden": 16, "dim": 16}},
        "fusion": {"dim": 16},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "runs" / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT / "src"))
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "SLURM_PROCID"):
        env.pop(var, None)
    # Lightning's subprocess launcher runs this command line again for rank 1 (`python -c` cannot be re-run)
    script = tmp_path / "polymodal_cli.py"
    script.write_text("from polymodal.cli import app\n\napp()\n")
    args = [str(tmp_path / "t.csv"), "-l", "y", "-o", str(out), "-c", str(tmp_path / "cfg.yaml"), "--preset", "fast"]
    done = subprocess.run(
        [sys.executable, str(script), "fit", *args, "--devices", "2", "--strategy", "ddp"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("saved to") == 1, done.stdout  # rank 1 printed no summary
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["out"]  # one run dir, no temporary leftovers

    metrics = json.loads((out / "metrics.json").read_text())
    history = pd.read_csv(out / "training_log.csv")
    assert len(history) == metrics["epochs_run"]
    # every epoch has the gathered validation metrics (before, they vanished under DDP and the last epoch was kept)
    assert history["val_rmse"].notna().all()
    best = metrics["best_epoch"]
    assert history["val_rmse"][best] == history["val_rmse"].min()  # the same best epoch chosen on every rank
    assert metrics["stopped_early"] and best < len(history) - 1, "these settings should stop early: see the config"
    assert metrics["validation"]["val_rmse"] == pytest.approx(history["val_rmse"][best], rel=1e-6)

    # One process scoring the saved model on the whole validation split gives the metric the two ranks gathered:
    # every validation row was counted once, and the saved weights are the best epoch's.
    _, val_pos = split_rows(n, TrainingConfig().validation_fraction, 0, None, None)
    assert len(val_pos) % 2 == 1
    p = Predictor.load(out)
    scored = p.evaluate(frame.iloc[val_pos].reset_index(drop=True))
    assert scored["rmse"] == pytest.approx(metrics["validation"]["val_rmse"], rel=1e-4)
    assert scored["rmse"] != pytest.approx(history["val_rmse"].iloc[-1], rel=1e-4)  # not the last epoch's weights
    assert len(p.predict(frame.head(5))) == 5


class _Rows:
    """A task's default output handling (tensors per batch, concatenated, indexed by position)."""

    collect_outputs = Task.collect_outputs
    select_outputs = Task.select_outputs


def test_gather_outputs_puts_rows_back_in_order_once():
    task: Any = _Rows()
    # one rank's view of a DistributedSampler over 5 rows: 0, 2, 4 then a padded repeat of 0, in batches of 2
    rows = [torch.tensor([3, 1]), torch.tensor([0, 4]), torch.tensor([2, 0])]
    parts = [r.float().unsqueeze(1) * 10 for r in rows]
    out = gather_outputs(task, parts, rows, 5)
    np.testing.assert_array_equal(out[:, 0], [0, 10, 20, 30, 40])
    assert gather_outputs(task, parts[:1], rows[:1], 5) is None  # rows missing (the sanity check's few batches)


def test_distribution_settings_are_validated():
    assert TrainingConfig().devices == "auto" and TrainingConfig().strategy == "auto"
    assert TrainingConfig(devices=[0, 1], strategy="ddp", num_nodes=2).num_nodes == 2
    for bad in ({"devices": 0}, {"devices": [1, 1]}, {"strategy": "dpp"}, {"num_nodes": 0}):
        with pytest.raises(ValidationError, match="devices|strategy|num_nodes"):
            TrainingConfig(**bad)


def test_device_settings_the_cpu_cannot_run_are_refused_with_what_to_give(monkeypatch):
    with pytest.raises(ValidationError, match="selects GPUs; on the CPU give a number of processes"):
        TrainingConfig(accelerator="cpu", devices=[0, 1])
    with pytest.raises(ValidationError, match="fsdp needs GPUs"):
        TrainingConfig(accelerator="cpu", strategy="fsdp")
    # accelerator auto: known at fit time, once the machine is seen to have no GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="deepspeed needs GPUs.*no GPU was found"):
        check_settings(TrainingConfig(strategy="deepspeed", devices=2))
    check_settings(TrainingConfig(strategy="ddp", devices=2))  # the CPU runs DDP


@pytest.mark.parametrize("training", [{"devices": 2}, {"devices": -1}, {"num_nodes": 2}])
def test_tune_and_compare_refuse_several_devices_before_any_work(tmp_path, training):
    """tune and compare run many fits in one process: under DDP every rank would run its own study/comparison."""
    from polymodal.evaluation.compare import compare
    from polymodal.tuning.run import tune

    cfg = {"training": training}
    missing = tmp_path / "not-read.csv"  # refused before the table is read
    with pytest.raises(ConfigError, match="compare runs its fits one after another"):
        compare(missing, "label", config=cfg)
    with pytest.raises(ConfigError, match="tune runs its fits one after another"):
        tune(missing, "label", config=cfg, time_limit=60, trials=1)


def test_cli_distribution_options_reach_the_config(tmp_path, cli):
    from polymodal.cli import _with_distribution
    from polymodal.config import PolymodalConfig

    cfg = _with_distribution(PolymodalConfig(), "0,1", "ddp_spawn", 2)
    assert (cfg.training.devices, cfg.training.strategy, cfg.training.num_nodes) == ([0, 1], "ddp_spawn", 2)
    with pytest.raises(ConfigError, match="strategy"):
        _with_distribution(PolymodalConfig(), None, "nope", None)
    result = cli("fit", tmp_path / "t.csv", "-l", "y", "-o", tmp_path / "o", "--devices", "two")
    assert result.exit_code == 2 and "--devices" in result.stderr


def test_rank_comes_from_the_launcher_environment(monkeypatch):
    for var in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert process_rank() == 0 and is_main_process()
    monkeypatch.setenv("LOCAL_RANK", "1")  # Lightning's launcher: a second process on this machine
    assert not is_main_process()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("NODE_RANK", "1")  # the first process of the second machine
    assert not is_main_process()
    monkeypatch.setenv("SLURM_PROCID", "0")  # srun's global rank decides
    assert is_main_process()


def test_forked_workers_ship_the_best_epoch_back(tmp_path):
    """ddp_fork / ddp_spawn / ddp_notebook train in worker processes: the caller gets rank 0's weights and metrics
    when they end, so the best epoch must be restored in the workers and its choice shipped with the metrics."""
    n = 140
    frame = _regression_table(tmp_path / "t.csv", n)
    config = {
        "training": {
            "max_epochs": 5,
            "batch_size": 16,
            "learning_rate": 0.3,
            "patience": 1,
            "accelerator": "cpu",
            "devices": 2,
            "strategy": "ddp_fork",
        },
        "encoders": {"tabular": {"name": "tabular_mlp", "hidden": 16, "dim": 16}},
        "fusion": {"dim": 16},
    }
    p = Predictor("y", config=config, preset="fast", verbose=False).fit(frame)
    r = p.fit_result
    assert r is not None and r.stopped_early and r.best_epoch < r.epochs_run - 1
    _, val_pos = split_rows(n, TrainingConfig().validation_fraction, 0, None, None)
    scored = p.evaluate(frame.iloc[val_pos].reset_index(drop=True))
    assert scored["rmse"] == pytest.approx(r.validation["val_rmse"], rel=1e-4)


_TIME_LIMITED_FIT = """
import json, sys
import numpy as np, pandas as pd
from polymodal import Predictor

rng = np.random.default_rng(0)
frame = pd.DataFrame({"x1": rng.normal(size=300), "x2": rng.normal(size=300)})
frame["y"] = frame.x1 - frame.x2
config = {
    "training": {"max_epochs": 200, "batch_size": 8, "accelerator": "cpu", "devices": 2, "strategy": "ddp_fork",
                 "time_limit": 0.5, "patience": 200},
    "encoders": {"tabular": {"name": "tabular_mlp", "hidden": 8, "dim": 8}},
    "fusion": {"dim": 8},
}
r = Predictor("y", config=config, preset="fast", verbose=False).fit(frame).fit_result
print(json.dumps({"time_limited": r.time_limited, "epochs_run": r.epochs_run, "best_epoch": r.best_epoch}))
"""


def test_time_limit_stops_every_rank_together(tmp_path):
    """The time limit is checked per process; one rank stopping alone would leave the other waiting for it forever
    (here: until the subprocess timeout). One rank past the limit stops them all after the same step."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT / "src"))
    script = tmp_path / "fit.py"
    script.write_text(_TIME_LIMITED_FIT)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["time_limited"] and result["epochs_run"] < 200 and result["best_epoch"] >= 0
