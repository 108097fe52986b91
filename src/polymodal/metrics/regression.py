"""Regression metrics on the label's own scale."""

from __future__ import annotations

import numpy as np


def regression_metrics(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R² (NaN for a single row)."""
    from sklearn import metrics as skm  # imported when scoring: the CLI checks a config without it

    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(true, pred))),
        "mae": float(skm.mean_absolute_error(true, pred)),
        "r2": float(skm.r2_score(true, pred)) if len(true) > 1 else float("nan"),
    }
