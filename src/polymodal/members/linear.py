"""Linear models on TF-IDF text and one-hot/standardised tabular features: logistic regression (classification) or
ridge regression (regression), fitted by scikit-learn with the regularisation chosen on the validation rows, the
weights then copied into an ``nn.Linear`` (saved as tensors, exported with the rest of the graph)."""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..errors import DataError
from .base import MEMBERS
from .classical import ClassicalMember
from .features import FeatureSet, column_importance

if TYPE_CHECKING:
    from ..data.dataset import Prepared
    from ..data.processors import Processor
    from ..schema import Modality
    from ..tasks import Task

#: the logit of a class with no training row: far below any learned one, so its probability is ~0
ABSENT_CLASS_LOGIT = -30.0


@MEMBERS.register("linear")
class LinearMember(ClassicalMember):
    """Logistic regression (classification) or ridge regression (regression) on TF-IDF of every kept token id of the
    text columns plus the tabular columns (standardised numbers with missing flags, one-hot categories); the inverse
    regularisation ``C`` / ``alpha`` is chosen on the validation rows (log loss / squared error)."""

    name = "linear"
    estimator: Any  # the scikit-learn model after fit (not saved)
    c_grid: ClassVar[tuple[float, ...]] = (0.25, 1.0, 4.0, 16.0, 64.0)
    alpha_grid: ClassVar[tuple[float, ...]] = (0.1, 1.0, 10.0, 100.0)

    def __init__(self, features: FeatureSet, n_outputs: int, info: dict[str, Any]) -> None:
        super().__init__()
        self.features, self.n_outputs, self.info = features, n_outputs, info
        self.linear = nn.Linear(len(features.columns), n_outputs)

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.linear(self.features(inputs, masks))

    @classmethod
    def fit(
        cls,
        train: Prepared,
        val: Prepared,
        modalities: list[Modality],
        processors: dict[str, Processor],
        task: Task,
        *,
        seed: int = 0,
        time_limit: float | None = None,
    ) -> LinearMember:
        """Fit one model per grid value on ``train``, keep the best on ``val`` (the first when ``val`` has no
        usable row); grid values left when ``time_limit`` seconds have passed are skipped."""
        cls.check_task(cls.name, task)
        start = time.perf_counter()
        features = FeatureSet.fitted(cls.used(modalities), processors, train, "linear", None)
        if not features.columns:
            raise DataError(f"member '{cls.name}': the columns it reads give no features (empty text?)")
        y, keep = cls.targets(train, task)
        x = features.matrix(train, processors)[keep]
        yv, vkeep = cls.targets(val, task)
        xv = features.matrix(val, processors)[vkeep]
        regression = task.problem_type == "regression"
        if not regression and len(np.unique(y)) < 2:
            raise DataError(f"member '{cls.name}' needs at least 2 classes among the training rows")
        grid = cls.alpha_grid if regression else cls.c_grid
        best: tuple[float, float, np.ndarray, np.ndarray, Any] | None = None
        for value in grid:
            if best is not None and time_limit is not None and time.perf_counter() - start > time_limit:
                break
            est = _estimator(regression, value, seed).fit(x, y)
            w, b = _weights(est, task.n_outputs, regression)
            score = _val_loss(xv, yv, w, b, regression) if len(vkeep) else 0.0
            if best is None or score < best[0]:
                best = (score, value, w, b, est)
        assert best is not None
        score, value, w, b, est = best
        info = {
            "regularisation": {"alpha" if regression else "C": value},
            "val_loss": None if not len(vkeep) else round(float(score), 6),
            "importance": column_importance(features.columns, np.abs(w).mean(axis=0) * _std(x)),
            "fit_seconds": round(time.perf_counter() - start, 3),
        }
        member = cls(features, task.n_outputs, info)
        with torch.no_grad():
            member.linear.weight.copy_(torch.from_numpy(w).float())
            member.linear.bias.copy_(torch.from_numpy(b).float())
        member.estimator = est  # not saved: for comparison with scikit-learn's own predictions
        return member.eval()

    def spec(self) -> dict[str, Any]:
        return {
            "member": self.name,
            "modalities": self.features.modalities,
            "features": self.features.spec(),
            "n_outputs": self.n_outputs,
            **self.info,
        }

    @classmethod
    def from_spec(
        cls, spec: dict[str, Any], modalities: list[Modality], processors: dict[str, Processor], task: Task
    ) -> LinearMember:
        cls.check_modalities(cls.name, spec, modalities)
        info = {k: v for k, v in spec.items() if k not in ("member", "modalities", "features", "n_outputs")}
        return cls(FeatureSet.from_spec(spec["features"]), spec["n_outputs"], info).eval()


@MEMBERS.register("linear_text")
class LinearTextMember(LinearMember):
    """The ``linear`` member on the text columns alone (TF-IDF; applies when the table has tabular columns too)."""

    name = "linear_text"
    kinds = ("text",)
    variant_of = "linear"


def _estimator(regression: bool, value: float, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression, Ridge

    if regression:
        return Ridge(alpha=value, random_state=seed)
    return LogisticRegression(C=value, max_iter=2000, random_state=seed)


def _weights(est: Any, n_outputs: int, regression: bool) -> tuple[np.ndarray, np.ndarray]:
    """The estimator's coefficients as [n_outputs, F] weights and [n_outputs] biases in the task's output space
    (binary: the second class's logit is the decision function, the first's 0; classes absent from training get
    :data:`ABSENT_CLASS_LOGIT`)."""
    coef = np.atleast_2d(np.asarray(est.coef_, dtype=np.float64))
    bias = np.atleast_1d(np.asarray(est.intercept_, dtype=np.float64))
    if regression:
        return coef, bias
    w = np.zeros((n_outputs, coef.shape[1]))
    b = np.full(n_outputs, ABSENT_CLASS_LOGIT)
    classes = np.asarray(est.classes_, dtype=np.int64)
    if len(classes) == 2:  # scikit-learn's one decision function: the second present class against the first
        b[classes[0]] = 0.0
        w[classes[1]], b[classes[1]] = coef[0], bias[0]
    else:
        w[classes], b[classes] = coef, bias
    return w, b


def _val_loss(x: Any, y: np.ndarray, w: np.ndarray, b: np.ndarray, regression: bool) -> float:
    out = np.asarray(x @ w.T) + b
    if regression:
        return float(np.mean((out[:, 0] - y) ** 2))
    out = out - out.max(axis=1, keepdims=True)
    logp = out - np.log(np.exp(out).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y.astype(np.int64)].mean())


def _std(x: Any) -> np.ndarray:
    if sp.issparse(x):
        mean = np.asarray(x.mean(axis=0)).ravel()
        sq = np.asarray(x.multiply(x).mean(axis=0)).ravel()
        return np.sqrt(np.maximum(sq - mean**2, 0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(x, dtype=np.float64).std(axis=0) if len(x) else np.zeros(x.shape[1])
