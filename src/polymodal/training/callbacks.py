"""Callbacks: keep the best weights in memory (no pickled checkpoint files) and record per-epoch metrics."""

from __future__ import annotations

import math
import time
from typing import cast

import lightning as L
import torch


def _value(metrics: dict, key: str) -> float | None:
    v = metrics.get(key)
    if v is None:
        return None
    v = float(v.item() if isinstance(v, torch.Tensor) else v)
    return v if math.isfinite(v) else None


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
