"""Everything a report is built from, gathered once: the run's summary, its training history, the test table scored
once, and the optional robustness sweep. Sections only read from a :class:`ReportContext`."""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import encoder_choice, encoder_key
from ..errors import ConfigError
from ..evaluation.robustness import RobustnessReport
from ..metrics.classification import label_key
from ..pipeline import FittedPipeline, label_values
from ..tasks.classification import ClassificationTask
from ..tasks.multilabel import MultilabelTask
from ..tasks.multitask import MultiTask, present
from ..tasks.retrieval import RetrievalTask

#: Where a run directory's robustness sweep is looked for when none is given (`polymodal evaluate RUN DATA
#: --robustness --out RUN/robustness` writes the second).
ROBUSTNESS_LOCATIONS = ("robustness.json", "robustness/robustness.json")


@dataclass
class ReportOptions:
    """What to compute. The defaults suit a test table of a few hundred rows on a laptop CPU.

    Args:
        n_examples: explained examples in the gallery (about half correct, half wrong); 0 leaves the gallery out.
        n_bootstrap: bootstrap resamples for the modality-importance confidence intervals; 0 leaves the section out.
        importance_methods: "drop" (modality emptied = missing) and/or "permutation" (shuffled across rows).
        explain_method: "occlusion" or "integrated_gradients" for the gallery.
        seed: seeds the bootstrap and the choice of gallery rows.
    """

    n_examples: int = 6
    n_bootstrap: int = 200
    importance_methods: tuple[str, ...] = ("drop", "permutation")
    explain_method: str = "occlusion"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_examples < 0 or self.n_bootstrap < 0:
            raise ConfigError(
                f"n_examples and n_bootstrap must be 0 or more (got {self.n_examples} and "
                f"{self.n_bootstrap}); 0 leaves that section out"
            )


@dataclass
class ColumnInfo:
    name: str
    kind: str
    modality: str
    encoder: str
    reason: str


@dataclass
class RunSummary:
    """What was trained, on what, and how the training went."""

    label: str
    problem_type: str
    columns: list[ColumnInfo]
    fusion: str
    fusion_params: dict[str, Any]
    classes: list[Any] | None  # a multi-label model's tags
    run_dir: Path | None
    fit: dict[str, Any]  # best_epoch, epochs_run, max_epochs, fit_seconds, stopped_early (when known)
    validation: dict[str, float]
    parameters: int
    monitor: tuple[str, str]


@dataclass
class Scored:
    """The test table scored once: the usable labelled rows in output order, their outputs and predictions."""

    frame: pd.DataFrame  # usable rows, original index kept
    root: Path  # folder their relative file paths resolve against
    source: str
    y_true: pd.Series  # labels in their own values, aligned with `frame` (multi-task: a DataFrame of the targets)
    outputs: Any
    predictions: np.ndarray
    proba: np.ndarray | None  # classification: one column per class (None for multi-label: a row has no one class)
    metrics: dict[str, float]

    def correct(self) -> np.ndarray | None:
        """Per-row correctness (classification), None for other problems."""
        if self.proba is None:
            return None
        return np.array([label_key(t) == label_key(p) for t, p in zip(self.y_true, self.predictions)])


@dataclass
class ReportContext:
    pipeline: FittedPipeline
    summary: RunSummary
    history: pd.DataFrame | None
    scored: Scored
    robustness: RobustnessReport | None
    robustness_source: str | None
    options: ReportOptions
    progress: Callable[[str], None] = field(default=lambda msg: None)

    @property
    def is_classification(self) -> bool:
        return isinstance(self.pipeline.task, ClassificationTask)


# ------------------------------------------------------------------------------------------------ gathering
def summarise(pipeline: FittedPipeline, run_dir: Path | None) -> RunSummary:
    from ..model import count_parameters

    cfg = pipeline.config
    modality_of = {c: m for m in pipeline.modalities for c in m.columns}
    columns = []
    for c in pipeline.schema.columns:
        mod = modality_of.get(c.name)
        # the encoder of the column's modality, and the key that chose it (encoders.<column> or encoders.<kind>)
        encoder = "—"
        if mod is not None:
            choice = encoder_choice(cfg, mod)
            encoder = f"{_describe(choice.name, choice.params())} [encoders.{encoder_key(cfg, mod)}]"
        columns.append(ColumnInfo(c.name, c.kind.value, mod.name if mod else "—", encoder, c.reason))
    fit: dict[str, Any] = {}
    validation: dict[str, float] = {}
    r = pipeline.fit_result
    if r is not None:
        fit = {
            "best_epoch": r.best_epoch,
            "epochs_run": r.epochs_run,
            "max_epochs": cfg.training.max_epochs,  # resolved when the model was fitted
            "fit_seconds": r.fit_seconds,
            "stopped_early": r.stopped_early,
        }
        validation = dict(r.validation)
    task = pipeline.task
    return RunSummary(
        label=pipeline.label if isinstance(pipeline.label, str) else ", ".join(pipeline.label),
        problem_type=task.problem_type,
        columns=columns,
        fusion=cfg.fusion.name,
        fusion_params={"dim": cfg.fusion.dim, "dropout": cfg.fusion.dropout, **cfg.fusion.params()},
        classes=list(task.classes) if isinstance(task, (ClassificationTask, MultilabelTask)) else None,
        run_dir=run_dir,
        fit=fit,
        validation=validation,
        parameters=count_parameters(pipeline.model),
        monitor=task.monitor,
    )


