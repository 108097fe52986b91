"""The LightningModule: the model and the task's loss/metrics; the engineering lives in the Trainer."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch

from ..config import TrainingConfig
from ..data.dataset import Batch
from ..model import MultimodalModel
from ..tasks import Task
from .distributed import gather_outputs
from .modality_dropout import drop_modalities


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight decay except on biases, norms and position tables, and a learning rate
    per multiplier from ``model.lr_scales()`` (pretrained backbones: lower, decaying layer by layer).

    Frozen parameters are left out. Without multipliers these are the two groups every model always had:
    decayed and not decayed, both at ``lr``.
    """
    # (torch types a module's attributes as Tensor | Module; lr_scales is a method where present)
    scales = model.lr_scales() if hasattr(model, "lr_scales") else {}  # type: ignore[operator]
    groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {(1.0, False): [], (1.0, True): []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name.endswith(".pos")
        groups.setdefault((scales.get(name, 1.0), no_decay), []).append(p)
    return [
        {"params": ps, "lr": lr * scale, "weight_decay": 0.0 if no_decay else weight_decay}
        for (scale, no_decay), ps in groups.items()
        if ps or scale == 1.0
    ]


class MultimodalModule(L.LightningModule):
    def __init__(
        self, model: MultimodalModel, task: Task, cfg: TrainingConfig, total_steps: int, val_labels: pd.Series | None
    ):
        super().__init__()
        self.model, self.task, self.cfg = model, task, cfg
        self.total_steps = max(1, total_steps)
        self.val_labels = val_labels
        self._val_outputs: list[Any] = []
        self._val_rows: list[torch.Tensor] = []

    def forward(self, batch: Batch) -> torch.Tensor:
        # the model picks its inputs: a generation model also reads the target (teacher forcing)
        return self.model.outputs(batch)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        batch = drop_modalities(batch, self.cfg.modality_dropout)
        assert batch.target is not None, "training batches carry their targets"
        loss = self.model.loss(self(batch), batch.target, self.task)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch), sync_dist=True)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        out = self(batch)
        assert batch.target is not None, "validation batches carry their targets"
        loss = self.task.loss(out, batch.target)
        # (under DDP: the mean over the ranks, each weighted by its batches; the rows a sampler repeats count twice)
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch), sync_dist=True)
        self._val_outputs.append(self.task.validation_outputs(self.model, batch, out))
        if batch.rows is not None:
            self._val_rows.append(batch.rows.cpu())

    def on_validation_epoch_end(self) -> None:
        if self.val_labels is None:
            return
        parts, rows = list(self._val_outputs), list(self._val_rows)
        self._val_outputs.clear()
        self._val_rows.clear()
        if len(rows) != len(parts):  # batches without positions (a loader not made by make_loader): one process
            outputs = self.task.collect_outputs(parts) if parts else None
        else:  # every rank's outputs, each row once and in order (a collective call under DDP)
            outputs = gather_outputs(self.task, parts, rows, len(self.val_labels))
        if outputs is None or len(outputs) != len(self.val_labels):  # the sanity check runs a few batches only
            return
        for name, value in self.task.metrics(self.val_labels, outputs).items():
            if np.isfinite(value):
                # the same value on every rank (computed from the same gathered outputs); synced so that
                # Lightning does not warn, and so that a rank never disagrees on the best epoch
                self.log(f"val_{name}", value, sync_dist=True)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(
            param_groups(self.model, self.cfg.learning_rate, self.cfg.weight_decay), lr=self.cfg.learning_rate
        )
        warmup = max(1, int(self.cfg.warmup_fraction * self.total_steps))

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, self.total_steps - warmup))
            return 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
