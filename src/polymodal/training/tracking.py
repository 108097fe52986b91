"""Experiment tracking through Lightning's loggers: ``training.logger`` = none | csv | tensorboard | mlflow.

A fit with a logger writes one run: the resolved config as hyperparameters (flattened, ``training.batch_size`` ...),
the per-epoch metrics Lightning logs (``train_loss``, ``val_loss``, ``val_<metric>``) and, for MLflow, the run
directory as artifacts once it is saved (:func:`log_run_directory`, called by ``FittedPipeline.save``). Loggers
write on rank 0 only (Lightning's loggers are rank-zero-only; the artifact upload checks the rank too).

Where runs go (``training.tracking_dir``; relative folders resolve against the current directory):
``mlflow`` -> ``./mlruns`` (MLflow's own default, an offline file store; a URI such as ``sqlite:///mlflow.db`` or
``http://host:5000`` is used as given); ``tensorboard`` -> ``./tensorboard``; ``csv`` -> ``./csv_logs``.
MLflow 3 refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE=true``: polymodal sets it only while it talks to a
``file:`` store (:func:`file_store_allowed`), so a process's environment is left as it was.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L

from ..config import TrainingConfig
from ..errors import ConfigError
from ..ranks import is_main_process
from ..registry import Registry

log = logging.getLogger("polymodal")

#: the package each logger needs and the extra that installs it
_PACKAGES = {"tensorboard": ("tensorboard", "tracking"), "mlflow": ("mlflow", "tracking")}
DEFAULT_DIRS = {"mlflow": "mlruns", "tensorboard": "tensorboard", "csv": "csv_logs"}
#: MLflow limits a parameter value to 6,000 characters (older servers: 500); longer values are cut
_MAX_PARAM = 500


@dataclass
class TrackingRun:
    """Where a fit's run was logged: ``kind`` (csv | tensorboard | mlflow), its folder or URI, and its id."""

    kind: str
    location: str
    run_id: str | None = None
    experiment: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "location": self.location, "run_id": self.run_id, "experiment": self.experiment}


LOGGERS: Registry[Any] = Registry("logger")


def _require(kind: str) -> None:
    package, extra = _PACKAGES.get(kind, (None, None))
    if package is not None and importlib.util.find_spec(package) is None:
        raise ConfigError(
            f"training.logger is '{kind}', but the {package} package is not installed: install it with "
            f"`pip install 'polymodal[{extra}]'` (or `pip install {package}`), or choose another logger (csv needs "
            "nothing)"
        )


def location(cfg: TrainingConfig) -> str:
    """The folder (or, for MLflow, the tracking URI) a fit's runs go to."""
    where = cfg.tracking_dir or DEFAULT_DIRS[cfg.logger]
    if cfg.logger == "mlflow" and "://" not in where and not where.startswith("file:"):
        return "file:" + str(Path(where).resolve())
    if cfg.logger != "mlflow":
        return str(Path(where).resolve())
    return where


@contextlib.contextmanager
def file_store_allowed(uri: str | None) -> Iterator[None]:
    """Set ``MLFLOW_ALLOW_FILE_STORE=true`` for the block when ``uri`` is a file store (MLflow 3 refuses one
    otherwise), then put the variable back as it was."""
    if uri is None or not uri.startswith("file:") or "MLFLOW_ALLOW_FILE_STORE" in os.environ:
        yield
        return
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


@LOGGERS.register("csv")
def _csv(cfg: TrainingConfig, name: str) -> Any:
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(location(cfg), name=cfg.experiment, version=name)


@LOGGERS.register("tensorboard")
def _tensorboard(cfg: TrainingConfig, name: str) -> Any:
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(location(cfg), name=cfg.experiment, version=name, default_hp_metric=False)


@LOGGERS.register("mlflow")
def _mlflow(cfg: TrainingConfig, name: str) -> Any:
    from lightning.pytorch.loggers import MLFlowLogger

    with file_store_allowed(location(cfg)):  # the client opens its store here
        return MLFlowLogger(experiment_name=cfg.experiment, run_name=name, tracking_uri=location(cfg))


def check_logger(cfg: TrainingConfig) -> None:
    """Refuse a logger whose package is missing, before any table is read."""
    if cfg.logger != "none":
        _require(cfg.logger)


def make_logger(cfg: TrainingConfig) -> Any | None:
    """Lightning's logger for ``training.logger`` (None for ``none``); a :class:`ConfigError` naming the extra to
    install when its package is missing."""
    if cfg.logger == "none":
        return None
    _require(cfg.logger)
    name = cfg.run_name or _default_name()
    return LOGGERS.get(cfg.logger)(cfg, name)


def _default_name() -> str:
    import time
    import uuid

    # a suffix: the members of an ensemble start within the same second, and equal names would share one folder
    return time.strftime("fit-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"training.batch_size": 32, ...}``: loggers take flat key/value hyperparameters; lists
    and other values become strings of at most 500 characters."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[name] = value if not isinstance(value, str) else value[:_MAX_PARAM]
        else:
            out[name] = str(value)[:_MAX_PARAM]
    return out


class LogHyperparameters(L.Callback):
    """Logs the resolved config once, at the start of training, on rank 0 (the trainer's own logger)."""

    def __init__(self, params: dict[str, Any]):
        self.params = params

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.logger is not None and trainer.is_global_zero:
            trainer.logger.log_hyperparams(self.params)


def run_of(logger: Any, kind: str, cfg: TrainingConfig) -> TrackingRun:
    """Where ``logger`` wrote its run (read after training)."""
    if kind == "mlflow":
        return TrackingRun(kind, location(cfg), logger.run_id, cfg.experiment)
    return TrackingRun(kind, str(logger.log_dir), str(logger.version), cfg.experiment)


def log_run_directory(run: TrackingRun | None, path: str | Path) -> None:
    """Upload the saved run directory ``path`` as the tracked run's artifacts (folder ``run``); MLflow only (a
    TensorBoard or CSV run is a folder of its own, next to which the run directory lives). Rank 0 only; a failure
    is a warning: the model is saved either way."""
    if run is None or run.kind != "mlflow" or run.run_id is None or not is_main_process():
        return
    try:
        from mlflow.tracking import MlflowClient

        with file_store_allowed(run.location):
            MlflowClient(run.location).log_artifacts(run.run_id, str(path), "run")
    except Exception as e:  # the tracking server is not the model: report and go on
        log.warning("could not log the run directory to MLflow (%s): %s", run.location, e)
