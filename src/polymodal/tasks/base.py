"""The task contract: ``head(fused) → outputs``, ``loss``, ``metrics``, ``postprocess``; plus target encoding."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..config import PolymodalConfig, TaskConfig
from ..registry import TASKS


class Task(ABC):
    """A prediction problem. All state comes from ``fit_target`` on the training labels and is saved as JSON."""

    problem_type: ClassVar[str]
    target_dtype: ClassVar[torch.dtype]
    monitor: tuple[str, str]  # (metric name, "max" | "min") used for early stopping
    architecture: ClassVar[str] = "fused"  # how the network is assembled (registry.ARCHITECTURES)
    stratify: ClassVar[bool] = False  # split train/validation stratified by the encoded target

    def __init__(self, config: TaskConfig):
        self.config = config

    def resolve(self, config: PolymodalConfig, kinds: set[str]) -> None:
        """Fill in ``config`` values that depend on the rest of it and on the input ``kinds`` (before
        ``fit_target``); the run directory keeps the resolved values."""

    @abstractmethod
    def fit_target(self, y: pd.Series) -> None: ...

    @abstractmethod
    def encode_target(self, y: pd.Series) -> np.ndarray: ...

    def check_target(self, y: pd.Series) -> None:
        """Raise a :class:`polymodal.errors.DataError` naming the rows of the non-empty labels ``y`` (indexed like
        the table) that this task cannot use; called before a labelled table is decoded. Default: any value goes
        (an unseen class is handled by the metrics)."""

    @property
    @abstractmethod
    def n_outputs(self) -> int: ...

    def head(self, dim: int) -> nn.Module:
        return nn.Linear(dim, self.n_outputs)

    @abstractmethod
    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def postprocess(self, outputs: Any) -> np.ndarray:
        """Raw head outputs → predictions in the label's own values."""

    @abstractmethod
    def metrics(self, y_true: pd.Series, outputs: Any) -> dict[str, float]:
        """Metrics of raw outputs against labels in their own values."""

    # --- outputs of a trained model: per batch, then gathered (generation decodes here) -----------------------
    def predict_batch(self, model: nn.Module, batch: Any) -> Any:
        """The outputs of one batch at predict/evaluate time (model in eval mode, no gradients)."""
        return model(batch.inputs, batch.masks).float().cpu()

    def validation_outputs(self, model: nn.Module, batch: Any, outputs: torch.Tensor) -> Any:
        """What validation metrics are computed from, given the batch's training-mode ``outputs``."""
        return outputs.detach().float().cpu()

    def collect_outputs(self, parts: list[Any]) -> Any:
        """Gather the per-batch outputs of :meth:`predict_batch` / :meth:`validation_outputs`, in row order."""
        return torch.cat(parts).numpy() if parts else np.zeros((0, 0), np.float32)

    def select_outputs(self, outputs: Any, rows: np.ndarray) -> Any:
        """The ``rows`` (positions) of outputs gathered by :meth:`collect_outputs`, in that order (DDP validation
        puts the ranks' rows back in order with it)."""
        return outputs[rows]

    # --- learned after training, from the validation split ------------------------------------------------
    def calibrate(self, outputs: Any, labels: pd.Series) -> None:
        """Learn post-processing from the trained network's ``outputs`` on the validation rows and their
        ``labels`` (temperature, decision thresholds); :meth:`state` must then include it. Default: nothing.
        Called once by :func:`polymodal.fitting.fit_pipeline` after training (and by ensembles on their
        combined outputs)."""

    def calibration_summary(self) -> dict[str, Any] | None:
        """What :meth:`calibrate` learned and measured on validation, as JSON values (``Predictor.fit_summary``
        and the report show it); None when it learned nothing."""
        return None

    @abstractmethod
    def state(self) -> dict[str, Any]: ...

    @abstractmethod
    def set_state(self, state: dict[str, Any]) -> None: ...


def build_task(problem_type: str, config: TaskConfig) -> Task:
    return TASKS.get(problem_type)(config)
