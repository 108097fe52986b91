"""Experiment tracking (training.logger): runs that MLflow's client and TensorBoard's event reader list, with the
config as parameters and one metric value per epoch; compare logs one run per variant; a missing package is a clear
error before any table is read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polymodal import Predictor
from polymodal.config import TrainingConfig
from polymodal.errors import ConfigError
from polymodal.training import tracking

EPOCHS = 3


def _table(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame({"x": x, "z": rng.normal(size=n), "label": np.where(x > 0, "yes", "no")})


def _config(logger: str, where: str, **training) -> dict:
    return {
        "training": {"max_epochs": EPOCHS, "batch_size": 16, "patience": 10, "logger": logger, "tracking_dir": where}
        | training,
        "encoders": {"tabular": {"name": "tabular_mlp", "hidden": 8, "dim": 8}},
        "fusion": {"dim": 8},
    }


def test_mlflow_run_lists_params_metrics_and_run_directory(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    cfg = _config("mlflow", str(tmp_path / "mlruns"), run_name="tracked")
    p = Predictor("label", config=cfg, preset="fast", verbose=False).fit(_table())
    assert p.fit_result is not None and p.fit_result.tracking is not None
    run_info = p.fit_result.tracking
    p.save(tmp_path / "run")
    uri = "file:" + str((tmp_path / "mlruns").resolve())
    assert run_info.location == uri
    with tracking.file_store_allowed(uri):
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("polymodal")
        runs = client.search_runs([experiment.experiment_id])
        assert [r.info.run_name for r in runs] == ["tracked"]
        run = runs[0]
        assert run.info.run_id == run_info.run_id
        assert run.data.params["training.max_epochs"] == str(EPOCHS)
        assert run.data.params["training.logger"] == "mlflow"
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert len(history) == p.fit_result.epochs_run == EPOCHS
        assert len(client.get_metric_history(run.info.run_id, "train_loss")) == EPOCHS
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "run")}
        assert {"run/model.safetensors", "run/config.yaml", "run/metrics.json"} <= artifacts


def test_tensorboard_event_reader_sees_per_epoch_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = _config("tensorboard", str(tmp_path / "tb"), run_name="tb-run")
    p = Predictor("label", config=cfg, preset="fast", verbose=False).fit(_table())
    run_info = p.fit_result.tracking
    assert run_info is not None and run_info.kind == "tensorboard"
    events = EventAccumulator(run_info.location)
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"val_loss", "train_loss"} <= set(scalars)
    assert len(events.Scalars("val_loss")) == EPOCHS
    # the hyperparameters are written for TensorBoard's HParams tab (a plugin summary in the same folder)
    hparams = (tmp_path / "tb" / "polymodal" / "tb-run" / "hparams.yaml").read_text(encoding="utf-8")
    assert "training.logger: tensorboard" in hparams


def test_csv_logger_writes_metrics_per_epoch(tmp_path):
    cfg = _config("csv", str(tmp_path / "csv"), run_name="c")
    Predictor("label", config=cfg, preset="fast", verbose=False).fit(_table())
    metrics = pd.read_csv(tmp_path / "csv" / "polymodal" / "c" / "metrics.csv")
    assert metrics["val_loss"].notna().sum() == EPOCHS


def test_missing_package_is_a_clear_error(monkeypatch):
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(
        tracking.importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"polymodal\[tracking\]"):
        tracking.check_logger(TrainingConfig(logger="mlflow"))


def test_unknown_logger_is_refused():
    with pytest.raises(ConfigError):
        Predictor("label", config={"training": {"logger": "wandb"}})


def test_flatten_nests_and_stringifies():
    flat = tracking.flatten({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": {}})
    assert flat == {"a.b": 1, "a.c": "[1, 2]", "d": None, "e": "{}"}


def test_compare_logs_one_run_per_variant(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from polymodal.evaluation.compare import compare

    table = _table(80)
    cfg = _config("mlflow", str(tmp_path / "mlruns"), max_epochs=1)
    board = compare(table, "label", fusions="concat", config=cfg, out_dir=tmp_path / "cmp", verbose=False)
    uri = "file:" + str((tmp_path / "mlruns").resolve())
    with tracking.file_store_allowed(uri):
        client = MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("polymodal").experiment_id])
    names = sorted(r.info.run_name for r in runs)
    assert len(names) == len(board) and all(n.startswith("compare-") for n in names)
    assert len(set(names)) == len(names)


def test_tune_logs_one_run_per_trial(tmp_path):
    from polymodal.tuning import tune

    space = {"defaults": False, "params": {"training.learning_rate": {"low": 1e-3, "high": 5e-2, "log": True}}}
    cfg = _config("csv", str(tmp_path / "csv"), max_epochs=2)
    result = tune(_table(80), "label", cfg, time_limit=120, trials=2, space=space, prune=False, verbose=False)
    runs = sorted(p.name for p in (tmp_path / "csv" / "polymodal").iterdir())
    assert runs == [f"tune-trial{t}" for t in range(result.trials_run)] and len(runs) == 2
    for run in runs:
        assert (tmp_path / "csv" / "polymodal" / run / "metrics.csv").is_file()


def test_cli_logger_options(tmp_path, cli):
    import yaml

    path = tmp_path / "t.csv"
    _table().to_csv(path, index=False)
    cfg = _config("none", None)
    del cfg["training"]["logger"], cfg["training"]["tracking_dir"]
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    common = ["fit", path, "--label", "label", "--config", tmp_path / "cfg.yaml", "--preset", "fast", "--quiet"]
    result = cli(*common, "--out", tmp_path / "run", "--logger", "csv", "--tracking-dir", tmp_path / "logs")
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "logs" / "polymodal").iterdir()
    assert pd.read_csv(run / "metrics.csv")["val_loss"].notna().sum() == EPOCHS
    bad = cli(*common, "--out", tmp_path / "run2", "--logger", "wandb")
    assert bad.exit_code == 2 and "training.logger" in bad.stderr
    assert not (tmp_path / "run2").exists()
