"""Multi-task: several targets learned by one network, one head and one loss per target.

The label is a list of columns. Each target gets a sub-task built by the task registry (binary, multiclass,
regression; any other fused task registered in :data:`~polymodal.registry.TASKS` that is named in
``task.targets``); the composite holds them side by side:

- targets are encoded as a float32 ``[N, T]`` array, NaN where a row has no value for a target (class indices are
  stored as floats and cast back to the sub-task's dtype in the loss);
- the head is one ``Linear`` per target on the fused vector, outputs concatenated (``[N, sum of n_outputs]``);
- each sub-task's loss is taken over the rows that have its target, so a row with one target missing still trains
  the others; they are combined as ``Σ weight · log(loss + 0.001)`` (``task.target_loss: log``, the default: each
  target counts by its relative change, so a regression already learned well, with a small loss, is not drowned by a
  larger classification loss; measured in benchmarks/multitask.py) or ``Σ weight · loss`` (``sum``);
- metrics are each sub-task's metrics on the rows that have its target, flattened as ``"<target>/<metric>"``, plus
  ``weighted_loss`` (the training objective on those rows), which early stopping monitors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..config import TargetConfig
from ..data.loaders import is_empty
from ..errors import ConfigError, DataError
from ..params import TASK_PARAMS
from ..registry import TASKS, register
from ..schema import check_label_values, infer_problem_type
from .base import Task

#: The name of the composite's problem type (in TASKS, TASK_PARAMS and the run directory).
MULTITASK = "multitask"


LOG_EPS = 1e-3


@dataclass
class Target:
    """One target of a multi-task model: its column, sub-task, loss weight and slice of the outputs."""

    name: str
    task: Task
    weight: float
    outputs: slice


class MultiHead(nn.Module):
    """One linear head per target on the same fused vector; their outputs concatenated."""

    def __init__(self, heads: list[nn.Module]):
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([h(x) for h in self.heads], dim=-1)


def present(y: pd.Series) -> np.ndarray:
    """Which rows have a value for a target (empty strings and NaN count as missing, as for a single label)."""
    return ~y.map(is_empty).to_numpy(dtype=bool)


def check_target_config(names: list[str], targets: dict[str, TargetConfig]) -> None:
    """Refuse ``task.targets`` entries for columns that are not targets (a typo would silently do nothing)."""
    unknown = [n for n in targets if n not in names]
    if unknown:
        raise ConfigError(
            f"task.targets names column(s) that are not targets: {', '.join(unknown)}; the targets are: "
            f"{', '.join(names)}"
        )


def check_sub_problem_type(name: str, problem_type: str) -> None:
    """A target of a multi-task model is a fused prediction problem: no generation, no nested multi-task."""
    if problem_type in (MULTITASK, "multilabel") or TASK_PARAMS.get(problem_type).architecture != "fused":
        raise ConfigError(
            f"target '{name}' has problem type '{problem_type}', which a multi-task model cannot hold: each "
            "target must be binary, multiclass or regression (train a separate model for generation or tags)"
        )


@register(TASKS, MULTITASK)
class MultiTask(Task):
    """Several targets in one model (``label=["rating", "recommended"]``); see the module docstring."""

    problem_type = MULTITASK
    target_dtype = torch.float32
    monitor = ("weighted_loss", "min")
    stratify = False

    def __init__(self, config: Any):
        super().__init__(config)
        self.targets: list[Target] = []

    # --------------------------------------------------------------------------------------------- fitting
    def fit_target(self, y: pd.DataFrame) -> None:  # type: ignore[override]
        if not isinstance(y, pd.DataFrame):
            raise ConfigError("problem_type 'multitask' needs several label columns (label=['a', 'b'])")
        names = [str(c) for c in y.columns]
        check_target_config(names, self.config.targets)
        specs, subs = [], []
        for name in names:
            cfg = self.config.targets.get(name, TargetConfig())
            col = y[name][present(y[name])]
            if len(col) == 0:
                raise DataError(f"target '{name}' has no values in the training table")
            problem_type = cfg.problem_type or infer_problem_type(col)[0]
            check_sub_problem_type(name, problem_type)
            check_label_values(col, problem_type)
            sub = TASKS.get(problem_type)(self.config)
            try:
                sub.fit_target(col)
            except DataError as e:
                raise DataError(f"target '{name}': {e.args[0]}", e.issues, hint=e.hint) from None
            specs.append({"name": name, "problem_type": problem_type, "weight": cfg.weight})
            subs.append(sub)
        self._set_targets(specs, subs)

    def _set_targets(self, specs: list[dict[str, Any]], tasks: list[Task]) -> None:
        self.targets, start = [], 0
        for spec, sub in zip(specs, tasks):
            self.targets.append(Target(spec["name"], sub, float(spec["weight"]), slice(start, start + sub.n_outputs)))
            start += sub.n_outputs

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.targets]

    def target(self, name: str) -> Target:
        for t in self.targets:
            if t.name == name:
                return t
        raise ConfigError(f"unknown target '{name}'; this model's targets are: {', '.join(self.names)}")

    def check_target(self, y: pd.DataFrame) -> None:  # type: ignore[override]
        for t in self.targets:
            try:
                t.task.check_target(y[t.name][present(y[t.name])])
            except DataError as e:
                raise DataError(f"target '{t.name}': {e.args[0]}", e.issues, hint=e.hint) from None

    def encode_target(self, y: pd.DataFrame) -> np.ndarray:  # type: ignore[override]
        """``[N, T]`` float32: each target's encoding (class index or standardised value), NaN where missing."""
        out = np.full((len(y), len(self.targets)), np.nan, dtype=np.float32)
        for j, t in enumerate(self.targets):
            has = present(y[t.name])
            if has.any():
                out[has, j] = t.task.encode_target(y[t.name][has]).astype(np.float32)
        return out

    @property
    def n_outputs(self) -> int:
        return sum(t.task.n_outputs for t in self.targets)

    def head(self, dim: int) -> nn.Module:
        return MultiHead([t.task.head(dim) for t in self.targets])

    # ------------------------------------------------------------------------------------------------ loss
    def losses(self, outputs: torch.Tensor, target: torch.Tensor) -> list[torch.Tensor | None]:
        """Each target's loss over the rows that have it (None when no row of the batch has it)."""
        out: list[torch.Tensor | None] = []
        for j, t in enumerate(self.targets):
            y = target[:, j]
            has = ~torch.isnan(y)
            if t.task.target_dtype == torch.long:
                has &= y >= 0  # a class not seen in training (encoded -1) cannot be learned
            if not has.any():
                out.append(None)
                continue
            out.append(t.task.loss(outputs[has][:, t.outputs], y[has].to(t.task.target_dtype)))
        return out

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = outputs.sum() * 0.0  # keeps the graph (and the device) when no row has any target
        for t, loss in zip(self.targets, self.losses(outputs, target)):
            if loss is not None:
                total = total + t.weight * (torch.log(loss + LOG_EPS) if self.config.target_loss == "log" else loss)
        return total

    # ----------------------------------------------------------------------------------- outputs → values
    def postprocess(self, outputs: np.ndarray) -> np.ndarray:
        """``[N, T]`` object array: each target's predictions in its own values (see :meth:`predictions`)."""
        cols = [np.asarray(t.task.postprocess(outputs[:, t.outputs]), dtype=object) for t in self.targets]
        return np.stack(cols, axis=1) if cols else np.zeros((len(outputs), 0), dtype=object)

    def predictions(self, outputs: np.ndarray, index: pd.Index) -> pd.DataFrame:
        """One column per target, each with its own dtype (class labels, floats)."""
        return pd.DataFrame(
            {t.name: t.task.postprocess(outputs[:, t.outputs]) for t in self.targets}, index=index, columns=self.names
        )

    def classification_targets(self) -> list[Target]:
        """The targets whose sub-task gives class probabilities (``predict_proba``)."""
        return [t for t in self.targets if hasattr(t.task, "predict_proba") and hasattr(t.task, "classes")]

    # -------------------------------------------------------------------------------------------- metrics
    def metrics(self, y_true: pd.DataFrame, outputs: np.ndarray) -> dict[str, float]:  # type: ignore[override]
        """``"<target>/<metric>"`` for each sub-task's metrics on the rows that have the target (plus
        ``"<target>/rows"``), and ``weighted_loss``: the training objective on these rows."""
        out: dict[str, float] = {}
        y_true = y_true.reset_index(drop=True)
        for t in self.targets:
            has = present(y_true[t.name])
            out[f"{t.name}/rows"] = float(has.sum())
            if not has.any():
                continue
            sub = t.task.metrics(y_true[t.name][has].reset_index(drop=True), outputs[has][:, t.outputs])
            out.update({f"{t.name}/{k}": float(v) for k, v in sub.items()})
        with torch.no_grad():
            loss = self.loss(
                torch.as_tensor(outputs, dtype=torch.float32), torch.from_numpy(self.encode_target(y_true))
            )
        out["weighted_loss"] = float(loss)
        return out

    def calibrate(self, outputs: Any, labels: pd.DataFrame) -> None:  # type: ignore[override]
        """Each sub-task calibrates on its own outputs and the validation rows that have its target."""
        labels = labels.reset_index(drop=True)
        for t in self.targets:
            if type(t.task).calibrate is Task.calibrate:
                continue
            has = present(labels[t.name])
            if has.any():
                t.task.calibrate(outputs[has][:, t.outputs], labels[t.name][has].reset_index(drop=True))

    def calibrates(self) -> bool:
        """Whether any sub-task learns something in :meth:`calibrate` (else fitting skips the pass)."""
        return any(type(t.task).calibrate is not Task.calibrate for t in self.targets)

    # ---------------------------------------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        return {
            "targets": [
                {"name": t.name, "problem_type": t.task.problem_type, "weight": t.weight, "state": t.task.state()}
                for t in self.targets
            ]
        }

    def set_state(self, state: dict[str, Any]) -> None:
        tasks = []
        for spec in state["targets"]:
            sub = TASKS.get(spec["problem_type"])(self.config)
            sub.set_state(spec["state"])
            tasks.append(sub)
        self._set_targets(state["targets"], tasks)
