"""What an explanation explains: the number an attribution is a share of, per problem type; and reading the rows.

Classification: the probability of the class the model predicts for the intact row; gradient methods explain
that class's logit instead, because a probability saturates near 0 and 1, where its gradients vanish along most of
the integration path (the image and the text each push the probability to ~1 on their own, and integrated
gradients then credits whichever moves first). Regression: the predicted value, in the label's units.
Generation has no such single number; explanations refuse it with a message.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import torch

from ..data.dataset import Prepared
from ..errors import ExplainError
from ..pipeline import FittedPipeline
from ..registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from ..tasks import Task
    from ..tasks.regression import RegressionTask


class ExplainTarget:
    """The scalar explained for one row, computed from the model's raw outputs."""

    unit: ClassVar[str]
    gradient_unit: ClassVar[str]

    def __init__(self, task: "Task"):
        self.task = task

    def reference(self, outputs: torch.Tensor) -> int:
        """What the intact row's outputs [1, K] fix for the variants (the predicted class)."""
        return 0

    def score(self, outputs: torch.Tensor, ref: int) -> torch.Tensor:
        """[B, K] raw outputs → [B] the explained number."""
        raise NotImplementedError

    def gradient_score(self, outputs: torch.Tensor, ref: int) -> torch.Tensor:
        """What gradient-based methods explain (the same number unless it saturates)."""
        return self.score(outputs, ref)

    def probability(self, outputs: torch.Tensor) -> float | None:
        return None


#: problem type → what explanations of it explain
EXPLAIN_TARGETS: Registry[ExplainTarget] = Registry("explanation target")


class ClassProbability(ExplainTarget):
    unit = "probability of the predicted class"
    gradient_unit = "logit of the predicted class"

    def reference(self, outputs: torch.Tensor) -> int:
        return int(outputs[0].argmax())

    def score(self, outputs: torch.Tensor, ref: int) -> torch.Tensor:
        return outputs.float().softmax(-1)[:, ref]

    def gradient_score(self, outputs: torch.Tensor, ref: int) -> torch.Tensor:
        return outputs.float()[:, ref]

    def probability(self, outputs: torch.Tensor) -> float | None:
        return float(outputs.float().softmax(-1)[0].max())


class PredictedValue(ExplainTarget):
    unit = gradient_unit = "predicted value"
    task: RegressionTask

    def score(self, outputs: torch.Tensor, ref: int) -> torch.Tensor:
        return outputs.float()[:, 0] * self.task.std + self.task.mean


for _name in ("binary", "multiclass"):
    EXPLAIN_TARGETS.register(_name)(ClassProbability)
EXPLAIN_TARGETS.register("regression")(PredictedValue)


def explainable_task(pipeline: FittedPipeline, what: str) -> "Task":
    """The pipeline's task, when explanations support it; else an :class:`ExplainError` saying what they support."""
    task = pipeline.task
    if task.problem_type not in EXPLAIN_TARGETS:
        raise ExplainError(
            f"{what} supports classification and regression models; this is a "
            f"{task.problem_type} model. For a generation model, score generated texts with "
            "evaluate() instead."
        )
    return task


def prepare_rows(
    pipeline: FittedPipeline, data: Any, data_root: str | Path | None, on_error: str | None, labelled: bool
) -> tuple[pd.DataFrame, Prepared]:
    """Read and decode ``data`` with the pipeline's fitted processors (``labelled``: rows with a label only)."""
    table = pipeline.read(data, data_root)
    if labelled and pipeline.label not in table.frame.columns:
        raise ExplainError(
            f"modality importance needs the label column '{pipeline.label}' in the table, to "
            "score the model with and without each column; pass a labelled table"
        )
    decoded = pipeline.prepare(table, on_error=on_error, labelled="importance" if labelled else None)
    return decoded.frame, decoded.prepared


def as_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()
