"""What a classifier learns on the validation split after training: a calibration map of its logits (temperature
or vector scaling, Guo et al. 2017) and, for two classes, a decision threshold on the positive class's probability.

Both are fitted deterministically (the same logits give the same parameters) and saved as plain JSON numbers.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch

from ..config import CostsConfig
from ..registry import Registry, register


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll(logits: np.ndarray, idx: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes ``idx`` under softmax(``logits``)."""
    return float(-log_softmax(logits)[np.arange(len(idx)), idx].mean())


class Calibrator(ABC):
    """A map of logits fitted on validation rows; ``apply`` must keep the shape."""

    registry_name: str

    @abstractmethod
    def fit(self, logits: np.ndarray, idx: np.ndarray) -> None:
        """Learn from float64 ``logits`` [N, K] and their true class indices ``idx`` [N] (all in 0..K-1)."""

    @abstractmethod
    def apply(self, logits: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The fitted parameters as JSON values."""

    @abstractmethod
    def set_params(self, params: dict[str, Any]) -> None: ...


CALIBRATORS: Registry[Calibrator] = Registry("calibration method")


@register(CALIBRATORS, "none")
class NoCalibration(Calibrator):
    """The logits as the network gives them."""

    def fit(self, logits: np.ndarray, idx: np.ndarray) -> None:
        pass

    def apply(self, logits: np.ndarray) -> np.ndarray:
        return logits

    def params(self) -> dict[str, Any]:
        return {}

    def set_params(self, params: dict[str, Any]) -> None:
        pass


@register(CALIBRATORS, "temperature")
class Temperature(Calibrator):
    """Logits divided by one temperature T > 0: the class ranking, hence every argmax prediction, is unchanged."""

    LOW, HIGH = 1e-2, 1e2  # search range of T

    def __init__(self) -> None:
        self.temperature = 1.0

    def fit(self, logits: np.ndarray, idx: np.ndarray) -> None:
        # The NLL is convex in 1/T (a log-sum-exp of terms linear in it), so unimodal in log T: a golden-section
        # search finds its minimum deterministically, with no step size to tune. A standard normal prior on log T
        # (its weight 1/N falls with the rows) keeps a small validation split that the network gets all right from
        # driving T towards 0, which would make every later mistake a confident one.
        n = len(idx)

        def loss(log_t: float) -> float:
            return nll(logits / math.exp(log_t), idx) + log_t**2 / (2 * n)

        a, b = math.log(self.LOW), math.log(self.HIGH)
        g = (math.sqrt(5) - 1) / 2
        c, d = b - g * (b - a), a + g * (b - a)
        fc, fd = loss(c), loss(d)
        for _ in range(80):  # the bracket shrinks by 0.618 per step: 80 steps leave ~1e-16 of log T
            if fc <= fd:
                b, d, fd = d, c, fc
                c = b - g * (b - a)
                fc = loss(c)
            else:
                a, c, fc = c, d, fd
                d = a + g * (b - a)
                fd = loss(d)
        best = (a + b) / 2
        # T = 1 (no change) unless the search found better: a calibration never worsens the objective.
        self.temperature = math.exp(best) if loss(best) < loss(0.0) else 1.0

    def apply(self, logits: np.ndarray) -> np.ndarray:
        return logits / self.temperature

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def set_params(self, params: dict[str, Any]) -> None:
        self.temperature = float(params["temperature"])


@register(CALIBRATORS, "vector")
class VectorScaling(Calibrator):
    """Logits scaled and shifted per class (``a * z + b``), started from temperature scaling; can change
    predictions."""

    def __init__(self) -> None:
        self.scale: np.ndarray | None = None
        self.bias: np.ndarray | None = None

    def fit(self, logits: np.ndarray, idx: np.ndarray) -> None:
        t = Temperature()
        t.fit(logits, idx)
        k = logits.shape[1]
        z = torch.as_tensor(logits, dtype=torch.float64)
        y = torch.as_tensor(idx, dtype=torch.long)
        a = torch.full((k,), 1 / t.temperature, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([a, b], lr=1, max_iter=200, tolerance_change=1e-12, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            # A ridge towards the identity, its weight 1/N falling with the rows (as the temperature's prior), keeps
            # the optimum finite when a class is separable on validation.
            ridge = (b.square().sum() + (a - 1).square().sum()) / (2 * len(idx))
            loss = torch.nn.functional.cross_entropy(z * a + b, y) + ridge
            loss.backward()
            return loss

        opt.step(closure)
        scale, bias = a.detach().numpy(), b.detach().numpy()
        if nll(logits * scale + bias, idx) < nll(t.apply(logits), idx):
            self.scale, self.bias = scale, bias
        else:  # never worse than the temperature it started from
            self.scale, self.bias = np.full(k, 1 / t.temperature), np.zeros(k)

    def apply(self, logits: np.ndarray) -> np.ndarray:
        if self.scale is None or self.bias is None:
            return logits
        return logits * self.scale + self.bias

    def params(self) -> dict[str, Any]:
        assert self.scale is not None and self.bias is not None, "fit or set_params first"
        return {"scale": [float(v) for v in self.scale], "bias": [float(v) for v in self.bias]}

    def set_params(self, params: dict[str, Any]) -> None:
        self.scale = np.asarray(params["scale"], dtype=np.float64)
        self.bias = np.asarray(params["bias"], dtype=np.float64)


# --------------------------------------------------------------------------------------------- thresholds
# A rule scores the confusion counts of each candidate threshold (arrays: one entry per candidate); the
# threshold with the highest score wins.
THRESHOLD_RULES: Registry[Any] = Registry("threshold rule")


@register(THRESHOLD_RULES, "f1")
def f1_score(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, costs: CostsConfig) -> np.ndarray:
    """F1 of the positive class."""
    return np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp, dtype=np.float64), where=(2 * tp + fp + fn) > 0)


@register(THRESHOLD_RULES, "cost")
def negative_cost(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, costs: CostsConfig) -> np.ndarray:
    """Minus the total cost of the mistakes."""
    return -(costs.false_positive * fp + costs.false_negative * fn)


def tune_threshold(p: np.ndarray, positive: np.ndarray, rule: str, costs: CostsConfig) -> float:
    """The threshold on the positive class's probability ``p`` (a row is positive when ``p >= threshold``) that
    scores best under ``rule`` on rows whose truth is ``positive``. Candidates lie midway between consecutive
    distinct probabilities (plus 0 and just above 1); ties go to the candidate closest to 0.5, the argmax rule."""
    score = THRESHOLD_RULES.get(rule)
    values = np.unique(p)  # ascending
    candidates = np.concatenate([[0.0], (values[:-1] + values[1:]) / 2, [np.nextafter(1.0, 2.0)]])
    order = np.argsort(-p, kind="stable")
    pos_sorted = positive[order].astype(np.float64)
    # Rows predicted positive at a candidate t: those with p >= t; count them with a search in the sorted scores.
    n_pred = len(p) - np.searchsorted(np.sort(p), candidates, side="left")
    cum_tp = np.concatenate([[0.0], np.cumsum(pos_sorted)])
    tp = cum_tp[n_pred]
    fp = n_pred - tp
    fn = positive.sum() - tp
    s = score(tp, fp, fn, costs)
    best = np.flatnonzero(s >= s.max() - 1e-12)
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def rule_value(predicted: np.ndarray, positive: np.ndarray, rule: str, costs: CostsConfig) -> float:
    """What ``rule`` measures of boolean predictions: the positive class's F1 (f1) or the mean cost per row (cost)."""
    tp = np.array([float((predicted & positive).sum())])
    fp = np.array([float((predicted & ~positive).sum())])
    fn = np.array([float((~predicted & positive).sum())])
    value = float(THRESHOLD_RULES.get(rule)(tp, fp, fn, costs)[0])
    return -value / max(len(positive), 1) if rule == "cost" else value
