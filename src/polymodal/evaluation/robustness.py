"""Robustness sweeps: how a fitted model's test score changes when one modality is missing or corrupted.

The test table is decoded once. For each modality the sweep then scores the model on
  * the clean items (severity 0),
  * the items corrupted at increasing levels, for every corruption that applies to the modality's kind, and
  * the modality missing entirely (its presence mask False for every row, which every fusion handles),
always on fresh copies of the decoded items: the originals are never modified. Corruptions are deterministic given a
seed, and a row draws the same random numbers at every level, so a higher level is the same perturbation made larger.

Relative and effective robustness follow MultiBench (Liang et al., 2021), ``eval_scripts/robustness.py`` in
https://github.com/pliang279/MultiBench (``relative_robustness_helper`` and ``effective_robustness_helper``); see
:func:`relative_robustness` and :func:`effective_robustness` for what we keep and what we change.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..data.dataset import Prepared, make_loader
from ..data.processors import Processor
from ..data.progress import Progress
from ..io import write_files
from ..training import predict_outputs
from .corruptions import CORRUPTIONS, Corruption, CorruptionError, corrupted_column

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from ..tasks import Task

log = logging.getLogger("polymodal")

#: Which corruptions to sweep: ``None`` (all of them at their default levels), a list of names (those, at their
#: default levels), or a mapping name → levels (``None`` = that corruption's default levels).
CorruptionSpec = Mapping[str, Sequence[float] | None] | Sequence[str] | None


@dataclass
class SweepStep:
    """One modality and one corruption with its resolved levels."""

    modality: str
    kind: str
    corruption: Corruption
    levels: tuple[float, ...]


def plan_sweep(processors: Mapping[str, Processor], corruptions: CorruptionSpec = None) -> list[SweepStep]:
    """Check ``corruptions`` (see :data:`CorruptionSpec`) against the model's modalities; one step per pair.

    Every named corruption must exist, have valid levels and apply to at least one modality of the model.
    """
    if corruptions is None:
        chosen: dict[str, Any] = {n: None for n in CORRUPTIONS.names()}
    elif isinstance(corruptions, str):
        raise CorruptionError("corruptions must be a list of names or a mapping name → levels, not a string")
    elif isinstance(corruptions, Mapping):
        chosen = dict(corruptions)
    else:
        chosen = {n: None for n in corruptions}
    if corruptions is not None and not chosen:
        raise CorruptionError("no corruptions given; pass None for all of them")
    resolved: dict[str, tuple[Corruption, tuple[float, ...]]] = {}
    for n, levels in chosen.items():
        c = CORRUPTIONS.build(n)  # unknown names raise ConfigError listing the choices
        resolved[n] = (c, c.check_levels(levels))
    steps = [
        SweepStep(m, p.kind, c, levels)
        for m, p in processors.items()
        for c, levels in resolved.values()
        if c.applies(p)
    ]
    if corruptions is not None:
        used = {s.corruption.name for s in steps}
        for n, (c, _) in resolved.items():
            if n not in used:
                mods = ", ".join(f"{m} ({p.kind})" for m, p in processors.items())
                needs = f" with {c.needs}" if c.needs else ""
                raise CorruptionError(
                    f"corruption '{n}' applies to {'/'.join(c.kinds)} modalities{needs}, and this "
                    f"model has none (its modalities: {mods})"
                )
    return steps


# ------------------------------------------------------------------------------------------ robustness metrics
def relative_robustness(scores: Sequence[float]) -> float:
    """Area under the score-vs-severity curve (trapezoid rule), the curve starting at the clean score.

    MultiBench's ``relative_robustness_helper`` (eval_scripts/robustness.py) sums trapezoids of width 0.1 over its
    11 noise levels 0.0, 0.1, ..., 1.0. Our corruptions have any number K of levels, so the K + 1 points are spaced
    1/K apart on [0, 1]: identical to MultiBench's for K = 10, and in general MultiBench's value × 10 / K. The area
    is then on the metric's own scale (for accuracy: between 0 and 1, the mean score along the sweep). MultiBench
    additionally min-max normalises across its table of published methods; with no such table we report the raw area.
    """
    s = np.asarray(scores, dtype=np.float64)
    if len(s) < 2:
        raise CorruptionError("a robustness curve needs the clean score and at least one corrupted score")
    return float(np.sum((s[:-1] + s[1:]) / 2) / (len(s) - 1))


def effective_robustness(scores: Sequence[float], baseline: Sequence[float] | None = None) -> float:
    """Sum over levels of the score minus the baseline curve shifted to start at our clean score.

    MultiBench's ``effective_robustness_helper``: ``beta_f = lf + (f[0] - lf[0]); sum(f - beta_f)``, where ``lf`` is
    the late-fusion (LF) model's curve on the same task, i.e. ``sum_i (f_i - f_0) - (lf_i - lf_0)``. ``baseline``
    plays the role of ``lf``; when None it is a flat curve (a model that the corruption does not affect), so the
    value is ``sum_i (f_i - f_0)``: minus the total loss of score along the sweep (0 = unaffected).
    """
    f = np.asarray(scores, dtype=np.float64)
    lf = np.full_like(f, f[0]) if baseline is None else np.asarray(baseline, dtype=np.float64)
    if lf.shape != f.shape:
        raise CorruptionError(f"the baseline curve has {len(lf)} points and this one {len(f)}")
    beta_f = lf + (f[0] - lf[0])
    return float(np.sum(f - beta_f))


# ---------------------------------------------------------------------------------------------------- report
def _num_out(x: float) -> float | str | None:
    """A float for JSON: NaN → null, ±inf → "inf"/"-inf" (strict JSON has neither)."""
    x = float(x)
    return None if math.isnan(x) else (("inf" if x > 0 else "-inf") if math.isinf(x) else x)


def _num_in(x: Any) -> float:
    return math.nan if x is None else float(x)


@dataclass
class Curve:
    """Scores of one modality under one corruption. ``levels[0]``/``metrics[0]`` are the clean level and score."""

    modality: str
    kind: str
    corruption: str
    unit: str
    levels: list[float]
    metrics: list[dict[str, float]]
    relative: float = math.nan
    effective: float = math.nan

    def scores(self, metric: str) -> list[float]:
        return [m.get(metric, math.nan) for m in self.metrics]

    def to_dict(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "kind": self.kind,
            "corruption": self.corruption,
            "unit": self.unit,
            "levels": [_num_out(v) for v in self.levels],
            "metrics": [{k: _num_out(v) for k, v in m.items()} for m in self.metrics],
            "relative_robustness": _num_out(self.relative),
            "effective_robustness": _num_out(self.effective),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Curve":
        return cls(
            d["modality"],
            d["kind"],
            d["corruption"],
            d["unit"],
            [_num_in(v) for v in d["levels"]],
            [{k: _num_in(v) for k, v in m.items()} for m in d["metrics"]],
            _num_in(d["relative_robustness"]),
            _num_in(d["effective_robustness"]),
        )


@dataclass
class RowWeights:
    """A test row's fusion weights over the modalities, clean and with ``modality`` corrupted (``corruption`` at
    ``level``, or ``missing``)."""

    row: int
    modality: str
    corruption: str
    level: float
    clean: dict[str, float]
    corrupted: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "modality": self.modality,
            "corruption": self.corruption,
            "level": _num_out(self.level),
            "clean": self.clean,
            "corrupted": self.corrupted,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RowWeights":
        return cls(
            int(d["row"]),
            d["modality"],
            d["corruption"],
            _num_in(d["level"]),
            {k: float(v) for k, v in d["clean"].items()},
            {k: float(v) for k, v in d["corrupted"].items()},
        )


@dataclass
class RobustnessReport:
    """The result of a sweep: clean metrics, metrics with each modality missing, and one :class:`Curve` per
    (modality, corruption). ``metric`` is the one robustness is computed on (the task's monitor metric)."""

    metric: str
    higher_is_better: bool
    rows: int
    seed: int
    baseline: str
    clean: dict[str, float]
    kinds: dict[str, str]
    missing: dict[str, dict[str, float]]
    curves: list[Curve] = field(default_factory=list)
    #: modality → metrics of the best model that ignores that modality (e.g. a model of the other modalities alone):
    #: the line a gracefully degrading model stays above, whatever happens to that modality; empty when not given.
    reference: dict[str, dict[str, float]] = field(default_factory=dict)
    reference_name: str = ""
    #: a few test rows' per-row modality weights (fusions with :meth:`~polymodal.fusion.Fusion.modality_weights`):
    #: clean and with one modality at its most severe level, so a reader sees which modality a damaged row trusted
    weights: list[RowWeights] = field(default_factory=list)

    def without(self, modality: str) -> float:
        """The reference score for ``modality`` (the best model without it); NaN when none was given."""
        return self.reference.get(modality, {}).get(self.metric, math.nan)

    def worst(self, modality: str) -> float:
        """The model's worst score with ``modality`` corrupted at any level or missing."""
        scores = [s for c in self.curves if c.modality == modality for s in c.scores(self.metric)[1:]]
        scores.append(self.missing[modality].get(self.metric, math.nan))
        finite = [x for x in scores if not math.isnan(x)]
        if not finite:
            return math.nan
        return min(finite) if self.higher_is_better else max(finite)

    @property
    def modalities(self) -> list[str]:
        return list(self.kinds)

    def curve(self, modality: str, corruption: str) -> Curve | None:
        return next((c for c in self.curves if c.modality == modality and c.corruption == corruption), None)

    def to_frame(self) -> pd.DataFrame:
        """One row per (modality, corruption, severity) — severity 0 is the clean score — plus one ``missing`` row
        per modality; metric columns (``metric`` first) and each curve's relative/effective robustness."""
        rows = []
        for m, kind in self.kinds.items():
            for c in (c for c in self.curves if c.modality == m):
                for sev, (level, metrics) in enumerate(zip(c.levels, c.metrics)):
                    rows.append(
                        {
                            "modality": m,
                            "kind": kind,
                            "corruption": c.corruption,
                            "severity": sev,
                            "level": level,
                            "unit": c.unit,
                            **metrics,
                            "relative_robustness": c.relative,
                            "effective_robustness": c.effective,
                        }
                    )
            rows.append(
                {
                    "modality": m,
                    "kind": kind,
                    "corruption": "missing",
                    "severity": None,
                    "level": math.nan,
                    "unit": "modality absent in every row",
                    **self.missing[m],
                }
            )
            if m in self.reference:
                rows.append(
                    {
                        "modality": m,
                        "kind": kind,
                        "corruption": "reference",
                        "severity": None,
                        "level": math.nan,
                        "unit": f"best model without {m}: {self.reference_name}",
                        **self.reference[m],
                    }
                )
        frame = pd.DataFrame(rows)
        frame["severity"] = frame["severity"].astype("Int64")
        metric_cols = [self.metric] + [k for k in self.clean if k != self.metric and k != "rows"]
        cols = [
            "modality",
            "kind",
            "corruption",
            "severity",
            "level",
            "unit",
            *metric_cols,
            "relative_robustness",
            "effective_robustness",
        ]
        return frame.reindex(columns=cols)

    def summary_frame(self) -> pd.DataFrame:
        """One row per (modality, corruption): clean, most severe and missing scores, relative/effective robustness."""
        rows = []
        for m in self.kinds:
            curves = [c for c in self.curves if c.modality == m]
            missing = self.missing[m].get(self.metric, math.nan)
            for c in curves:
                s = c.scores(self.metric)
                levels = ", ".join(f"{v:g}" for v in c.levels[1:])
                rows.append(
                    {
                        "modality": m,
                        "corruption": c.corruption,
                        "levels": levels,
                        "clean": s[0],
                        "most_severe": s[-1],
                        "missing": missing,
                        "without": self.without(m),
                        "relative_robustness": c.relative,
                        "effective_robustness": c.effective,
                    }
                )
            if not curves:  # no corruption applies (or none was chosen): the "missing" score is still there
                rows.append(
                    {
                        "modality": m,
                        "corruption": "(missing only)",
                        "levels": "",
                        "clean": self.clean.get(self.metric, math.nan),
                        "most_severe": math.nan,
                        "missing": missing,
                        "without": self.without(m),
                        "relative_robustness": math.nan,
                        "effective_robustness": math.nan,
                    }
                )
        return pd.DataFrame(
            rows,
            columns=[
                "modality",
                "corruption",
                "levels",
                "clean",
                "most_severe",
                "missing",
                "without",
                "relative_robustness",
                "effective_robustness",
            ],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "rows": self.rows,
            "seed": self.seed,
            "baseline": self.baseline,
            "clean": {k: _num_out(v) for k, v in self.clean.items()},
            "kinds": dict(self.kinds),
            "missing": {m: {k: _num_out(v) for k, v in d.items()} for m, d in self.missing.items()},
            "curves": [c.to_dict() for c in self.curves],
            "reference": {m: {k: _num_out(v) for k, v in d.items()} for m, d in self.reference.items()},
            "reference_name": self.reference_name,
            "weights": [w.to_dict() for w in self.weights],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RobustnessReport":
        try:
            return cls(
                d["metric"],
                bool(d["higher_is_better"]),
                int(d["rows"]),
                int(d["seed"]),
                d["baseline"],
                {k: _num_in(v) for k, v in d["clean"].items()},
                dict(d["kinds"]),
                {m: {k: _num_in(v) for k, v in x.items()} for m, x in d["missing"].items()},
                [Curve.from_dict(c) for c in d["curves"]],
                {m: {k: _num_in(v) for k, v in x.items()} for m, x in d.get("reference", {}).items()},
                str(d.get("reference_name", "")),
                [RowWeights.from_dict(w) for w in d.get("weights", [])],
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptionError(f"not a robustness report (as written to robustness.json): {e!r}") from None

    @classmethod
    def load(cls, path: str | Path) -> "RobustnessReport":
        """Read a ``robustness.json`` written by :meth:`write`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise CorruptionError(f"cannot read the robustness report {path}: {e}") from None
        return cls.from_dict(data)

    def markdown(self) -> str:
        better = "higher" if self.higher_is_better else "lower"
        lines = [
            f"# Robustness ({self.metric}, {better} is better; {self.rows} rows, seed {self.seed})",
            "",
            f"Clean {self.metric}: {self.clean.get(self.metric, math.nan):.4f}. Relative robustness: area under "
            f"the {self.metric} curve over severities spaced evenly on [0, 1]. Effective robustness: sum over "
            f"levels of the drop relative to the clean score, minus the baseline's ({self.baseline}).",
            "",
            "| modality | corruption | levels | clean | most severe | missing | best without | relative | effective |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for _, r in self.summary_frame().iterrows():
            lines.append(
                f"| {r['modality']} | {r['corruption']} | {r['levels']} | {r['clean']:.4f} | "
                f"{r['most_severe']:.4f} | {r['missing']:.4f} | {r['without']:.4f} | {r['relative_robustness']:.4f} | "
                f"{r['effective_robustness']:.4f} |"
            )
        if self.reference:
            lines += [
                "",
                f"Best model without each modality ({self.reference_name}): graceful degradation means the worst "
                "score with that modality corrupted or missing stays at or above it.",
                "",
                "| modality | worst corrupted or missing | best without | margin |",
                "|---|---|---|---|",
            ]
            for m in self.kinds:
                if m in self.reference:
                    worst, ref = self.worst(m), self.without(m)
                    margin = (worst - ref) if self.higher_is_better else (ref - worst)
                    lines.append(f"| {m} | {worst:.4f} | {ref:.4f} | {margin:+.4f} |")
        if self.weights:
            lines += [
                "",
                "Per-row fusion weights over the modalities, clean → with one modality damaged:",
                "",
                "| row | damaged | " + " | ".join(self.kinds) + " |",
                "|---|---|" + "---|" * len(self.kinds),
            ]
            for w in self.weights:
                what = f"{w.modality}: {w.corruption}" + ("" if math.isnan(w.level) else f" {w.level:g}")
                cells = [f"{w.clean.get(m, 0.0):.2f} → {w.corrupted.get(m, 0.0):.2f}" for m in self.kinds]
                lines.append(f"| {w.row} | {what} | " + " | ".join(cells) + " |")
        lines += ["", f"| modality | corruption | severity | level | {self.metric} |", "|---|---|---|---|---|"]
        for _, r in self.to_frame().iterrows():
            sev = "" if pd.isna(r["severity"]) else str(int(r["severity"]))
            level = "" if pd.isna(r["level"]) else f"{r['level']:g}"
            lines.append(f"| {r['modality']} | {r['corruption']} | {sev} | {level} | {r[self.metric]:.4f} |")
        return "\n".join(lines) + "\n"

    def plot(self, modality: str) -> bytes:
        """PNG: the metric against severity, one line per corruption, horizontal lines for clean and missing."""
        from ..plotting import png_bytes, subplots  # no pyplot: the caller's matplotlib backend stays as it was

        curves = [c for c in self.curves if c.modality == modality]
        fig, ax = subplots(figsize=(6.5, 4.2))
        for c in curves:
            ax.plot(
                range(len(c.levels)),
                c.scores(self.metric),
                marker="o",
                label=f"{c.corruption} ({', '.join(f'{v:g}' for v in c.levels[1:])})",
            )
        ax.axhline(self.clean.get(self.metric, math.nan), color="grey", linestyle="--", label="clean")
        ax.axhline(
            self.missing[modality].get(self.metric, math.nan),
            color="#c0392b",
            linestyle=":",
            label=f"{modality} missing",
        )
        if modality in self.reference:
            ax.axhline(self.without(modality), color="#27ae60", linestyle="-.", label=f"best model without {modality}")
        steps = max([len(c.levels) for c in curves] + [2])
        ax.set_xticks(range(steps))
        ax.set_xlabel("severity step (0 = clean; levels in the legend)")
        ax.set_ylabel(f"{self.metric} ({'higher' if self.higher_is_better else 'lower'} is better)")
        ax.set_title(f"{modality} ({self.kinds[modality]}): {self.metric} under corruption, {self.rows} rows")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return png_bytes(fig, dpi=120)

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write robustness.csv/.json/.md and robustness_<modality>.png into ``out_dir``; returns the paths.

        Everything is rendered first, so an error leaves nothing behind; a new folder appears complete or not at all,
        and in an existing folder each file is replaced atomically (other files there are left alone).
        """
        out_dir = Path(out_dir)
        csv_buf = io.StringIO()
        self.to_frame().to_csv(csv_buf, index=False)
        files: dict[str, bytes] = {
            "robustness.csv": csv_buf.getvalue().encode(),
            "robustness.json": (json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n").encode(),
            "robustness.md": self.markdown().encode(),
            **{f"robustness_{_safe(m)}.png": self.plot(m) for m in self.kinds},
        }
        return write_files(out_dir, files, CorruptionError)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


# ------------------------------------------------------------------------------------------------------ sweep
def resolve_baseline(
    baseline: RobustnessReport | str | Path | None, metric: str
) -> tuple[str, RobustnessReport | None]:
    """(description, report) of an effective-robustness baseline; a path is read as robustness.json."""
    if baseline is None:
        return "flat: a model the corruption does not affect", None
    report = baseline if isinstance(baseline, RobustnessReport) else RobustnessReport.load(baseline)
    if report.metric != metric:
        raise CorruptionError(
            f"the baseline report measures {report.metric} and this model {metric}; "
            "use a baseline of the same kind of task"
        )
    return (str(baseline) if not isinstance(baseline, RobustnessReport) else "the given report"), report


def _effective(curve: Curve, metric: str, base: RobustnessReport | None) -> float:
    scores = curve.scores(metric)
    if base is None:
        return effective_robustness(scores)
    ref = base.curve(curve.modality, curve.corruption)
    if ref is None:
        log.warning(
            "the baseline has no %s/%s curve; its effective robustness is left empty", curve.modality, curve.corruption
        )
        return math.nan
    if len(ref.levels) != len(curve.levels) or not np.allclose(ref.levels, curve.levels):
        raise CorruptionError(
            f"the baseline swept {curve.modality}/{curve.corruption} at levels {ref.levels[1:]} "
            f"and this sweep at {curve.levels[1:]}; use the same levels for both"
        )
    return effective_robustness(scores, ref.scores(metric))


def robustness_sweep(
    model: "nn.Module",
    processors: Mapping[str, Processor],
    task: "Task",
    prepared: Prepared,
    y_true: pd.Series,
    *,
    corruptions: CorruptionSpec = None,
    clean: Mapping[str, float] | None = None,
    baseline: RobustnessReport | str | Path | None = None,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = False,
    reference: Mapping[str, Mapping[str, float]] | None = None,
    reference_name: str = "given",
    weight_rows: int = 3,
) -> RobustnessReport:
    """Score ``model`` on ``prepared`` with each modality missing and corrupted at each level.

    Args:
        model, processors, task: a fitted model and what it was fitted with.
        prepared: the decoded test rows (left unchanged); ``y_true`` their labels, in the same order.
        corruptions: which corruptions and levels (see :data:`CorruptionSpec`); None = all, default levels.
        clean: the metrics on the clean rows when already computed (saves one pass).
        baseline: a report (or its robustness.json) of a reference model for effective robustness; None = flat.
        seed: seeds the corruptions; the same seed gives the same corrupted items.
        reference: modality → test metrics of the best model that ignores that modality (e.g. from
            :func:`reference_scores`): the report's "best without" line; ``reference_name`` says what it is.
        weight_rows: for a fusion with per-row modality weights, this many rows' weights are recorded clean and
            with each modality at the most severe level of each corruption and missing (0 = none).
    """
    steps = plan_sweep(processors, corruptions)
    metric, direction = task.monitor
    baseline_name, base = resolve_baseline(baseline, metric)

    def score(modality: str, items: Sequence[Any]) -> dict[str, float]:
        # A shallow copy: only this modality's list is new; the other modalities' items are shared, never written.
        view = Prepared({**prepared.items, modality: items}, prepared.rows, prepared.targets, prepared.issues)
        return task.metrics(y_true, predict_outputs(model, make_loader(view, dict(processors), batch_size, False)))

    bar = Progress(
        len(processors) + sum(len(s.levels) for s in steps) + (clean is None),
        "robustness",
        "passes",
        enabled=progress,
        min_bar=0,
    )
    if clean is None:
        first = next(iter(processors))
        clean = score(first, prepared.items[first])
        bar.advance()
    clean = {k: float(v) for k, v in clean.items() if k != "rows"}
    missing = {}
    for m in processors:
        bar.set_postfix_str(f"{m} missing")
        missing[m] = score(m, [None] * len(prepared))
        bar.advance()
    row_weights = _WeightProbe(model, processors, prepared, weight_rows, batch_size)
    for m in processors:
        row_weights.add(m, "missing", math.nan, [None] * len(prepared))
    curves = []
    for s in steps:
        metrics = [dict(clean)]
        for level in s.levels:
            bar.set_postfix_str(f"{s.modality}: {s.corruption.name} {level:g}")
            metrics.append(
                score(
                    s.modality,
                    corrupted_column(prepared.items[s.modality], s.corruption, level, seed, s.modality, prepared.rows),
                )
            )
            bar.advance()
        worst = s.levels[-1]
        row_weights.add(
            s.modality,
            s.corruption.name,
            worst,
            corrupted_column(prepared.items[s.modality], s.corruption, worst, seed, s.modality, prepared.rows),
        )
        curve = Curve(
            s.modality, s.kind, s.corruption.name, s.corruption.unit, [s.corruption.clean_level, *s.levels], metrics
        )
        curve.relative = relative_robustness(curve.scores(metric))
        curve.effective = _effective(curve, metric, base)
        curves.append(curve)
    bar.close()
    return RobustnessReport(
        metric,
        direction == "max",
        len(prepared),
        seed,
        baseline_name,
        clean,
        {m: p.kind for m, p in processors.items()},
        missing,
        curves,
        _check_reference(reference, processors, metric),
        reference_name if reference else "",
        row_weights.rows,
    )


class _WeightProbe:
    """Collects :class:`RowWeights` for the first rows that have every modality present (so that each damage shows)."""

    def __init__(
        self, model: "nn.Module", processors: Mapping[str, Processor], prepared: Prepared, n: int, batch_size: int
    ):
        self.model, self.processors, self.prepared = model, processors, prepared
        self.rows: list[RowWeights] = []
        fusion = getattr(model, "fusion", None)
        self.enabled = n > 0 and fusion is not None and hasattr(model, "encode")
        full = [i for i in range(len(prepared)) if all(prepared.items[m][i] is not None for m in processors)]
        self.idx = full[:n]
        self.clean = self._weights(prepared) if self.enabled and self.idx else None

    def _weights(self, view: Prepared) -> list[dict[str, float]] | None:
        import torch

        from ..data.dataset import Collator

        fusion: Any = self.model.fusion
        batch = Collator(view, dict(self.processors), False, torch.long)(self.idx)
        device = next(self.model.parameters()).device
        self.model.eval()
        with torch.no_grad():
            encoded = self.model.encode(  # type: ignore[operator]
                {k: v.to(device) for k, v in batch.inputs.items()}, {k: v.to(device) for k, v in batch.masks.items()}
            )
            w = fusion.modality_weights(encoded)
        if w is None:
            return None
        names = [f.name for f in fusion.inputs]
        return [{n: round(float(v), 4) for n, v in zip(names, row)} for row in w.float().cpu().tolist()]

    def add(self, modality: str, corruption: str, level: float, items: Sequence[Any]) -> None:
        if self.clean is None:
            return
        view = Prepared({**self.prepared.items, modality: items}, self.prepared.rows, None, self.prepared.issues)
        damaged = self._weights(view)
        if damaged is None:
            return
        for i, clean, bad in zip(self.idx, self.clean, damaged):
            self.rows.append(RowWeights(int(self.prepared.rows[i]), modality, corruption, level, clean, bad))


def _check_reference(
    reference: Mapping[str, Mapping[str, float]] | None, processors: Mapping[str, Processor], metric: str
) -> dict[str, dict[str, float]]:
    if not reference:
        return {}
    unknown = [m for m in reference if m not in processors]
    if unknown:
        raise CorruptionError(
            f"reference scores are given for {unknown}, which this model does not have (its modalities: "
            f"{', '.join(processors)})"
        )
    out = {m: {k: float(v) for k, v in d.items() if k != "rows"} for m, d in reference.items()}
    lacking = [m for m, d in out.items() if metric not in d]
    if lacking:
        raise CorruptionError(f"the reference scores for {lacking} lack the sweep's metric '{metric}'")
    return out


def reference_scores(
    without: Mapping[str, Sequence[Any]], test: Any, data_root: Any = None
) -> dict[str, dict[str, float]]:
    """modality → the test metrics of the best of the given models that ignore it, for :func:`robustness_sweep`.

    ``without``: modality → fitted pipelines (or fitted Predictors / run directories) trained without that modality,
    e.g. single-modality models of the other modalities; each is evaluated on ``test`` and the best one kept (by
    its task's monitor metric).
    """
    from ..pipeline import as_pipeline

    out: dict[str, dict[str, float]] = {}
    for m, sources in without.items():
        best: dict[str, float] | None = None
        for src in sources:
            pipe = as_pipeline(src)
            metric, direction = pipe.task.monitor
            if m in {x.name for x in pipe.modalities}:
                raise CorruptionError(f"a reference model for '{m}' must not use {m}; this one does")
            scores = {k: float(v) for k, v in pipe.evaluate(test, data_root=data_root).items() if k != "rows"}
            better = best is None or (
                scores[metric] > best[metric] if direction == "max" else scores[metric] < best[metric]
            )
            if better:
                best = scores
        if best is not None:
            out[m] = best
    return out
