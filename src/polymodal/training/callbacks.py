"""Callbacks: keep the best weights in memory (no pickled checkpoint files), record per-epoch metrics, stop at the
time limit, log plain progress lines and share the cores with other jobs."""

from __future__ import annotations

import logging
import math
import time
from typing import cast

import lightning as L
import torch

from ..cpu_share import ThreadGovernor
from ..threads import available_cores

log = logging.getLogger("polymodal")


def _value(metrics: dict, key: str) -> float | None:
    v = metrics.get(key)
    if v is None:
        return None
    v = float(v.item() if isinstance(v, torch.Tensor) else v)
    return v if math.isfinite(v) else None


# callback_metrics keys that carry BestState's choice from spawned workers back to the caller (see on_fit_end)
_BEST_EPOCH, _STOPPED_EARLY, _EPOCHS_RUN = "polymodal/best_epoch", "polymodal/stopped_early", "polymodal/epochs_run"
_BEST, _TIME_LIMITED = "polymodal/best/", "polymodal/time_limited"


class BestState(L.Callback):
    """Keeps the weights of the best validation epoch and stops training after ``patience`` epochs without a new best.

    "Best" is the monitored metric, ties broken by the validation loss: on small validation sets accuracy often
    stays level for epochs while the model still improves, and stopping on accuracy alone would cut those short.
    """

    def __init__(self, monitor: str, mode: str, patience: int):
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.stopped_early = False
        self.best_key: tuple[float, float] | None = None
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_metrics: dict[str, float] = {}
        self.epochs_run = 0  # set from a spawned fit's shipped metrics (adopt_shipped)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        score, loss = _value(m, self.monitor), _value(m, "val_loss")
        if score is None or loss is None:
            return
        key = (score if self.mode == "max" else -score, -loss)
        if self.best_key is None or key > self.best_key:
            self.best_key, self.best_epoch = key, trainer.current_epoch
            self.best_state = self._snapshot(cast(torch.nn.Module, pl_module.model))  # the MultimodalModule's network
            self.best_metrics = {k: v for k in m if k.startswith("val_") and (v := _value(m, k)) is not None}
        elif trainer.current_epoch - self.best_epoch >= self.patience:
            trainer.should_stop = True
            self.stopped_early = True

    def state_dict(self) -> dict[str, object]:
        """Saved in a resumable fit's checkpoint (tensors and JSON values only)."""
        return {
            "best_key": None if self.best_key is None else list(self.best_key),
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
            "best_metrics": self.best_metrics,
            "stopped_early": self.stopped_early,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        key = state_dict["best_key"]
        self.best_key = None if key is None else (float(key[0]), float(key[1]))
        self.best_epoch = int(state_dict["best_epoch"])
        self.best_state = state_dict["best_state"]
        self.best_metrics = dict(state_dict["best_metrics"])
        self.stopped_early = bool(state_dict["stopped_early"])

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Restore the best epoch's weights inside the fit, on every rank: with ``ddp_spawn`` / ``ddp_notebook`` the
        fit runs in worker processes and Lightning ships rank 0's weights and ``callback_metrics`` back to the
        caller when it ends, so they must be the best ones, and what was chosen travels with the metrics."""
        if self.best_state is None:
            return
        cast(torch.nn.Module, pl_module.model).load_state_dict(self.best_state)
        shipped = {
            _BEST_EPOCH: float(self.best_epoch),
            _STOPPED_EARLY: float(self.stopped_early),
            _EPOCHS_RUN: float(trainer.current_epoch),
        }
        shipped.update({_BEST + k: v for k, v in self.best_metrics.items()})
        trainer.callback_metrics.update({k: torch.tensor(v, dtype=torch.float64) for k, v in shipped.items()})

    def adopt_shipped(self, metrics: dict) -> bool:
        """In the process that called a spawned fit (where this callback saw no epoch): take the choice made in
        the workers from the metrics they shipped back (see :meth:`on_fit_end`). False when there is none."""
        epoch = _value(metrics, _BEST_EPOCH)
        if self.best_state is not None or epoch is None:
            return False
        self.best_epoch, self.stopped_early = int(epoch), bool(_value(metrics, _STOPPED_EARLY))
        self.epochs_run = int(_value(metrics, _EPOCHS_RUN) or 0)
        self.best_metrics = {
            k.removeprefix(_BEST): v for k in metrics if k.startswith(_BEST) and (v := _value(metrics, k)) is not None
        }
        return True

    def _snapshot(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """A CPU copy of the model's weights that reuses the previous copy of each frozen parameter (requires_grad
        off, same object, same in-place version), so a frozen pretrained backbone is copied once rather than at
        every new best epoch. Buffers are always copied: batch norm updates its statistics without a version bump."""
        previous = getattr(self, "_copied", {})
        out, copied = {}, {}
        for k, v in model.state_dict(keep_vars=True).items():
            old = previous.get(k)
            frozen = isinstance(v, torch.nn.Parameter) and not v.requires_grad
            if frozen and old is not None and old[0] is v and old[1] == v._version:
                out[k] = old[2]
            else:
                out[k] = v.detach().to("cpu", copy=True)
            copied[k] = (v, v._version, out[k])
        self._copied = copied
        return out


class History(L.Callback):
    """One row per epoch: epoch, seconds, learning rate and every logged metric."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self._start = 0.0

    def state_dict(self) -> dict[str, object]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = [dict(r) for r in state_dict["rows"]]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs after the epoch's validation, so train and validation metrics are both final here.
        row = {
            "epoch": trainer.current_epoch,
            "seconds": round(time.perf_counter() - self._start, 3),
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
        }
        for k in sorted(trainer.callback_metrics):
            val = _value(trainer.callback_metrics, k)
            if val is not None:
                row[k] = val
        self.rows.append(row)


