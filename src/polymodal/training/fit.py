"""Set up Lightning's Trainer (early stopping, time limit, progress bar or lines, precision) and run it."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..config import TrainingConfig
from ..cpu_share import enabled as sharing_enabled
from ..data.dataset import Batch
from ..data.progress import live_bars
from ..model import MultimodalModel
from ..signals import Interrupted
from ..tasks import Task
from ..threads import threads_for_call, use_threads, user_chose_threads
from .callbacks import BestState, EpochLog, History, ShareCores, TimeLimit
from .checkpoint import Checkpointing, EpochCheckpoint, EpochSeed, SafetensorsCheckpointIO
from .distributed import check_settings, distributed_fit
from .module import MultimodalModule
from .speed import auto_precision, channels_last
from .tracking import LogHyperparameters, TrackingRun, file_store_allowed, location, make_logger, run_of

log = logging.getLogger("polymodal")
_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning announces hardware and tips at INFO level on every fit; users only need its warnings. Raised to
    WARNING for the block only, then restored: the levels belong to the application, not to a library call."""
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        # An application that asked for less (ERROR) keeps it; only INFO/DEBUG/unset are raised.
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@dataclass
class FitResult:
    best_epoch: int
    epochs_run: int
    fit_seconds: float
    stopped_early: bool
    validation: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    #: seconds in Lightning's fit (training and validation epochs; ``fit_seconds`` also counts reading and decoding)
    train_seconds: float = 0.0
    #: whether ``training.time_limit`` ended training
    time_limited: bool = False
    #: this process's rank in a multi-process (DDP) fit, 0 otherwise: only rank 0 writes the run directory
    global_rank: int = 0
    #: where ``training.logger`` logged this fit (None: no logger)
    tracking: TrackingRun | None = None
    #: the numeric precision Lightning trained with (``training.precision`` or the automatic choice)
    precision: str = "32-true"


@contextlib.contextmanager
def _stops_as_exceptions() -> Iterator[None]:
    """Lightning ends ``fit`` on a stop signal through ``SystemExit``: without a code after SIGTERM (a process that
    exits 0, as if training had succeeded) and with code 1 after Ctrl-C, and it leaves SIGINT ignored. Within the
    block, both come out as the exceptions they are (:class:`~polymodal.signals.Interrupted`, the KeyboardInterrupt)
    and the SIGINT handler is put back, so that callers clean up and the command line exits 143 / 130."""
    main = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    except SIGTERMException:
        raise Interrupted(signal.SIGTERM) from None
    except SystemExit as e:
        if isinstance(e.__context__, KeyboardInterrupt):  # Lightning's sys.exit(1) in its KeyboardInterrupt handler
            raise e.__context__ from None
        raise
    finally:
        if main and sigint is not None:
            signal.signal(signal.SIGINT, sigint)


@contextlib.contextmanager
def _restored_deterministic(enabled: bool) -> Iterator[None]:
    """Lightning's ``deterministic`` flag switches torch's deterministic algorithms for the whole process; a fit
    must leave the caller's setting as it found it."""
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled)


def _rows_of(loader: torch.utils.data.DataLoader) -> int | None:
    try:
        return len(loader.dataset)  # type: ignore[arg-type]
    except TypeError:  # an iterable dataset without a length
        return None


def shares_cores(cfg: TrainingConfig) -> bool:
    """Whether the fit lowers its thread count while other processes are busy: not when the user chose the count
    (theirs to keep), nor for a deterministic fit (the thread count can change the order of float sums), nor with
    ``POLYMODAL_SHARE_CORES=0``."""
    return sharing_enabled() and not cfg.deterministic and not user_chose_threads(cfg.threads)


