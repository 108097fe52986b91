"""What an explanation explains: the number an attribution is a share of, per problem type; and reading the rows.

Classification: by default the log-odds of the class the model predicts for the intact row,
``log p − log(1 − p)`` (computed from the logits as ``z_c − logsumexp(z_j, j ≠ c)``; for two classes the logit margin
``z_c − z_other``). A probability saturates near 0 and 1: on a confident row (p = 1.00) taking away a column that
the other columns back up moves p by 1e-7, so occlusion on the probability credits nearly nothing and ranks noise
above evidence, and gradients of a saturated probability vanish along most of integrated gradients' path. The
log-odds keep growing with the evidence (one more confirming column adds about as much on a p = 0.999 row as on a
p = 0.6 row). ``target="probability"`` (:data:`CLASSIFICATION_TARGETS`) keeps the probability for occlusion, for a
drop readable as "p falls by 0.4" on rows that are not confident. Gradient methods explain the predicted class's
logit either way. Multi-label: the logit (= log-odds) of the tag scored highest. Regression: the predicted value,
in the label's units. Generation has no such single number; explanations refuse it with a message.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import torch

from ..data.dataset import Prepared
from ..errors import ConfigError, ExplainError
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


class ClassLogOdds(ExplainTarget):
    """The log-odds of the predicted class, log p − log(1 − p): does not saturate on confident rows (the default)."""

    unit = "log-odds of the predicted class"
    gradient_unit = "logit of the predicted class"

    def reference(self, outputs: torch.Tensor) -> int:
        return int(outputs[0].argmax())

    def score(self, outputs: torch.Tensor, ref: int) -> torch.Tensor:
        z = outputs.float()
        others = torch.cat([z[:, :ref], z[:, ref + 1 :]], dim=1)
        return z[:, ref] - others.logsumexp(-1)  # log p − log(1 − p), exact and stable at any confidence

    def gradient_score(self, outputs: torch.Tensor, ref: int) -> torch.Tensor:
        return outputs.float()[:, ref]

    def probability(self, outputs: torch.Tensor) -> float | None:
        return float(outputs.float().softmax(-1)[0].max())


class ClassProbability(ClassLogOdds):
    """The probability of the predicted class: saturates near 1 (``target="probability"``, not the default)."""

    unit = "probability of the predicted class"

    def score(self, outputs: torch.Tensor, ref: int) -> torch.Tensor:
        return outputs.float().softmax(-1)[:, ref]


class PredictedValue(ExplainTarget):
    unit = gradient_unit = "predicted value"
    task: RegressionTask

    def score(self, outputs: torch.Tensor, ref: int) -> torch.Tensor:
        return outputs.float()[:, 0] * self.task.std + self.task.mean


class TopTagLogit(ExplainTarget):
    """Multi-label: the logit of the tag the model scores highest for the intact row. Each tag has its own sigmoid,
    so its logit is exactly its log-odds, log p − log(1 − p), and does not saturate."""

    unit = gradient_unit = "log-odds of the top-scoring tag"

    def reference(self, outputs: torch.Tensor) -> int:
        return int(outputs[0].argmax())

    def score(self, outputs: torch.Tensor, ref: int) -> torch.Tensor:
        return outputs.float()[:, ref]

    def probability(self, outputs: torch.Tensor) -> float | None:
        return float(outputs.float()[0].max().sigmoid())


for _name in ("binary", "multiclass"):
    EXPLAIN_TARGETS.register(_name)(ClassLogOdds)
EXPLAIN_TARGETS.register("multilabel")(TopTagLogit)
EXPLAIN_TARGETS.register("regression")(PredictedValue)

#: classification: what occlusion explains, by the name ``explain(target=...)`` takes
CLASSIFICATION_TARGETS: dict[str, type[ExplainTarget]] = {"log_odds": ClassLogOdds, "probability": ClassProbability}


def explain_target(task: "Task", name: str | None = None) -> ExplainTarget:
    """What explanations of ``task`` explain: its problem type's default, or for classification ``name``
    ("log_odds", the default, or "probability")."""
    if name is None:
        return EXPLAIN_TARGETS.build(task.problem_type, task)
    if task.problem_type not in ("binary", "multiclass") or name not in CLASSIFICATION_TARGETS:
        choices = ", ".join(CLASSIFICATION_TARGETS) if task.problem_type in ("binary", "multiclass") else "None"
        raise ConfigError(
            f"unknown explanation target '{name}' for a {task.problem_type} model; choose one of: {choices}"
        )
    return CLASSIFICATION_TARGETS[name](task)


def explainable_task(pipeline: FittedPipeline, what: str) -> "Task":
    """The pipeline's task, when explanations support it; else an :class:`ExplainError` saying what they support."""
    task = pipeline.task
    if task.problem_type == "multitask":
        raise ExplainError(
            f"{what} does not support multi-task models yet (targets: {', '.join(pipeline.label)}); to explain one "
            "target, train a model on that target alone (--label <target>) and explain it"
        )
    if task.problem_type not in EXPLAIN_TARGETS:
        raise ExplainError(
            f"{what} supports classification, multi-label and regression models; this is a "
            f"{task.problem_type} model. For a generation model, score generated texts with "
            "evaluate() instead."
        )
    return task


def prepare_rows(
    pipeline: FittedPipeline, data: Any, data_root: str | Path | None, on_error: str | None, labelled: bool
) -> tuple[pd.DataFrame, Prepared]:
    """Read and decode ``data`` with the pipeline's fitted processors (``labelled``: rows with a label only)."""
    table = pipeline.read(data, data_root)
    if labelled and pipeline.single_label not in table.frame.columns:
        raise ExplainError(
            f"modality importance needs the label column '{pipeline.single_label}' in the table, to "
            "score the model with and without each column; pass a labelled table"
        )
    decoded = pipeline.prepare(table, on_error=on_error, labelled="importance" if labelled else None)
    return decoded.frame, decoded.prepared


def as_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()
