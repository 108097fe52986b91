"""Multi-label targets: a cell holding a row's tags, as a list or as text, and the rule that recognises such a column.

A cell is read as tags when it is a list (or tuple, or array: a DataFrame or JSONL table), a JSON list string
(``'["a", "b"]'``: how a CSV keeps a list) or a string of tags joined by a separator (``"a|b"``; a string without
the separator is one tag; a string that starts with "[" or "{" must be a JSON list). An empty list (``[]``, ``'[]'``) is a row without tags, a valid label; an empty cell
(NaN, None, "") is a missing label. Tags are matched by their text with surrounding blanks removed, like classes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .errors import DataError, RowIssue

DEFAULT_SEPARATOR = "|"
_LISTS = (list, tuple, np.ndarray)
# A label column is multi-label when at least this share of its values are lists or JSON lists, or contain the
# separator (in that case the tags must also recur: see looks_multilabel).
_LIST_SHARE = 0.5
_JOINED_SHARE = 0.1
_RECURRING_SHARE = 0.5
_SAMPLE = 2_000


def is_missing(value: Any) -> bool:
    """An empty cell: None, NaN or a blank string (a missing label, unlike an empty list)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def is_json_list(value: Any) -> bool:
    """A string that holds a JSON list (``'["a", "b"]'``, ``'[]'``)."""
    if not (isinstance(value, str) and value.lstrip().startswith("[") and value.rstrip().endswith("]")):
        return False
    try:
        return isinstance(json.loads(value), list)
    except ValueError:
        return False


def _tag(item: Any) -> str:
    if isinstance(item, (np.generic,)):
        item = item.item()
    if isinstance(item, float) and item.is_integer():
        item = int(item)
    if isinstance(item, bool) or not isinstance(item, (str, int, float)):
        raise ValueError(f"a tag must be a string or a number, not {type(item).__name__} ({item!r})")
    return str(item).strip()


def parse_tags(value: Any, separator: str = DEFAULT_SEPARATOR) -> list[str] | None:
    """The tags of one cell, in order, without duplicates or blanks; None for a missing label.

    Raises ValueError (with what is wrong) for a cell that cannot hold tags: a dict, a nested list, a string that
    starts like a JSON list but is not one.
    """
    if isinstance(value, _LISTS):
        items: Iterable[Any] = value.tolist() if isinstance(value, np.ndarray) else value
    elif is_missing(value):
        return None
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "{")):  # JSON: it must be a list (a tag starting with a bracket is not read)
            try:
                parsed = json.loads(text)
            except ValueError as e:
                raise ValueError(f"{_short(value)} starts like JSON but is not valid JSON ({e})") from None
            if not isinstance(parsed, list):
                raise ValueError(f"{_short(value)} is JSON but not a list")
            items = parsed
        else:
            items = text.split(separator)
    elif isinstance(value, (dict, set, frozenset)):
        raise ValueError(f"a label must be a list of tags or a string of tags, not a {type(value).__name__}")
    else:
        items = [value]
    tags: dict[str, None] = {}
    for item in items:
        tag = _tag(item)
        if tag:
            tags[tag] = None
    return list(tags)


def tag_lists(values: Iterable[Any], separator: str = DEFAULT_SEPARATOR, rows: Iterable[Any] | None = None) -> list:
    """:func:`parse_tags` of every value; a :class:`~polymodal.errors.DataError` naming each bad row otherwise
    (``rows``: the row labels used in the message, default 0, 1, ...)."""
    values = list(values)
    names = list(rows) if rows is not None else list(range(len(values)))
    out, issues = [], []
    for row, value in zip(names, values):
        try:
            out.append(parse_tags(value, separator))
        except ValueError as e:
            issues.append(RowIssue(row, "label", str(e)))
            out.append(None)
    if issues:
        raise DataError(
            f"{len(issues)} multi-label labels cannot be read as tags:",
            issues,
            hint=f"Give each row a list of tags: a JSON list ('[\"a\", \"b\"]', '[]' for none) or tags joined by "
            f"'{separator}' (task.tag_separator), e.g. 'a{separator}b'.",
        )
    return out


def looks_multilabel(values: Iterable[Any], separator: str = DEFAULT_SEPARATOR) -> str | None:
    """Why a label column holds several tags per row, or None when it does not.

    Lists or JSON lists in half of the values or more; or the separator in at least a tenth of the values, with
    the tags recurring: at least half of them appear in several distinct values (combinations of tags, not class
    names that happen to contain the separator, such as "cat|dog" and "red|blue").
    """
    present = [v for v in values if not (not isinstance(v, _LISTS) and is_missing(v))][:_SAMPLE]
    if not present:
        return None
    lists = sum(isinstance(v, _LISTS) or is_json_list(v) for v in present)
    if lists >= _LIST_SHARE * len(present):
        return f"{lists / len(present):.0%} of the label values are lists of tags"
    strings = [v.strip() for v in present if isinstance(v, str) and not is_json_list(v)]  # ('[]': no tags)
    joined = [s for s in strings if separator in s]
    if not strings or len(joined) < max(2, _JOINED_SHARE * len(present)):
        return None
    seen_in: dict[str, int] = {}
    for s in set(strings):
        for t in {t.strip() for t in s.split(separator) if t.strip()}:
            seen_in[t] = seen_in.get(t, 0) + 1
    recurring = sum(n >= 2 for n in seen_in.values())
    if recurring < _RECURRING_SHARE * len(seen_in):
        return None
    return (
        f"{len(joined) / len(present):.0%} of the label values are tags joined by '{separator}' "
        f"({len(seen_in)} distinct tags, {recurring} of them in several combinations)"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