def fit_model(
    model: MultimodalModel,
    task: Task,
    train_loader: torch.utils.data.DataLoader,
    val_loader: torch.utils.data.DataLoader,
    val_labels: pd.Series,
    cfg: TrainingConfig,
    max_epochs: int,
    progress: bool = True,
    extra_callbacks: list[L.Callback] | None = None,
    checkpoint: Checkpointing | None = None,
    hyperparameters: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``model`` in place and restore the best validation epoch's weights.

    ``progress``: Lightning's live bar on a terminal, one log line per epoch (:class:`EpochLog`) otherwise.
    ``cfg.time_limit`` is checked after every training step (:class:`TimeLimit`). ``extra_callbacks`` run after
    polymodal's own (tuning's pruning callback reads the validation metrics they logged). ``checkpoint``: save a
    checkpoint at every epoch end there, and continue from its last one when resuming (see training/checkpoint.py).
    ``hyperparameters``: what ``training.logger`` records as the run's parameters (the flattened resolved config).
    """
    check_settings(cfg)
    monitor, mode = task.monitor
    # (an unresolved config, e.g. a training loop built by hand: the large-table patience)
    best = BestState(f"val_{monitor}", mode, cfg.patience if cfg.patience is not None else 4)
    history = History()
    limit = TimeLimit(cfg.time_limit) if cfg.time_limit else None
    bar = progress and live_bars()
    callbacks: list[L.Callback] = [best, history]
    if limit is not None:
        callbacks.append(limit)
    if progress and not bar:
        callbacks.append(EpochLog(f"val_{monitor}", max_epochs, cfg.time_limit))
    callbacks += list(extra_callbacks or [])
    if shares_cores(cfg):
        callbacks.append(ShareCores())
    callbacks.append(EpochSeed(cfg.seed))
    if checkpoint is not None:  # last: it saves the state the callbacks above hold at the epoch's end
        callbacks.append(EpochCheckpoint(checkpoint))
    logger = make_logger(cfg)
    if logger is not None:
        callbacks.append(LogHyperparameters(hyperparameters or {}))
    total_steps = max_epochs * len(train_loader)
    precision = auto_precision(cfg, rows=_rows_of(train_loader))
    module = MultimodalModule(model, task, cfg, total_steps, val_labels)
    deterministic_before = torch.are_deterministic_algorithms_enabled()  # the Trainer sets it process-wide
    with quiet_lightning(), _restored_deterministic(deterministic_before):  # (the Trainer announces the hardware)
        trainer = L.Trainer(
            max_epochs=max_epochs,
            # (training.precision: one of Lightning's values, checked with the config; typed as a plain str here)
            accelerator=cfg.accelerator,
            devices=cfg.devices,
            strategy=cfg.strategy,
            num_nodes=cfg.num_nodes,
            precision=precision,  # type: ignore[arg-type]
            gradient_clip_val=cfg.gradient_clip,
            callbacks=callbacks,
            logger=logger if logger is not None else False,
            enable_checkpointing=False,  # (polymodal's own EpochCheckpoint, without pickles)
            plugins=[SafetensorsCheckpointIO()] if checkpoint is not None else None,
            enable_progress_bar=bar,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            deterministic=cfg.deterministic,
        )
        start = time.perf_counter()
        with (
            warnings.catch_warnings(),
            _stops_as_exceptions(),
            distributed_fit(cfg.seed, cfg.strategy),
            channels_last(model),
            file_store_allowed(location(cfg) if cfg.logger == "mlflow" else None),
        ):
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            warnings.filterwarnings("ignore", ".*number of training batches.*")
            warnings.filterwarnings("ignore", ".*LeafSpec.*")
            # A frozen pretrained backbone stays in eval mode on purpose (see encoders/hf.py).
            warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode.*")
            ckpt_path = checkpoint.resume_from() if checkpoint is not None else None
            with use_threads(threads_for_call(cfg.threads)):
                trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path, weights_only=True)
            tracked = run_of(logger, cfg.logger, cfg) if logger is not None and trainer.is_global_zero else None
    seconds = time.perf_counter() - start
    if best.best_state is not None:
        model.load_state_dict(best.best_state)
    elif best.adopt_shipped(trainer.callback_metrics):
        pass  # a spawned fit (ddp_spawn): the workers restored the best weights, Lightning loaded them here
    else:
        log.warning("no validation epoch completed (time limit too short?); keeping the last weights")
    return FitResult(
        best_epoch=best.best_epoch,
        epochs_run=max(trainer.current_epoch, best.epochs_run),  # (a spawned fit: the workers' count)
        fit_seconds=round(seconds, 3),
        stopped_early=best.stopped_early,
        validation=best.best_metrics,
        history=history.rows,
        train_seconds=round(seconds, 3),
        time_limited=limit is not None and limit.was_reached(trainer.callback_metrics),
        global_rank=trainer.global_rank,
        tracking=tracked,
        precision=precision,
    )


@torch.no_grad()
def predict_outputs(model: torch.nn.Module, loader: torch.utils.data.DataLoader, task: Task | None = None) -> Any:
    """Raw head outputs for every row of ``loader`` (in order), in eval mode on the model's device; with a
    ``task``, its own outputs (``Task.predict_batch``: decoded text ids for generation)."""
    model.eval()
    device = next(model.parameters()).device
    outs = []
    for raw in loader:
        batch: Batch = raw.to(device)
        outs.append(
            model(batch.inputs, batch.masks).float().cpu() if task is None else task.predict_batch(model, batch)
        )
    if task is not None:
        return task.collect_outputs(outs)
    return torch.cat(outs).numpy() if outs else np.zeros((0, 0), np.float32)
