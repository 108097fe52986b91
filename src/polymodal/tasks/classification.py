"""Binary and multi-class classification (softmax over classes; optional balanced class weights)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from ..errors import DataError
from ..metrics.classification import classification_metrics, label_key, softmax
from ..registry import TASKS, register
from .base import Task


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v if isinstance(v, (int, str, bool)) else str(v)


@register(TASKS, "multiclass")
class ClassificationTask(Task):
    problem_type = "multiclass"
    target_dtype = torch.long
    monitor = ("accuracy", "max")
    stratify = True

    def fit_target(self, y: pd.Series) -> None:
        values: dict[str, Any] = {}
        for v in y.dropna().tolist():
            values.setdefault(label_key(v), _jsonable(v))
        if len(values) < 2:
            raise DataError(f"the label has {len(values)} distinct value(s); classification needs at least 2")
        self.classes = [values[k] for k in sorted(values, key=_sort_key)]
        counts = y.dropna().map(label_key).value_counts()
        self.class_counts = [int(counts.get(label_key(c), 0)) for c in self.classes]
        self._build()

    def _build(self) -> None:
        self._index = {label_key(c): i for i, c in enumerate(self.classes)}
        self._weights = None
        if self.config.class_weights == "balanced":
            counts = np.maximum(np.asarray(self.class_counts, dtype=np.float64), 1)
            self._weights = torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32)

    def encode_target(self, y: pd.Series) -> np.ndarray:
        """Class indices; labels not seen in training become -1."""
        return np.array([self._index.get(label_key(v), -1) for v in y.tolist()], dtype=np.int64)

    @property
    def n_outputs(self) -> int:
        return len(self.classes)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        w = None if self._weights is None else self._weights.to(outputs.device)
        return torch.nn.functional.cross_entropy(outputs.float(), target, weight=w)

    def predict_proba(self, outputs: np.ndarray) -> np.ndarray:
        return softmax(outputs.astype(np.float64))

    def postprocess(self, outputs: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[outputs.argmax(axis=1)]

    def metrics(self, y_true: pd.Series, outputs: np.ndarray) -> dict[str, float]:
        return classification_metrics(self.encode_target(y_true), self.predict_proba(outputs))

    def state(self) -> dict[str, Any]:
        return {"classes": self.classes, "class_counts": self.class_counts}

    def set_state(self, state: dict[str, Any]) -> None:
        self.classes, self.class_counts = state["classes"], state["class_counts"]
        self._build()


def _sort_key(k: str) -> tuple[int, float | str]:
    try:
        return (0, float(k))
    except ValueError:
        return (1, k)


@register(TASKS, "binary")
class BinaryClassificationTask(ClassificationTask):
    """Two classes; adds ROC-AUC (positive class = the second in sorted order)."""

    problem_type = "binary"
