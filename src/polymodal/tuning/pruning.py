"""The Lightning callback that feeds a trial's validation scores to Optuna's pruner and stops a pruned trial.

As optuna-integration's ``PyTorchLightningPruningCallback`` does, it reports the monitored validation metric after
each validation epoch; unlike it, it does not raise ``TrialPruned`` inside the training loop: it sets
``trainer.should_stop`` and records the epoch, so that the fit ends normally (its best epoch restored, the time
accounted for) and the tuner marks the trial pruned after ``fit_pipeline`` returns.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

__all__ = ["PruningCallback"]


class PruningCallback(L.Callback):
    """Report ``monitor`` (e.g. ``val_accuracy``) to ``trial`` after every validation epoch; stop when pruned.

    ``trial``: an ``optuna.Trial`` (anything with ``report(value, step)`` and ``should_prune()``).
    After the fit, :attr:`pruned_at` is the epoch (0-based) at which the pruner stopped the trial, or None;
    :attr:`reported` lists every (epoch, value) reported.
    """

    def __init__(self, trial: Any, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor
        self.pruned_at: int | None = None
        self.reported: list[tuple[int, float]] = []

    @property
    def pruned(self) -> bool:
        return self.pruned_at is not None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        raw = trainer.callback_metrics.get(self.monitor)
        if raw is None:
            return
        value = float(raw.item() if isinstance(raw, torch.Tensor) else raw)
        epoch = trainer.current_epoch
        # The time limit validates a partial epoch: a second report for one step would be ignored by Optuna.
        if not math.isfinite(value) or (self.reported and self.reported[-1][0] == epoch):
            return
        self.trial.report(value, step=epoch)
        self.reported.append((epoch, value))
        if self.pruned_at is None and self.trial.should_prune():
            self.pruned_at = epoch
            trainer.should_stop = True
