"""Columns as the explanations see them: how one input column's decoded items are made missing or shuffled.

Image, audio and text columns are one modality each, so a column's items are the modality's items. The tabular
modality holds several columns in one item (standardised numbers with missing flags, category indices); a tabular
column is made missing by setting just its own entries to "missing", exactly as an empty cell would be decoded.
Views are registered by processor name; a processor with no registered view (a pretrained model's) is treated as
one column whose items are dropped or shuffled whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.processors import MISSING_CATEGORY, Processor, TabularProcessor
from ..data.stored import take
from ..registry import Registry


@dataclass
class ColumnView:
    """One input column of a fitted model: its name, kind, modality, and how to drop or permute its items."""

    column: str
    kind: str
    modality: str
    drop_fn: Callable[[Sequence[Any]], Sequence[Any]]
    permute_fn: Callable[[Sequence[Any], np.ndarray], Sequence[Any]]

    def drop(self, items: Sequence[Any]) -> Sequence[Any]:
        """The modality's items with this column missing in every row (new lists; ``items`` is not modified)."""
        return self.drop_fn(items)

    def permute(self, items: Sequence[Any], perm: np.ndarray) -> Sequence[Any]:
        """The modality's items with this column's values taken from rows ``perm`` (row i gets row perm[i]'s)."""
        return self.permute_fn(items, perm)


#: processor registry name → ``f(modality name, processor) -> list[ColumnView]``
COLUMN_VIEWS: Registry[Any] = Registry("column view")


def _whole(modality: str, proc: Processor) -> list[ColumnView]:
    column = proc.columns[0] if len(proc.columns) == 1 else modality
    return [
        ColumnView(
            column, proc.kind, modality, lambda items: [None] * len(items), lambda items, perm: take(items, perm)
        )
    ]


for _name in ("image", "audio", "text", "timeseries"):
    COLUMN_VIEWS.register(_name)(_whole)


def _tabular_item(num: np.ndarray, cat: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """A tabular item, or None (the modality absent) when every column is missing, as the processor decodes a row
    whose tabular cells are all empty."""
    if (num[:, 1] == 1).all() and (cat == MISSING_CATEGORY).all():
        return None
    return num, cat


@COLUMN_VIEWS.register("tabular")
def _tabular(modality: str, proc: TabularProcessor) -> list[ColumnView]:
    n_num, n_cat = len(proc.numeric), len(proc.categorical)

    def parts(item: Any) -> tuple[np.ndarray, np.ndarray]:
        if item is None:
            return np.tile(np.array([0.0, 1.0], np.float32), (n_num, 1)), np.zeros(n_cat, np.int64)
        return item[0].copy(), item[1].copy()

    def view(part: int, j: int, missing: Any, name: str, kind: str) -> ColumnView:
        """Column ``j`` of the item's numeric (``part`` 0) or category (1) array."""

        def edit(items: Sequence[Any], value_of: Any) -> Sequence[Any]:
            out = []
            for i, it in enumerate(items):
                arrays = parts(it)
                arrays[part][j] = value_of(i)
                out.append(_tabular_item(*arrays))
            return out

        return ColumnView(
            name,
            kind,
            modality,
            lambda items: edit(items, lambda i: missing),
            lambda items, perm: edit(items, lambda i: parts(items[int(perm[i])])[part][j]),
        )

    # A dropped numeric value is the training mean flagged missing: what an empty cell decodes to.
    return [view(0, j, (0.0, 1.0), proc.numeric[j], "numeric") for j in range(n_num)] + [
        view(1, j, MISSING_CATEGORY, proc.categorical[j], "category") for j in range(n_cat)
    ]


def column_views(processors: dict[str, Processor]) -> list[ColumnView]:
    """Every input column of a fitted model, in the order of its modalities (tabular: numbers, then categories)."""
    out: list[ColumnView] = []
    for modality, proc in processors.items():
        name = getattr(type(proc), "registry_name", "")
        factory = COLUMN_VIEWS.get(name) if name in COLUMN_VIEWS else _whole
        out += factory(modality, proc)
    return out
