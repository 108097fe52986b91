"""Binary and multi-class classification: softmax over classes; cross-entropy or focal loss, optional balanced class
weights; after training, probabilities calibrated and (binary) a decision threshold tuned on validation."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..config import PolymodalConfig, TaskConfig
from ..errors import ConfigError, DataError
from ..metrics.classification import classification_metrics, label_key, softmax
from ..registry import TASKS, Registry, register
from .base import Task
from .calibration import CALIBRATORS, Calibrator, NoCalibration, rule_value, tune_threshold

log = logging.getLogger("polymodal")

# A classification loss: (logits [B, K], class indices [B], class weights [K] or None, task config) → scalar.
LOSSES: Registry[Any] = Registry("classification loss")


@register(LOSSES, "cross_entropy")
def cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, cfg: TaskConfig
) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits, target, weight=weight)


@register(LOSSES, "focal")
def focal(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, cfg: TaskConfig) -> torch.Tensor:
    """Focal loss (Lin et al. 2017): cross-entropy times (1 - p_true)^gamma, so rows already predicted well weigh
    little; with class weights, the weighted mean as cross_entropy takes it (gamma 0 gives cross-entropy)."""
    keep = target >= 0  # a row without a known class (index -1) carries no loss
    logits, target = logits[keep], target[keep]
    logp = torch.log_softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
    loss = -((1 - logp.exp()).clamp_min(0) ** cfg.focal_gamma) * logp
    w = torch.ones_like(loss) if weight is None else weight[target]
    return (w * loss).sum() / w.sum().clamp_min(1e-12)


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

    def resolve(self, config: PolymodalConfig, kinds: set[str]) -> None:
        if self.config.threshold != "argmax" and self.problem_type != "binary":
            raise ConfigError(
                f"task.threshold: {self.config.threshold} tunes a decision threshold for binary classification; "
                f"this is a {self.problem_type} task: use threshold: argmax"
            )

    def _build(self) -> None:
        self._index = {label_key(c): i for i, c in enumerate(self.classes)}
        self._weights = None
        if self.config.class_weights == "balanced":
            counts = np.maximum(np.asarray(self.class_counts, dtype=np.float64), 1)
            self._weights = torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32)
        # Learned by `calibrate` (or read back by `set_state`); until then the logits are used as they are.
        self._calibrator: Calibrator = NoCalibration()
        self.calibration: dict[str, Any] | None = None
        self.threshold: dict[str, Any] | None = None

    def encode_target(self, y: pd.Series) -> np.ndarray:
        """Class indices; labels not seen in training become -1."""
        return np.array([self._index.get(label_key(v), -1) for v in y.tolist()], dtype=np.int64)

    @property
    def n_outputs(self) -> int:
        return len(self.classes)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        w = None if self._weights is None else self._weights.to(outputs.device)
        return LOSSES.get(self.config.loss)(outputs.float(), target, w, self.config)

    def calibrated(self, outputs: np.ndarray) -> np.ndarray:
        """The network's logits after the calibration learned on validation (unchanged when there is none)."""
        return self._calibrator.apply(np.asarray(outputs, dtype=np.float64))

    def predict_proba(self, outputs: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """Class probabilities [N, K]: softmax of the calibrated logits (``calibrated=False``: of the raw ones)."""
        logits = self.calibrated(outputs) if calibrated else np.asarray(outputs, dtype=np.float64)
        return softmax(logits)

    def predict_index(self, proba: np.ndarray) -> np.ndarray:
        """Predicted class indices from probabilities: the most probable class, or (binary with a tuned
        threshold) the positive class when its probability reaches the threshold."""
        if self.threshold is None:
            return proba.argmax(axis=1)
        return (proba[:, 1] >= self.threshold["value"]).astype(np.int64)

    def postprocess(self, outputs: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[self.predict_index(self.predict_proba(outputs))]

    def metrics(self, y_true: pd.Series, outputs: np.ndarray) -> dict[str, float]:
        proba = self.predict_proba(outputs)
        return classification_metrics(self.encode_target(y_true), proba, self.predict_index(proba))

    def calibrate(self, outputs: Any, labels: pd.Series) -> None:
        """Fit ``task.calibration`` on the validation logits, then (binary, ``task.threshold`` f1 or cost) the
        decision threshold on the calibrated probabilities; records validation ECE and log-loss before/after."""
        self._calibrator, self.calibration, self.threshold = NoCalibration(), None, None
        idx = self.encode_target(labels)
        seen = idx >= 0  # a label unseen in training has no logit to calibrate towards
        logits, idx = np.asarray(outputs, dtype=np.float64)[seen], idx[seen]
        if len(idx) == 0:
            log.warning("no validation row has a label seen in training: the probabilities are left uncalibrated")
            return
        calibrator = CALIBRATORS.build(self.config.calibration)
        calibrator.fit(logits, idx)
        before = classification_metrics(idx, softmax(logits))
        self._calibrator = calibrator
        after = classification_metrics(idx, self.predict_proba(logits))
        self.calibration = {
            "method": self.config.calibration,
            **calibrator.params(),
            "rows": int(len(idx)),
            "val_ece_before": before["ece"],
            "val_ece_after": after["ece"],
            "val_log_loss_before": before["log_loss"],
            "val_log_loss_after": after["log_loss"],
        }
        if self.config.threshold != "argmax":
            proba = self.predict_proba(logits)
            value = tune_threshold(proba[:, 1], idx == 1, self.config.threshold, self.config.costs)
            self.threshold = {"rule": self.config.threshold, "value": value}
            if self.config.threshold == "cost":
                self.threshold["costs"] = self.config.costs.model_dump()
            argmax_pos = proba.argmax(axis=1) == 1
            self.threshold["val_argmax"] = rule_value(argmax_pos, idx == 1, self.config.threshold, self.config.costs)
            self.threshold["val_tuned"] = rule_value(
                proba[:, 1] >= value, idx == 1, self.config.threshold, self.config.costs
            )
        log.info(
            "calibration (%s) on %d validation rows: ECE %.4f → %.4f, log-loss %.4f → %.4f%s",
            self.config.calibration,
            len(idx),
            before["ece"],
            after["ece"],
            before["log_loss"],
            after["log_loss"],
            "" if self.threshold is None else f"; threshold {self.threshold['value']:.4f} ({self.config.threshold})",
        )

    def calibration_summary(self) -> dict[str, Any] | None:
        if self.calibration is None and self.threshold is None:
            return None
        return {"calibration": self.calibration, "threshold": self.threshold}

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"classes": self.classes, "class_counts": self.class_counts}
        if self.calibration is not None:
            state["calibration"] = self.calibration
        if self.threshold is not None:
            state["threshold"] = self.threshold
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        self.classes, self.class_counts = state["classes"], state["class_counts"]
        self._build()
        # A run saved before calibration existed has neither key: its probabilities stay uncalibrated.
        self.calibration, self.threshold = state.get("calibration"), state.get("threshold")
        if self.calibration is not None:
            self._calibrator = CALIBRATORS.build(self.calibration["method"])
            self._calibrator.set_params(self.calibration)


def _sort_key(k: str) -> tuple[int, float | str]:
    try:
        return (0, float(k))
    except ValueError:
        return (1, k)


@register(TASKS, "binary")
class BinaryClassificationTask(ClassificationTask):
    """Two classes; adds ROC-AUC (positive class = the second in sorted order)."""

    problem_type = "binary"
