"""Tuning (polymodal.tuning, ``polymodal tune``, ``Predictor.tune``): the generated and overridden search space, the
pruning callback, the study's outputs and best run, resuming a killed study; tiny numeric tables, a few epochs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from conftest import study_trials
from optuna.trial import TrialState
from typer.testing import CliRunner

from polymodal import Predictor
from polymodal.cli import app
from polymodal.config import PolymodalConfig
from polymodal.errors import ConfigError
from polymodal.params import ENCODER_PARAMS, FUSION_PARAMS
from polymodal.tuning import Categorical, FloatRange, IntRange, default_space, load_space
from polymodal.tuning.pruning import PruningCallback
from polymodal.tuning.space import apply_values, resolve_space
from polymodal.tuning.study import JOURNAL, STUDY_NAME, open_study

REPO_ROOT = Path(__file__).resolve().parents[1]

# Far too low a learning rate for a few epochs: the defaults the tuner has to get away from.
POOR_CONFIG = {
    "training": {"max_epochs": 4, "batch_size": 32, "learning_rate": 1e-5, "patience": 10},
    "encoders": {"tabular": {"name": "tabular_mlp", "hidden": 16, "dim": 16}},
    "fusion": {"dim": 32},
}
LR_SPACE = {"defaults": False, "params": {"training.learning_rate": {"low": 1e-3, "high": 5e-2, "log": True}}}


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> tuple[Path, Path]:
    """A linear rule over four numeric columns with 5% flipped labels: 360 training and 120 test rows."""
    out = tmp_path_factory.mktemp("tune-data")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(480, 4))
    y = (x[:, 0] + 0.8 * x[:, 1] - 0.6 * x[:, 2] > 0) ^ (rng.random(480) < 0.05)
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"]).assign(y=np.where(y, "yes", "no"))
    frame.iloc[:360].to_csv(out / "train.csv", index=False)
    frame.iloc[360:].to_csv(out / "test.csv", index=False)
    return out / "train.csv", out / "test.csv"


# ------------------------------------------------------------------------------------------------ the space
def test_default_space_comes_from_the_component_configs():
    cfg = PolymodalConfig.from_any(POOR_CONFIG)
    space = default_space(cfg)
    assert space.params["fusion.name"] == Categorical(choices=FUSION_PARAMS.names())
    assert space.params["training.learning_rate"] == FloatRange(low=1e-4, high=3e-2, log=True)
    assert isinstance(space.params["training.max_epochs"], IntRange)
    assert {"fusion.dim", "fusion.dropout", "training.weight_decay", "training.modality_dropout"} <= set(space.params)
    # every integer size field of each configured encoder's Config, and nothing that is not one of its fields
    for key, choice in cfg.encoders.items():
        fields = ENCODER_PARAMS.get(choice.name).model_fields
        ours = [p.split(".")[2] for p in space.params if p.startswith(f"encoders.{key}.")]
        assert ours and set(ours) <= set(fields)
        assert "dim" in ours
    assert "encoders.text.max_positions" not in space.params  # a cap, not a size
    # every sampled config is valid (the components' own check), whatever the sampler draws
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(25):
        trial = study.ask()
        values = space.suggest(trial)
        PolymodalConfig.from_any(apply_values(cfg.to_dict(), values))
        study.tell(trial, 0.0)


def test_space_file_overrides_adds_and_removes(tmp_path):
    cfg = PolymodalConfig.from_any(POOR_CONFIG)
    path = tmp_path / "space.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "params": {
                    "training.learning_rate": {"low": 1e-3, "high": 1e-1, "log": True},
                    "fusion.dropout": None,
                    "fusion.heads": {"choices": [1, 2]},
                    "training.patience": {"low": 2, "high": 6},
                }
            }
        )
    )
    space = load_space(path, cfg)
    assert space.params["training.learning_rate"] == FloatRange(low=1e-3, high=1e-1, log=True)
    assert "fusion.dropout" not in space.params and "fusion.name" in space.params
    assert space.params["training.patience"] == IntRange(low=2, high=6)
    # a fusion's own parameter applies only to trials whose fusion has it
    concat = apply_values(cfg.to_dict(), {"fusion.name": "concat", "fusion.heads": 2})
    attention = apply_values(cfg.to_dict(), {"fusion.name": "attention", "fusion.heads": 2})
    assert "heads" not in concat["fusion"] and attention["fusion"]["heads"] == 2
    only = resolve_space({"defaults": False, "params": {"training.max_epochs": {"low": 1, "high": 3}}}, cfg)
    assert list(only.params) == ["training.max_epochs"]


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"training.learning_rat": {"low": 1e-4, "high": 1e-1}}, "did you mean 'learning_rate'"),
        ({"training.learning_rate": {"low": 0.0, "high": 1e-1}}, "params.training.learning_rate: 0.0"),
        ({"training.learning_rate": {"low": 0.1, "high": 0.01}}, "is above high"),
        ({"encoders.tabular.hiden": {"choices": [8, 16]}}, "did you mean 'hidden'"),
        ({"encoders.review.dim": {"choices": [8, 16]}}, "no encoder under 'review'"),
        ({"fusion.name": {"choices": ["concat", "lat"]}}, "did you mean 'late'"),
        ({"fusion.dim": {"low": 16.0, "high": 64.5}}, "an integer parameter"),
        ({"training": {"low": 1, "high": 2}}, "a section, not a parameter"),
        ({"fusion.nope": None}, "nothing to remove"),
    ],
)
def test_space_errors_name_the_path(params, expected):
    with pytest.raises(ConfigError, match="invalid search space") as e:
        resolve_space({"params": params}, PolymodalConfig.from_any(POOR_CONFIG))
    assert expected in str(e.value)


def test_cli_space_error_exits_before_reading_the_table(tmp_path):
    bad = tmp_path / "space.yaml"
    bad.write_text("params:\n  training.learning_rate: {low: -1, high: 0.1}\n")
    # the table does not even exist: the space is checked first
    r = CliRunner().invoke(
        app, ["tune", str(tmp_path / "absent.csv"), "-l", "y", "--time-limit", "5", "--space", str(bad)]
    )
    assert r.exit_code == 2
    assert "params.training.learning_rate" in r.output and "absent.csv" not in r.output
    shown = CliRunner().invoke(app, ["tune", "x.csv", "-l", "y", "--show-space"])
    assert shown.exit_code == 0 and "training.learning_rate: float" in shown.output
    missing = CliRunner().invoke(app, ["tune", "x.csv", "-l", "y"])
    assert missing.exit_code == 2 and "--time-limit is required" in missing.output
    help_text = CliRunner().invoke(app, ["tune", "--help"]).output
    assert "--time-limit" in help_text and "--trials" in help_text and "--space" in help_text


def test_tune_refuses_several_labels(tables):
    with pytest.raises(ConfigError, match="one label"):
        from polymodal.tuning import tune

        tune(tables[0], ["y", "a"], POOR_CONFIG, time_limit=5)  # type: ignore[arg-type]


def test_a_folder_holds_one_study(tmp_path):
    open_study(tmp_path, direction="maximize", seed=0, prune=True, attrs={"label": "y", "monitor": "val_accuracy"})
    with pytest.raises(ConfigError, match="holds another study"):
        open_study(tmp_path, direction="minimize", seed=0, prune=True, attrs={"label": "price", "monitor": "val_rmse"})


# ------------------------------------------------------------------------------------------------ pruning
class _FakeTrial:
    def __init__(self, prune_after: int):
        self.reports: list[tuple[int, float]] = []
        self.prune_after = prune_after

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))

    def should_prune(self) -> bool:
        return len(self.reports) >= self.prune_after


def test_pruning_callback_reports_each_epoch_and_stops_a_pruned_trial():
    trial = _FakeTrial(prune_after=2)
    cb = PruningCallback(trial, "val_accuracy")
    trainer = SimpleNamespace(sanity_checking=False, current_epoch=0, should_stop=False, callback_metrics={})
    cb.on_validation_end(trainer, None)  # no metric logged yet: nothing reported
    assert trial.reports == []
    for epoch, value in enumerate([0.5, 0.55]):
        trainer.current_epoch, trainer.callback_metrics = epoch, {"val_accuracy": value, "val_loss": 1.0}
        cb.on_validation_end(trainer, None)
    cb.on_validation_end(trainer, None)  # a second validation of one epoch (the time limit's) is not re-reported
    assert trial.reports == [(0, 0.5), (1, 0.55)]
    assert cb.pruned and cb.pruned_at == 1 and trainer.should_stop


def test_median_pruner_prunes_an_obviously_bad_trial():
    """Through the callback and Optuna's MedianPruner (as open_study sets it up): a trial far below the earlier
    ones at every epoch is stopped after the warm-up."""
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    )
    for _ in range(2):
        good = study.ask()
        for epoch in range(4):
            good.report(0.8 + 0.02 * epoch, epoch)
        study.tell(good, 0.86)
    bad = study.ask()
    cb = PruningCallback(bad, "val_accuracy")
    trainer = SimpleNamespace(sanity_checking=False, current_epoch=0, should_stop=False, callback_metrics={})
    for epoch in range(4):
        if trainer.should_stop:
            break
        trainer.current_epoch, trainer.callback_metrics = epoch, {"val_accuracy": 0.5}
        cb.on_validation_end(trainer, None)
    assert cb.pruned_at == 1  # epoch 0 is the warm-up


# ------------------------------------------------------------------------------------------------ acceptance
def test_tune_beats_poor_defaults_on_test_and_saves_the_best_run(tables, tmp_path):
    """Acceptance (issue 17): on a task where the defaults are poor (a learning rate far too low), tuning finds a
    configuration that beats them on test within its time limit; the best run is a normal run directory."""
    train, test = tables
    # the same model family as the trials (one network; the default fit's classical members are not tuned)
    defaults = Predictor(label="y", config=POOR_CONFIG, verbose=False, preset="fast").fit(train)
    default_score = defaults.evaluate(test)["accuracy"]

    out = tmp_path / "study"
    tuned = Predictor(label="y", config=POOR_CONFIG, verbose=False).tune(
        train, time_limit=120, trials=3, space=LR_SPACE, out=out
    )
    tuned_score = tuned.evaluate(test)["accuracy"]
    print(f"test accuracy: defaults {default_score:.3f}, tuned {tuned_score:.3f}")
    assert tuned_score > default_score + 0.1, (default_score, tuned_score)

    result = tuned.tune_result
    assert result is not None and result.stopped_by == "trials" and result.trials_run == 3
    assert result.monitor == "val_accuracy" and result.direction == "maximize"
    assert 1e-3 <= result.best_params["training.learning_rate"] <= 5e-2
    assert tuned.config.training.learning_rate == pytest.approx(result.best_params["training.learning_rate"])
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board["trial"]) == list(result.leaderboard["trial"]) and len(board) == 3
    assert board["val_accuracy"].iloc[0] == pytest.approx(result.best_value)
    assert board["val_accuracy"].is_monotonic_decreasing  # best first
    assert {"state", "seconds", "training.learning_rate"} <= set(board.columns)
    assert "| trial | state | val_accuracy" in (out / "leaderboard.md").read_text()
    assert (out / "tune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((out / "study.log").read_text().splitlines()) == 3
    # <out>/best predicts as the returned Predictor does, and the CLI evaluates it unchanged
    loaded = Predictor.load(out / "best", verbose=False)
    pd.testing.assert_series_equal(loaded.predict(test), tuned.predict(test))
    r = CliRunner().invoke(app, ["evaluate", str(out / "best"), str(test), "-q"])
    assert r.exit_code == 0, r.output
    # every trial reported its validation score after each epoch (what the pruner reads)
    study = optuna.load_study(
        study_name=STUDY_NAME,
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / JOURNAL))),
    )
    assert all(len(t.intermediate_values) >= 1 for t in study.trials)


def test_tune_in_memory_returns_a_fitted_predictor(tables):
    train, test = tables
    p = Predictor(label="y", config=POOR_CONFIG, verbose=False).tune(train, time_limit=60, trials=2, space=LR_SPACE)
    assert p.tune_result is not None and p.tune_result.out is None and p.tune_result.trials_run == 2
    assert len(p.tune_result.leaderboard) == 2
    assert len(p.predict(test)) == 120


def test_resuming_a_killed_study_continues_it(tables, tmp_path):
    """Acceptance (issue 17): kill ``polymodal tune`` while its second trial runs; the same command continues the
    study: trial numbers go on, the completed trial is kept, the killed one is marked failed and not counted, and
    --trials counts the study's total."""
    train, _ = tables
    config, space, out = tmp_path / "cfg.yaml", tmp_path / "space.yaml", tmp_path / "study"
    config.write_text(yaml.safe_dump({**POOR_CONFIG, "training": {**POOR_CONFIG["training"], "max_epochs": 12}}))
    space.write_text(yaml.safe_dump(LR_SPACE))
    cmd = [sys.executable, "-m", "polymodal.cli", "tune", str(train), "-l", "y", "--time-limit", "300"]
    cmd += ["--trials", "3", "--out", str(out), "-c", str(config), "--space", str(space), "--no-prune", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT / "src")}

    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            trials = study_trials(out)
            if any(t.number == 1 and t.state == TrialState.RUNNING for t in trials):
                break
            time.sleep(0.1)
        assert first.poll() is None, first.communicate()[0].decode()
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(30)
    killed = study_trials(out)
    assert {t.number: t.state for t in killed} == {0: TrialState.COMPLETE, 1: TrialState.RUNNING}

    # the same command again (in this process: a fresh interpreter would only add its start-up time)
    second = CliRunner().invoke(app, cmd[3:])
    assert second.exit_code == 0, second.output
    after = study_trials(out)
    assert [t.number for t in after] == [0, 1, 2, 3]
    states = {t.number: t.state for t in after}
    assert states[1] == TrialState.FAIL and after[1].user_attrs["stale"] is True
    assert states[0] == states[2] == states[3] == TrialState.COMPLETE
    assert after[0].value == killed[0].value and after[0].params == killed[0].params  # kept as it was
    assert "this run 2 trials" in second.output
    board = pd.read_csv(out / "leaderboard.csv")
    assert set(board["trial"]) == {0, 1, 2, 3} and board.loc[board["trial"] == 1, "state"].item() == "fail"
    assert (out / "best" / "model.safetensors").is_file()
