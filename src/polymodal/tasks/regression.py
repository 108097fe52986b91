"""Regression on a standardised target (MSE); predictions are mapped back to the label's scale."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from ..data.processors import finite_mean_std
from ..errors import DataError, RowIssue, row_label
from ..metrics.regression import regression_metrics
from ..registry import TASKS, register
from .base import Task


@register(TASKS, "regression")
class RegressionTask(Task):
    problem_type = "regression"
    target_dtype = torch.float32
    monitor = ("rmse", "min")

    def fit_target(self, y: pd.Series) -> None:
        v = self._numeric(y)
        self.mean, self.std = finite_mean_std(v[np.isfinite(v)])

    def check_target(self, y: pd.Series) -> None:
        self._numeric(y)

    @staticmethod
    def _numeric(y: pd.Series) -> np.ndarray:
        """The label as float64; NaN where it is missing. A value that is not a number, or is infinite (which no
        loss or metric can use), is a :class:`DataError` naming the rows."""
        v = pd.to_numeric(y, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(np.isnan(v) & y.notna().to_numpy())
        if len(bad):
            raise DataError(
                f"the label of a regression must be numeric; {len(bad)} rows are not "
                f"(first at row {row_label(y.index[bad[0]])}: {y.iloc[bad[0]]!r})"
            )
        inf = np.flatnonzero(np.isinf(v))
        if len(inf):
            column = str(y.name)
            raise DataError(
                f"the label of a regression must be finite; {len(inf)} rows hold an infinite value:",
                [RowIssue(row_label(y.index[i]), column, f"{y.iloc[i]} is not a finite number") for i in inf.tolist()],
                hint="Fix these labels or leave them empty (rows with an empty label are left out).",
            )
        return v

    def encode_target(self, y: pd.Series) -> np.ndarray:
        return ((self._numeric(y) - self.mean) / self.std).astype(np.float32)

    @property
    def n_outputs(self) -> int:
        return 1

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(outputs.float().squeeze(1), target)

    def postprocess(self, outputs: np.ndarray) -> np.ndarray:
        return outputs[:, 0].astype(np.float64) * self.std + self.mean

    def metrics(self, y_true: pd.Series, outputs: np.ndarray) -> dict[str, float]:
        true, pred = self._numeric(y_true), self.postprocess(outputs)
        return regression_metrics(true, pred)

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def set_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = state["mean"], state["std"]