class TimeLimit(L.Callback):
    """Stops training at the first training step that ends ``seconds`` or more after training started (training and
    its validation passes; decoding the table comes before and does not count). Lightning then validates the
    partial epoch and :class:`BestState` keeps the best epoch, so a run overshoots by at most one step and one
    validation pass."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.reached = False
        self._start = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a spawned fit's caller learns it from the metrics Lightning ships back (as BestState's choice)
        trainer.callback_metrics[_TIME_LIMITED] = torch.tensor(float(self.reached), dtype=torch.float64)

    def was_reached(self, metrics: dict) -> bool:
        """Whether the limit ended training, here or in the workers of a spawned fit (their shipped ``metrics``)."""
        return self.reached or bool(_value(metrics, _TIME_LIMITED))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        if self.reached:
            return
        over = time.perf_counter() - self._start >= self.seconds
        # Under DDP every rank must stop after the same step (the others would wait for it forever): one rank past
        # the limit stops them all. One process: the decision as it is.
        if not trainer.strategy.reduce_boolean_decision(over, all=False):
            return
        self.reached = trainer.should_stop = True
        log.info(
            "time limit of %g s reached in epoch %d (step %d of %d); validating it and keeping the best epoch",
            self.seconds,
            trainer.current_epoch + 1,
            trainer.fit_loop.epoch_loop.batch_progress.current.completed + 1,
            trainer.num_training_batches,
        )


class EpochLog(L.Callback):
    """Plain progress lines through the ``polymodal`` logger, for output that is not a terminal (where Lightning's
    live bar would show nothing until the end): one line per epoch (seconds, train loss, the monitored validation
    metric), an estimate of the whole training's time after the first epoch, and a line every ``every`` seconds
    inside a long epoch."""

    def __init__(self, monitor: str, max_epochs: int, time_limit: float | None = None, every: float = 30.0) -> None:
        self.monitor, self.max_epochs, self.time_limit, self.every = monitor, max_epochs, time_limit, every
        self._epoch_start = self._last = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = self._last = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        now = time.perf_counter()
        if now - self._last < self.every:
            return
        self._last = now
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        log.info(
            "epoch %d/%d: step %d/%d, %.0f s",
            trainer.current_epoch + 1,
            self.max_epochs,
            done,
            trainer.num_training_batches,
            now - self._epoch_start,
        )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs after the epoch's validation (as in History), so the validation metric is this epoch's.
        seconds = time.perf_counter() - self._epoch_start
        m = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch + 1}/{self.max_epochs}: {seconds:.1f} s"]
        steps = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        if steps < trainer.num_training_batches:  # stopped inside the epoch (the time limit)
            parts[0] += f" ({steps} of {trainer.num_training_batches} steps)"
        for key, name in (("train_loss", "train loss"), (self.monitor, self.monitor.replace("_", " ", 1))):
            if (v := _value(m, key)) is not None:
                parts.append(f"{name} {v:.4f}")
        log.info(", ".join(parts))
        if trainer.current_epoch == 0 and self.max_epochs > 1 and not trainer.should_stop:
            total = seconds * self.max_epochs
            if self.time_limit is not None and total > self.time_limit:
                log.info(
                    "estimated training time: %g s, the time limit (%d epochs would take about %.0f s)",
                    self.time_limit,
                    self.max_epochs,
                    total,
                )
            else:
                log.info(
                    "estimated training time: about %.0f s for %d epochs (early stopping may end it sooner)",
                    total,
                    self.max_epochs,
                )


class ShareCores(L.Callback):
    """Fewer torch threads while other processes keep the cores busy (:class:`polymodal.cpu_share.ThreadGovernor`),
    polled before every training and validation step; the ceiling is the count in force when training starts."""

    def __init__(self) -> None:
        self.governor: ThreadGovernor | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.governor = ThreadGovernor(torch.get_num_threads(), available_cores())

    def _poll(self) -> None:
        if self.governor is not None and (n := self.governor.poll()) is not None:
            log.debug("sharing the cores: %d torch thread(s) now", n)

    def on_train_batch_start(self, *args: object, **kwargs: object) -> None:
        self._poll()

    def on_validation_batch_start(self, *args: object, **kwargs: object) -> None:
        self._poll()
