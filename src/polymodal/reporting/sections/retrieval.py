"""Retrieval models (``problem_type: retrieval``): Recall@1/5/10, MRR and median rank in both directions, and a
gallery of test queries with their top hits among the test table's targets (text as text, images as thumbnails).

The test table's rows are pairs (row i's query describes row i's target), so its targets are the collection every
query is searched in, exactly as ``evaluate`` scores them.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure as MplFigure

from ...registry import register
from ...schema import ColumnKind
from ...search import exact_search
from ...tasks.retrieval import RetrievalTask
from .. import plots
from ..blocks import Figure, Gallery, Note, Section, Table
from ..context import ReportContext, fmt
from . import SECTIONS, ReportSection

#: hits shown per example query
EXAMPLE_HITS = 5
THUMBNAIL_PX = 96
DIRECTIONS = (("q2t_", "query → target"), ("t2q_", "target → query"))
ROWS = (
    ("recall@1", "Recall@1"),
    ("recall@5", "Recall@5"),
    ("recall@10", "Recall@10"),
    ("mrr", "MRR"),
    ("median_rank", "median rank"),
)


@register(SECTIONS, "retrieval")
class Retrieval(ReportSection):
    title = "Retrieval"
    order = 45
    problem_types = frozenset({"retrieval"})

    def build(self, ctx: ReportContext) -> Section:
        task = ctx.pipeline.task
        assert isinstance(task, RetrievalTask), "the retrieval section is built for retrieval models only"
        m, n = ctx.scored.metrics, int(ctx.scored.metrics["rows"])
        r = task.retrieval
        sec = self.section(
            f"Each of the {n:,} test rows is a pair: its query ({', '.join(r.query)}) should find its own target "
            f"({', '.join(r.target)}) among the {n:,} targets of the table, and the other way round. Recall@k: share "
            "of rows whose pair is in the top k; MRR: mean of 1 / its rank; median rank: 1 is best. Random ranking "
            f"gives Recall@k = k / {n:,} and a median rank of about {max(1, (n + 1) // 2):,}."
        )
        sec.blocks.append(
            Table(
                ["metric", *(d for _, d in DIRECTIONS), "random"],
                [
                    [label, *(fmt(m.get(p + key, float("nan"))) for p, _ in DIRECTIONS), _random(key, n)]
                    for key, label in ROWS
                ],
                caption=f"{n:,} held-out pairs of {ctx.scored.source}",
                numeric=[False, True, True, True],
            )
        )
        k = ctx.options.n_examples
        if k == 0:
            sec.blocks.append(Note("Examples left out (--examples 0)."))
            return sec
        ctx.progress(f"retrieval examples ({k} queries, top {EXAMPLE_HITS} hits)")
        queries = task.embeddings(ctx.scored.outputs, "query")
        targets = task.embeddings(ctx.scored.outputs, "target")
        hits = exact_search(queries, targets, min(EXAMPLE_HITS, len(targets)))
        rows = np.random.default_rng(ctx.options.seed).permutation(len(queries))[:k]
        cells = _Cells(ctx.scored.frame, ctx.scored.root, ctx.pipeline.schema.kinds())
        figures = [
            Figure(
                f"query row {i}",
                plots.to_png(_example(cells, r.query, r.target, int(i), hits.indices[i], hits.scores[i]), dpi=80),
                f"test row {i}'s query and its top {hits.indices.shape[1]} targets",
                _caption(int(i), hits.indices[i]),
            )
            for i in sorted(rows)
        ]
        sec.blocks.append(Gallery(f"Example queries (query → target, top {hits.indices.shape[1]})", figures))
        return sec


def _random(key: str, n: int) -> str:
    if key.startswith("recall@"):
        return fmt(min(1.0, int(key.split("@")[1]) / max(n, 1)))
    if key == "mrr":
        return fmt(float(np.mean(1.0 / np.arange(1, n + 1))) if n else float("nan"))
    return fmt(float((n + 1) / 2))


def _caption(row: int, hits: np.ndarray) -> str:
    found = np.flatnonzero(hits == row)
    where = (
        f"its own target is hit {int(found[0]) + 1}" if len(found) else f"its own target is not in the top {len(hits)}"
    )
    return f"Test row {row}: {where} (outlined in green)."


class _Cells:
    """What a row's columns look like in a figure: an image column as a thumbnail, anything else as text."""

    def __init__(self, frame: pd.DataFrame, root: Path, kinds: dict[str, ColumnKind]):
        self.frame, self.root, self.kinds = frame, root, kinds

    def image(self, row: int, columns: list[str]) -> np.ndarray | None:
        for c in columns:
            if self.kinds.get(c) is ColumnKind.IMAGE:
                value = self.frame[c].iloc[row]
                if isinstance(value, str) and value:
                    return _thumbnail(self.root / value)
        return None

    def text(self, row: int, columns: list[str]) -> str:
        parts = []
        for c in columns:
            if self.kinds.get(c) is ColumnKind.IMAGE and len(columns) == 1:
                continue
            value = self.frame[c].iloc[row]
            shown = "—" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
            parts.append(shown if len(columns) == 1 else f"{c}: {shown}")
        return "\n".join(textwrap.fill(p, 28, max_lines=5, placeholder=" …") for p in parts)


def _thumbnail(path: Path) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
            rgb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            return np.asarray(rgb)
    except (OSError, ValueError):  # a missing or unreadable file: the panel says so in text
        return None


def _panel(ax: Any, cells: _Cells, row: int, columns: list[str], title: str, colour: str | None) -> None:
    picture = cells.image(row, columns)
    if picture is not None:
        ax.imshow(picture)
    text = cells.text(row, columns)
    if text or picture is None:
        ax.text(
            0.5,
            0.5 if picture is None else -0.08,
            text or "(unreadable)",
            ha="center",
            va="center" if picture is None else "top",
            fontsize=8,
            wrap=True,
            transform=ax.transAxes,
        )
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(colour is not None)
        if colour is not None:
            spine.set_edgecolor(colour)
            spine.set_linewidth(3)


def _example(
    cells: _Cells, query: list[str], target: list[str], row: int, hits: np.ndarray, scores: np.ndarray
) -> MplFigure:
    fig = MplFigure(figsize=(1.9 * (len(hits) + 1), 2.6), layout="constrained")
    axes = fig.subplots(1, len(hits) + 1, squeeze=False)[0]
    _panel(axes[0], cells, row, query, f"query (row {row})", plots.ACCENT)
    for rank, (ax, hit, score) in enumerate(zip(axes[1:], hits, scores, strict=True), 1):
        _panel(ax, cells, int(hit), target, f"#{rank} row {int(hit)} · {score:.2f}", "#16a34a" if hit == row else None)
    return fig
