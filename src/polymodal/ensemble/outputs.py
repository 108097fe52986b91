"""Outputs of a module over a loader, and of each member of an ensemble (for selection and the leaderboard)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import ConfigError
from .model import EnsembleModel

if TYPE_CHECKING:
    from ..tasks import Task


def _device(module: nn.Module) -> torch.device:
    # a classical member may hold buffers only
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def outputs_of(module: nn.Module, loader: Any) -> np.ndarray:
    """``module(inputs, masks)`` for every row of ``loader``, in order, as float32 (eval mode)."""
    module.eval()
    device = _device(module)
    parts = []
    for raw in loader:
        batch = raw.to(device)
        parts.append(module(batch.inputs, batch.masks).float().cpu())
    return torch.cat(parts).numpy() if parts else np.zeros((0, 0), np.float32)


@torch.no_grad()
def member_outputs(model: nn.Module, loader: Any) -> dict[str, np.ndarray]:
    """Each member's outputs for every row of ``loader`` (one pass over the batches); ``model`` must be an
    :class:`EnsembleModel`."""
    if not isinstance(model, EnsembleModel):
        raise ConfigError(f"member outputs are for ensembles (the quality preset), not a {type(model).__name__}")
    model.eval()
    device = _device(model)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in model.members}
    for raw in loader:
        batch = raw.to(device)
        for name, out in model.member_outputs(batch.inputs, batch.masks).items():
            parts[name].append(out.float().cpu())
    return {name: torch.cat(p).numpy() for name, p in parts.items() if p}


def member_metrics(model: nn.Module, loader: Any, task: Task, labels: pd.Series) -> dict[str, dict[str, float]]:
    """The task's metrics of each member on the rows of ``loader`` (``labels`` in the same order)."""
    return {name: task.metrics(labels, out) for name, out in member_outputs(model, loader).items()}
