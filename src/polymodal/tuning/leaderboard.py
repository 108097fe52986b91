"""The study's leaderboard (CSV and markdown, best first) and its plot (optimisation history, parameter importances)."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from matplotlib.ticker import MaxNLocator
from optuna.trial import TrialState

from ..io import atomic_file
from ..plotting import png_bytes, subplots

log = logging.getLogger("polymodal")

__all__ = ["leaderboard", "write_outputs"]

_STATE_ORDER = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1, TrialState.RUNNING: 2, TrialState.FAIL: 3}


def leaderboard(study: optuna.Study, monitor: str) -> pd.DataFrame:
    """One row per trial, best first: completed trials by score, then pruned (by their last score), running and
    failed ones. Columns: ``trial``, ``state``, ``<monitor>`` (the trial's best validation score), ``best_epoch``
    (1-based), ``epochs``, ``seconds``, one column per searched parameter, and ``note`` (why a trial failed or
    where it was pruned)."""
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:
            continue
        # a pruned trial's score is its last reported one; a failed trial has none
        value = t.value if t.state == TrialState.COMPLETE else _last(t) if t.state == TrialState.PRUNED else None
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                monitor: value,
                "best_epoch": t.user_attrs.get("best_epoch"),
                "epochs": t.user_attrs.get("epochs"),
                "seconds": None if seconds is None else round(seconds, 1),
                **t.params,
                "note": t.user_attrs.get("error") or t.user_attrs.get("note") or "",
            }
        )
    frame = pd.DataFrame(rows, columns=None if rows else ["trial", "state", monitor, "seconds", "note"])
    if frame.empty:
        return frame
    frame["_order"] = frame["state"].map({s.name.lower(): o for s, o in _STATE_ORDER.items()}).fillna(4)
    frame["_score"] = frame[monitor].astype(float) * (-1 if maximize else 1)
    frame = frame.sort_values(["_order", "_score", "trial"], na_position="last", kind="stable")
    return frame.drop(columns=["_order", "_score"]).reset_index(drop=True)


def _last(t: optuna.trial.FrozenTrial) -> float | None:
    steps = t.intermediate_values
    return steps[max(steps)] if steps else None


def markdown(frame: pd.DataFrame) -> str:
    """The leaderboard as a markdown table (numbers to 4 significant digits)."""
    if frame.empty:
        return "(no trials yet)\n"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_cell(row[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")


def write_outputs(study: optuna.Study, monitor: str, out: Path, importances: bool = True) -> pd.DataFrame:
    """Write leaderboard.csv, leaderboard.md and tune.png into ``out`` (each atomically); return the frame.

    ``importances``: also plot the parameters' importances (fANOVA over the completed trials; needs two)."""
    frame = leaderboard(study, monitor)
    with atomic_file(out / "leaderboard.csv", "w", newline="", encoding="utf-8") as f:
        frame.to_csv(f, index=False)
    with atomic_file(out / "leaderboard.md", "w", encoding="utf-8") as f:
        f.write(f"# Tuning leaderboard ({monitor} on validation, best first)\n\n" + markdown(frame))
    with atomic_file(out / "tune.png", "wb") as f:
        f.write(plot(study, monitor, importances))
    return frame


def plot(study: optuna.Study, monitor: str, importances: bool = True) -> bytes:
    """The optimisation history (each trial's score and the best so far) and, with two or more completed trials
    and ``importances``, each parameter's importance, as PNG bytes."""
    fig, (ax, ax_imp) = subplots(1, 2, figsize=(11, 4))
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.number)
    pruned = [(t.number, _last(t)) for t in trials if t.state == TrialState.PRUNED and _last(t) is not None]
    ax.scatter([t.number for t in done], [t.value for t in done], label="complete", color="tab:blue", zorder=3)
    if pruned:
        ax.scatter(*zip(*pruned), label="pruned (last score)", color="tab:gray", marker="x", zorder=3)
    best, xs, ys = None, [], []
    for t in done:
        assert t.value is not None
        best = t.value if best is None else (max if maximize else min)(best, t.value)
        xs.append(t.number)
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{monitor} (validation)")
    ax.set_title("optimisation history")
    if trials:
        ax.legend(loc="best", fontsize=8)
    values: dict[str, float] = {}
    if importances and len(done) >= 2:
        try:
            with warnings.catch_warnings():  # few trials: "importances will be equal" is what the plot shows
                warnings.simplefilter("ignore")
                values = optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
                )
        except (RuntimeError, ValueError) as e:  # e.g. every completed trial has the same parameters
            log.debug("no parameter importances: %s", e)
    if values:
        names = list(values)[::-1]
        ax_imp.barh(names, [values[n] for n in names], color="tab:blue")
        ax_imp.set_xlabel("importance (fANOVA)")
        ax_imp.tick_params(axis="y", labelsize=8)
    else:
        ax_imp.text(0.5, 0.5, "importances need two or more\ncompleted trials", ha="center", va="center")
        ax_imp.set_axis_off()
    ax_imp.set_title("parameter importances")
    fig.tight_layout()
    return png_bytes(fig)
