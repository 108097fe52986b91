"""What a notebook shows of a predictor: its HTML summary (``Predictor._repr_html_``), its per-epoch history as a
DataFrame and its training curves as a matplotlib ``Figure`` (drawn without pyplot: see :mod:`polymodal.plotting`).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from ..pipeline import FittedPipeline
from ..schema import Schema
from . import plots
from .context import read_history

_STYLE = (
    "<style>.pm-summary table{border-collapse:collapse;margin:0 0 .6em 0}"
    ".pm-summary td,.pm-summary th{border:1px solid #ddd;padding:2px 8px;text-align:left}"
    ".pm-summary h4{margin:.6em 0 .2em 0}</style>"
)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_text(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)


def summary_html(label: Any, summary: Mapping[str, Any] | None, schema: Schema | None) -> str:
    """The HTML a notebook shows for a predictor: not fitted yet, or its schema (column, kind, why), modalities with
    their encoders, the fit's figures and the best epoch's validation metrics. Every value is escaped."""
    title = f"<b>polymodal Predictor</b> (label <code>{html.escape(str(label))}</code>)"
    if summary is None:
        return f'<div class="pm-summary">{title}: not fitted</div>'
    parts = [_STYLE, '<div class="pm-summary">', title]
    fit_rows = [
        [k.replace("_", " "), summary.get(k)]
        for k in ("problem_type", "fusion", "preset", "epochs_run", "best_epoch", "stopped_early", "fit_seconds")
    ]
    fit_rows.append(["parameters", f"{summary.get('parameters') or 0:,}"])
    parts += ["<h4>Fit</h4>", _table(["", ""], fit_rows)]
    validation = summary.get("validation") or {}
    if validation:
        parts += [
            "<h4>Validation metrics (best epoch)</h4>",
            _table(["metric", "value"], [[k, v] for k, v in validation.items()]),
        ]
    modalities = summary.get("modalities") or {}
    parts += [
        "<h4>Modalities</h4>",
        _table(
            ["modality", "kind", "columns", "encoder"],
            [[name, m.get("kind"), m.get("columns"), m.get("encoder")] for name, m in modalities.items()],
        ),
    ]
    if schema is not None:
        parts += [
            "<h4>Schema</h4>",
            _table(["column", "kind", "why"], [[c.name, c.kind.value, c.reason] for c in schema.columns]),
        ]
    parts.append("</div>")
    return "".join(parts)


def history_frame(pipeline: FittedPipeline) -> pd.DataFrame:
    """One row per epoch (``epoch`` 0-based, ``train_loss``, ``val_loss``, ``val_<metric>``); empty when the run
    kept no history (a loaded run directory reads its ``training_log.csv`` instead, where there is one)."""
    frame = read_history(pipeline, None)
    return frame if frame is not None else pd.DataFrame(columns=["epoch"])


def training_figure(pipeline: FittedPipeline) -> Figure:
    """The training curves (loss, validation metric, the best epoch dashed) as a matplotlib ``Figure``."""
    history = history_frame(pipeline)
    metric, mode = pipeline.task.monitor
    r = pipeline.fit_result
    return plots.training_curves(history, metric, mode, None if r is None else r.best_epoch)