def _describe(name: str, params: dict[str, Any]) -> str:
    return name + (f" ({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "")


def read_history(pipeline: FittedPipeline, run_dir: Path | None) -> pd.DataFrame | None:
    """Per-epoch training log: from the fitted pipeline, else the run directory's training_log.csv."""
    rows = pipeline.fit_result.history if pipeline.fit_result is not None else []
    if rows:
        return pd.DataFrame(rows)
    path = run_dir / "training_log.csv" if run_dir is not None else None
    if path is None or not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        frame = pd.DataFrame(list(csv.DictReader(f)))
    if frame.empty:
        return None
    return frame.apply(pd.to_numeric, errors="coerce")


def score(pipeline: FittedPipeline, data: Any, data_root: str | Path | None, on_error: str | None) -> Scored:
    """Decode and score the labelled test table once (rows with an empty label are left out, as in evaluate).
    A retrieval model's table is its pairs: each row's position is its label, as in ``Predictor.evaluate``."""
    if isinstance(pipeline.task, RetrievalTask):
        from ..retrieval import pair_table

        data = pair_table(data, pipeline.config, data_root)
    metrics, decoded, outputs = pipeline.score(data, on_error=on_error, data_root=data_root, what="report")
    task = pipeline.task
    usable = decoded.usable
    labels = label_values(usable, pipeline.label)  # a DataFrame for a multi-task model (its targets)
    proba = task.predict_proba(outputs) if isinstance(task, ClassificationTask) else None
    return Scored(
        frame=usable,
        root=decoded.root,
        source=decoded.source,
        y_true=labels,
        outputs=outputs,
        predictions=np.asarray(task.postprocess(outputs)),
        proba=proba,
        metrics=metrics,
    )


def target_context(ctx: ReportContext, name: str) -> ReportContext:
    """The context narrowed to one target of a multi-task model: its summary (label, problem type, classes,
    validation metrics) and its scored rows (those that have the target, with its slice of the outputs)."""
    task = ctx.pipeline.task
    assert isinstance(task, MultiTask), "target contexts are for multi-task models"
    t = task.target(name)
    sub = t.task
    scored = ctx.scored
    has = present(scored.y_true[name])
    outputs = np.asarray(scored.outputs)[has][:, t.outputs]
    prefix = f"{name}/"
    metrics = {k.removeprefix(prefix): v for k, v in scored.metrics.items() if k.startswith(prefix)}
    metrics["rows"] = float(has.sum())
    summary = dataclasses.replace(
        ctx.summary,
        label=name,
        problem_type=sub.problem_type,
        classes=list(sub.classes) if isinstance(sub, ClassificationTask) else None,
        validation={
            k.replace(prefix, "", 1): v for k, v in ctx.summary.validation.items() if k.startswith(f"val_{prefix}")
        },
        monitor=sub.monitor,
    )
    narrowed = Scored(
        frame=scored.frame[has],
        root=scored.root,
        source=scored.source,
        y_true=scored.y_true[name][has],
        outputs=outputs,
        predictions=np.asarray(sub.postprocess(outputs)),
        proba=sub.predict_proba(outputs) if isinstance(sub, ClassificationTask) else None,
        metrics=metrics,
    )
    return dataclasses.replace(ctx, summary=summary, scored=narrowed)


def find_robustness(
    robustness: RobustnessReport | str | Path | None, run_dir: Path | None
) -> tuple[RobustnessReport | None, str | None]:
    """The robustness report to show and where it came from: the one given, else one saved in the run directory."""
    if isinstance(robustness, RobustnessReport):
        return robustness, "given"
    if robustness is not None:
        return RobustnessReport.load(robustness), str(robustness)
    for path in [run_dir / rel for rel in ROBUSTNESS_LOCATIONS] if run_dir is not None else []:
        if path.is_file():
            return RobustnessReport.load(path), str(path)
    return None, None


def fmt(v: Any, digits: int = 4) -> str:
    """Numbers as the report shows them everywhere (and as the tests look for them): 4 decimals."""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "—"
        text = f"{float(v):.{digits}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.0000"
    return str(v)
