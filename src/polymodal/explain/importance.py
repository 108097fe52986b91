"""Modality importance: how much the model's score falls when one input column is taken away.

Two ways of taking a column away, each applied to the decoded rows (the table is decoded once):
  drop         the column made missing in every row, which the model handles natively (presence masks, missing
               flags and categories), i.e. "what if this column had never been filled in";
  permutation  the column's values shuffled across rows (``repeats`` shuffles, averaged), i.e. "what if this
               column carried no information about the row", keeping its distribution (Breiman 2001).
Importance is the score with the column intact minus the score without it, signed so that higher = the model
leans on it more (for a lower-is-better metric such as RMSE: the increase). Confidence intervals: the predictions
of every variant are computed once; rows are then resampled with replacement ``n_bootstrap`` times and the paired
difference recomputed on each resample (percentile interval).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np
import pandas as pd

from ..data.dataset import Prepared, make_loader
from ..data.progress import Progress
from ..errors import ConfigError
from ..metrics.multilabel import predicted
from ..pipeline import PipelineSource, as_pipeline
from ..registry import Registry
from ..training import predict_outputs
from .columns import ColumnView, column_views
from .targets import explainable_task, prepare_rows

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ..tasks import Task
    from ..tasks.multilabel import MultilabelTask


@dataclass
class ImportanceRow:
    """The importance of one column by one method, with its bootstrap confidence interval."""

    modality: str  # the column's name
    method: str  # "drop" | "permutation"
    importance: float  # score intact − score without the column (sign-corrected: higher = more important)
    ci_low: float
    ci_high: float
    kind: str = ""  # image | audio | text | numeric | category
    score: float = math.nan  # the metric with the column dropped / permuted


@dataclass
class ImportanceResult:
    """Importance of every input column by every method requested, measured on ``n_rows`` labelled rows."""

    metric: str  # "accuracy" (classification), "tag_accuracy" (multi-label) or "rmse" (regression)
    baseline: float  # the metric on the intact rows
    rows: list[ImportanceRow]
    n_rows: int
    n_bootstrap: int
    higher_is_better: bool = True
    confidence: float = 0.95
    repeats: int = 1
    seed: int = 0

    def to_frame(self) -> pd.DataFrame:
        """One row per (column, method), most important first within each method."""
        frame = pd.DataFrame(
            [asdict(r) for r in self.rows],
            columns=["modality", "kind", "method", "importance", "ci_low", "ci_high", "score"],
        )
        return frame.sort_values(["method", "importance"], ascending=[True, False], kind="stable").reset_index(
            drop=True
        )

    def plot(self) -> "Figure":
        """The importances with their confidence intervals as a matplotlib ``Figure`` (no pyplot)."""
        from .plots import plot_importance

        return plot_importance(self)

    def _repr_html_(self) -> str:  # Jupyter shows the table
        return self.to_frame().to_html(index=False)

    def get(self, modality: str, method: str) -> ImportanceRow:
        """The row of one column and method (KeyError when not measured)."""
        for r in self.rows:
            if r.modality == modality and r.method == method:
                return r
        raise KeyError(f"no importance for column '{modality}' by method '{method}'")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN → null)."""

        def num(x: float) -> float | None:
            return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)

        return {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "baseline": num(self.baseline),
            "n_rows": self.n_rows,
            "n_bootstrap": self.n_bootstrap,
            "confidence": self.confidence,
            "repeats": self.repeats,
            "seed": self.seed,
            "rows": [{k: (num(v) if isinstance(v, float) else v) for k, v in asdict(r).items()} for r in self.rows],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ImportanceResult":
        """Read back what :meth:`to_dict` wrote (importance.json)."""

        def num(x: Any) -> float:
            return math.nan if x is None else float(x)

        rows = [
            ImportanceRow(
                r["modality"],
                r["method"],
                num(r["importance"]),
                num(r["ci_low"]),
                num(r["ci_high"]),
                r.get("kind", ""),
                num(r.get("score")),
            )
            for r in d["rows"]
        ]
        return cls(
            d["metric"],
            num(d["baseline"]),
            rows,
            int(d["n_rows"]),
            int(d["n_bootstrap"]),
            bool(d.get("higher_is_better", True)),
            float(d.get("confidence", 0.95)),
            int(d.get("repeats", 1)),
            int(d.get("seed", 0)),
        )

    def markdown(self) -> str:
        better = "higher" if self.higher_is_better else "lower"
        pct = f"{self.confidence:.0%}"
        lines = [
            f"# Modality importance ({self.metric}, {better} is better; {self.n_rows} rows)",
            "",
            f"Intact {self.metric}: {self.baseline:.4f}. Importance = loss of {self.metric} without the column; "
            f"{pct} bootstrap intervals over {self.n_bootstrap} resamples of the rows.",
            "",
            "| column | kind | method | importance | CI low | CI high |",
            "|---|---|---|---|---|---|",
        ]
        for _, r in self.to_frame().iterrows():
            lines.append(
                f"| {r['modality']} | {r['kind']} | {r['method']} | {r['importance']:.4f} | "
                f"{r['ci_low']:.4f} | {r['ci_high']:.4f} |"
            )
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------- metrics
class RowMetric:
    """A metric computed from one number per row, so that bootstrap resamples cost no extra predictions."""

    name: ClassVar[str]
    higher_is_better: ClassVar[bool]

    def per_row(self, task: "Task", outputs: np.ndarray, y_true: pd.Series) -> np.ndarray:
        raise NotImplementedError

    def aggregate(self, values: np.ndarray) -> np.ndarray:
        """The metric of each row of ``values`` [..., n] (the last axis: rows)."""
        raise NotImplementedError


#: problem type → the metric importance is measured with
IMPORTANCE_METRICS: Registry[RowMetric] = Registry("importance metric")


class Accuracy(RowMetric):
    name, higher_is_better = "accuracy", True

    def per_row(self, task: "Task", outputs: np.ndarray, y_true: pd.Series) -> np.ndarray:
        return (outputs.argmax(axis=1) == task.encode_target(y_true)).astype(np.float64)  # unseen labels: -1, wrong

    def aggregate(self, values: np.ndarray) -> np.ndarray:
        return values.mean(axis=-1)


class RMSE(RowMetric):
    name, higher_is_better = "rmse", False

    def per_row(self, task: "Task", outputs: np.ndarray, y_true: pd.Series) -> np.ndarray:
        true = pd.to_numeric(y_true, errors="coerce").to_numpy(dtype=np.float64)
        return (task.postprocess(outputs) - true) ** 2

    def aggregate(self, values: np.ndarray) -> np.ndarray:
        return np.sqrt(values.mean(axis=-1))


class TagAccuracy(RowMetric):
    """Multi-label: the share of (row, tag) decisions that are right, 1 − Hamming loss (tuned thresholds)."""

    name, higher_is_better = "tag_accuracy", True

    def per_row(self, task: "Task", outputs: np.ndarray, y_true: pd.Series) -> np.ndarray:
        ml = cast("MultilabelTask", task)
        true = ml.indicators(y_true, warn=False)
        pred = predicted(ml.predict_proba(outputs), np.asarray(ml.thresholds))
        return np.nanmean(np.where(np.isnan(true), np.nan, (true > 0.5) == pred), axis=1)

    def aggregate(self, values: np.ndarray) -> np.ndarray:
        return values.mean(axis=-1)


for _name in ("binary", "multiclass"):
    IMPORTANCE_METRICS.register(_name)(Accuracy)
IMPORTANCE_METRICS.register("multilabel")(TagAccuracy)
IMPORTANCE_METRICS.register("regression")(RMSE)


# ------------------------------------------------------------------------------------------------- methods
class ImportanceMethod:
    """How a column is taken away: returns the variants of the modality's items to score (their scores are
    averaged)."""

    def variants(
        self, view: ColumnView, items: Sequence[Any], rng: np.random.Generator, repeats: int
    ) -> list[Sequence[Any]]:
        raise NotImplementedError


IMPORTANCE_METHODS: Registry[ImportanceMethod] = Registry("importance method")


@IMPORTANCE_METHODS.register("drop")
class Drop(ImportanceMethod):
    """The column missing in every row (one variant: it is deterministic)."""

    def variants(
        self, view: ColumnView, items: Sequence[Any], rng: np.random.Generator, repeats: int
    ) -> list[Sequence[Any]]:
        return [view.drop(items)]


@IMPORTANCE_METHODS.register("permutation")
class Permutation(ImportanceMethod):
    """The column's values shuffled across rows, ``repeats`` times."""

    def variants(
        self, view: ColumnView, items: Sequence[Any], rng: np.random.Generator, repeats: int
    ) -> list[Sequence[Any]]:
        return [view.permute(items, rng.permutation(len(items))) for _ in range(repeats)]


# ----------------------------------------------------------------------------------------------- bootstrap
def _bootstrap_differences(
    metric: RowMetric,
    base: np.ndarray,
    variants: Sequence[np.ndarray],
    n_bootstrap: int,
    rng: np.random.Generator,
    chunk: int = 64,
) -> np.ndarray:
    """Paired bootstrap of (variant − intact) metric differences, averaged over the variants: [n_bootstrap]."""
    n = len(base)
    out = []
    for start in range(0, n_bootstrap, chunk):
        idx = rng.integers(0, n, (min(chunk, n_bootstrap - start), n))
        b = metric.aggregate(base[idx])
        out.append(np.mean([metric.aggregate(v[idx]) - b for v in variants], axis=0))
    return np.concatenate(out) if out else np.zeros(0)


def modality_importance(
    predictor: PipelineSource,
    data: Any,
    *,
    methods: Sequence[str] = ("drop", "permutation"),
    n_bootstrap: int = 200,
    repeats: int = 1,
    seed: int = 0,
    data_root: str | Path | None = None,
    confidence: float = 0.95,
    on_error: str | None = None,
    progress: bool = False,
) -> ImportanceResult:
    """Importance of each input column of a fitted classification or regression ``predictor`` on labelled ``data``.

    Args:
        predictor: a fitted :class:`~polymodal.Predictor`, its :class:`~polymodal.pipeline.FittedPipeline`, or a
            run directory.
        data: a labelled table (path, DataFrame or Table) with the columns the model was trained on.
        methods: "drop" (the column made missing) and/or "permutation" (its values shuffled across rows).
        n_bootstrap: resamples of the rows for the confidence intervals (0: no intervals, they are NaN).
        repeats: shuffles per column for "permutation" (their importances are averaged).
        seed: seeds the shuffles and the resamples.
        data_root: folder the table's relative file paths resolve against.
        confidence: the central probability of the intervals (default 0.95).

    Returns an :class:`ImportanceResult`: per column and method, the metric lost without the column (higher =
    more important; the task's accuracy, or RMSE for regression, where the loss is the increase).
    """
    predictor = as_pipeline(predictor)
    task = explainable_task(predictor, "modality importance")
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ConfigError("no importance methods given; choose from: " + ", ".join(IMPORTANCE_METHODS.names()))
    builders = {m: IMPORTANCE_METHODS.build(m) for m in methods}  # unknown names fail here, listing the choices
    if n_bootstrap < 0 or repeats < 1:
        raise ConfigError(f"n_bootstrap must be >= 0 and repeats >= 1 (got {n_bootstrap} and {repeats})")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be between 0 and 1, not {confidence}")
    metric = IMPORTANCE_METRICS.build(task.problem_type)
    frame, prepared = prepare_rows(predictor, data, data_root, on_error, labelled=True)
    if len(prepared) < 2:
        raise ConfigError(f"modality importance needs at least 2 usable labelled rows; the table has {len(prepared)}")
    y_true = frame[predictor.single_label].iloc[prepared.rows].reset_index(drop=True)
    processors = predictor.processors
    batch_size = predictor.predict_batch_size

    def per_row(modality: str | None = None, items: Sequence[Any] | None = None) -> np.ndarray:
        view = (
            prepared
            if modality is None or items is None
            else Prepared({**prepared.items, modality: items}, prepared.rows)
        )
        outputs = predict_outputs(predictor.model, make_loader(view, processors, batch_size, False))
        return metric.per_row(task, outputs, y_true)

    views = column_views(processors)
    passes = 1 + len(views) * sum(repeats if m == "permutation" else 1 for m in methods)
    bar = Progress(passes, "importance", "passes", enabled=progress, min_bar=0)
    base = per_row()
    bar.advance()
    base_score = float(metric.aggregate(base))
    sign = 1.0 if metric.higher_is_better else -1.0
    rng = np.random.default_rng(seed)
    alpha = (1 - confidence) / 2
    rows = []
    for name in methods:
        for view in views:
            bar.set_postfix_str(f"{view.column}: {name}")
            scored = []
            for items in builders[name].variants(view, prepared.items[view.modality], rng, repeats):
                scored.append(per_row(view.modality, items))
                bar.advance()
            variant_score = float(np.mean([metric.aggregate(v) for v in scored]))
            diffs = _bootstrap_differences(metric, base, scored, n_bootstrap, rng)
            lo, hi = (
                (math.nan, math.nan) if n_bootstrap == 0 else sorted(-sign * np.quantile(diffs, [alpha, 1 - alpha]))
            )
            rows.append(
                ImportanceRow(
                    view.column,
                    name,
                    sign * (base_score - variant_score),
                    float(lo),
                    float(hi),
                    view.kind,
                    variant_score,
                )
            )
    bar.close()
    return ImportanceResult(
        metric.name, base_score, rows, len(prepared), n_bootstrap, metric.higher_is_better, confidence, repeats, seed
    )
