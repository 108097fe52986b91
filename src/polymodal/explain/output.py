"""Writing explanations to a folder: explanations.json, one PNG per row, importance.csv/.json/.md/.png.

Everything is rendered in memory first, so an error leaves nothing behind; a new folder appears complete or not at
all, and in an existing folder each file is replaced atomically (other files there are left alone).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

from ..errors import ExplainError
from ..io import write_files
from .attributions import Explanation
from .importance import ImportanceResult
from .plots import figure_png, plot_explanation, plot_importance


def _safe(name: object) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


def explanation_filename(e: Explanation) -> str:
    return f"row_{_safe(e.index)}.png"


def write_explanations(
    out_dir: str | Path, explanations: Sequence[Explanation], importance: ImportanceResult | None = None
) -> list[Path]:
    """Write the explanations (and the importance, when given) into ``out_dir``; returns the files written."""
    out_dir = Path(out_dir)
    files: dict[str, bytes] = {}
    rows = []
    for e in explanations:
        name = explanation_filename(e)
        files[name] = figure_png(plot_explanation(e))
        rows.append({**e.to_dict(), "plot": name})
    if explanations:
        files["explanations.json"] = (
            json.dumps(
                {"method": explanations[0].method, "explained": explanations[0].explained, "rows": rows},
                indent=2,
                allow_nan=False,
            )
            + "\n"
        ).encode()
    if importance is not None:
        buf = io.StringIO()
        importance.to_frame().to_csv(buf, index=False)
        files["importance.csv"] = buf.getvalue().encode()
        files["importance.json"] = (json.dumps(importance.to_dict(), indent=2, allow_nan=False) + "\n").encode()
        files["importance.md"] = importance.markdown().encode()
        files["importance.png"] = figure_png(plot_importance(importance))
    return write_files(out_dir, files, ExplainError)
