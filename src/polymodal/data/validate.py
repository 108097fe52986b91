"""Check every row of a table before training, through the very decode path that ``fit`` uses."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..config import PolymodalConfig
from ..errors import RowIssue, row_label
from ..schema import Schema, infer_schema
from .dataset import prepare
from .loaders import is_empty
from .processors import LoadContext, build_processors
from .readers import Table


@dataclass
class ValidationReport:
    rows: int
    schema: Schema
    issues: list[RowIssue] = field(default_factory=list)

    @property
    def bad_rows(self) -> int:
        return len({i.row for i in self.issues})

    @property
    def ok(self) -> bool:
        return not self.issues


def validate_table(
    table: Table, label: str | list[str] | None, config: PolymodalConfig, progress: bool = True
) -> ValidationReport:
    """Decode every cell; report unreadable/corrupt/missing files, escaping paths, limits, bad numbers, empty labels
    (several targets: rows where every target is empty; one missing target is fine for a multi-task model)."""
    frame = table.frame
    schema = infer_schema(frame, label, config.columns, config.ignore)
    issues: list[RowIssue] = []
    if isinstance(label, str):
        issues += [RowIssue(row_label(i), label, "label is empty") for i, v in frame[label].items() if is_empty(v)]
    elif label is not None:
        empty = frame[label].map(is_empty).all(axis=1)
        issues += [RowIssue(row_label(i), ",".join(label), "every target is empty") for i in frame.index[empty]]
    _, processors = build_processors(schema, config)
    ctx = LoadContext(table.root, config.limits)
    for p in processors.values():
        p.fit(frame, ctx)
    issues += prepare(frame, processors, ctx, on_error="missing", progress=progress, what="rows", quiet=True).issues
    issues.sort(key=RowIssue.sort_key)
    return ValidationReport(len(frame), schema, issues)


def issues_frame(issues: list[RowIssue]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"row": i.row, "column": i.column, "problem": i.problem} for i in issues], columns=["row", "column", "problem"]
    )
