"""Column kinds, the rules that infer them, and user overrides.

Each inferred kind comes with the reason it was chosen, so ``polymodal info`` can explain itself.
Image, audio and text columns are one modality each; numeric and category columns together form one
``tabular`` modality (as AutoGluon and Ludwig treat tabular features).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import SchemaError
from .tags import DEFAULT_SEPARATOR, is_json_list, looks_multilabel

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# what libsndfile (1.1+, the one soundfile bundles) decodes; MP3 included
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff"}
# one series per file: rows = time steps, columns = channels (a .npy array T x C or T)
TIMESERIES_EXTENSIONS = {".npy", ".csv", ".parquet"}
# the containers the video loader (polymodal.data.video, PyAV) opens and polymodal.video_io writes
VIDEO_EXTENSIONS = {".mp4", ".webm", ".mkv", ".avi", ".mov"}
# media files that a column may name but no loader decodes: such a column is ignored with a warning saying why
UNSUPPORTED_MEDIA = {".m4a", ".aac", ".wma", ".amr", ".m4v", ".heic", ".heif"}
UNSUPPORTED_MEDIA |= {".svg", ".psd", ".cr2", ".nef", ".dng"}
# Inference looks at the first characters of a cell only: a 100 MB text cell must not cost gigabytes to classify.
CELL_PREFIX = 10_000
TABULAR = "tabular"
_SAMPLE = 200
_PATH_SHARE = 0.8

log = logging.getLogger("polymodal")


class ColumnKind(str, Enum):
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    TEXT = "text"
    TIMESERIES = "timeseries"
    NUMERIC = "numeric"
    CATEGORY = "category"
    IGNORE = "ignore"


@dataclass
class ColumnSpec:
    name: str
    kind: ColumnKind
    reason: str


@dataclass
class Modality:
    """One encoder's input: a kind and the columns it reads."""

    name: str
    kind: str  # image | audio | video | text | timeseries | tabular
    columns: list[str]


@dataclass
class Schema:
    label: str | list[str]  # a list: the targets of a multi-task model
    columns: list[ColumnSpec] = field(default_factory=list)

    def kinds(self) -> dict[str, ColumnKind]:
        return {c.name: c.kind for c in self.columns}

    def input_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.kind is not ColumnKind.IGNORE]

    def of_kind(self, kind: ColumnKind) -> list[str]:
        return [c.name for c in self.columns if c.kind is kind]

    def modalities(self) -> list[Modality]:
        mods = [
            Modality(c.name, c.kind.value, [c.name])
            for c in self.columns
            if c.kind in (ColumnKind.IMAGE, ColumnKind.AUDIO, ColumnKind.VIDEO, ColumnKind.TEXT, ColumnKind.TIMESERIES)
        ]
        tab = self.of_kind(ColumnKind.NUMERIC) + self.of_kind(ColumnKind.CATEGORY)
        if tab:
            name = TABULAR if TABULAR not in {m.name for m in mods} else f"{TABULAR}_"
            mods.append(Modality(name, TABULAR, tab))
        return mods

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "columns": [{**asdict(c), "kind": c.kind.value} for c in self.columns]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Schema":
        return cls(d["label"], [ColumnSpec(c["name"], ColumnKind(c["kind"]), c["reason"]) for c in d["columns"]])

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _file_name(v: Any) -> str | None:
    """The name a cell gives its file: a path, or an in-memory file's name (``data.loaders.InMemoryFile``: media
    held inside the table, named by its format; recognised by its fields, as this module imports no loaders)."""
    if isinstance(v, str):
        return v.strip()
    name = getattr(v, "name", None)
    return name if isinstance(name, str) and isinstance(getattr(v, "data", None), bytes) else None


def _looks_like_path(values: pd.Series, extensions: set[str]) -> float:
    def ok(v: Any) -> bool:
        name = _file_name(v)
        return name is not None and Path(name).suffix.lower() in extensions

    return float(np.mean([ok(v) for v in values])) if len(values) else 0.0


def _unsupported_files(values: pd.Series) -> str | None:
    """The extension (e.g. ``.m4a``) when most values are paths of media files that no loader here decodes."""
    if _looks_like_path(values, UNSUPPORTED_MEDIA) < _PATH_SHARE:
        return None
    suffixes = Counter(Path(v.strip()).suffix.lower() for v in values if isinstance(v, str))
    return "/".join(sorted(e for e in suffixes if e in UNSUPPORTED_MEDIA))


def as_numbers(values: pd.Series) -> pd.Series:
    """Each cell as a float, NaN where it is no number. Unlike ``pd.to_numeric(errors="coerce")``, which raises
    OverflowError on an integer past float's range even when told to coerce, every cell gets an answer (such an
    integer becomes inf)."""

    def number(v: Any) -> float:
        if v is None or isinstance(v, bytes):  # float(b"1") would parse bytes as text
            return math.nan
        try:
            return float(v)
        except OverflowError:
            return math.inf if v > 0 else -math.inf
        except (TypeError, ValueError):
            return math.nan

    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype(float)
    return values.map(number).astype(float)


def _as_text(value: Any) -> str:
    """A cell as text; bytes (a Parquet binary column) decoded leniently (pandas' astype(str) raises on them)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _is_integer_valued(values: pd.Series) -> bool:
    v = values.to_numpy(dtype=float)
    return bool(np.all(np.isfinite(v)) and np.all(v == np.round(v)))


# Cell values that hold several values: pandas cannot hash them (nunique, value_counts fail) and no processor reads
# them, so they are refused with a message before anything else looks at the column (a multi-label target is read
# by polymodal.tags instead).
_COLLECTIONS = (list, tuple, set, frozenset, dict, np.ndarray)
_TAG_SEPARATORS = (";", "|")


def _first_collection(series: pd.Series) -> tuple[Any, Any] | None:
    """(row, value) of the first cell of ``series`` that holds a list, tuple, set, dict or array; None if none."""
    if series.dtype != object:
        return None
    hits = series[series.map(lambda v: isinstance(v, _COLLECTIONS))]
    return None if hits.empty else (hits.index[0], hits.iloc[0])


def _short(value: Any) -> str:
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_label_values(series: pd.Series, problem_type: str) -> None:
    """Refuse a label column that holds lists (list cells, or mostly JSON-list strings such as ``'["a", "b"]'``)
    for a single-label ``problem_type``: several tags per row are a multi-label target."""
    name = str(series.name)
    hit = _first_collection(series)
    if hit is None:  # a CSV keeps lists as JSON text; a few "[...]" labels may be genuine class names
        sample = series.dropna().iloc[:_SAMPLE]
        is_list = sample.map(is_json_list).astype(bool)
        if len(sample) and is_list.mean() >= 0.5:
            hit = (is_list.idxmax(), sample[is_list].iloc[0])
    if hit is not None:
        row, value = hit
        raise SchemaError(
            f"label column '{name}' holds lists (row {row}: {_short(value)}), which a {problem_type} model cannot "
            "learn: several tags per row are a multi-label target (problem_type multilabel, --problem-type "
            "multilabel; inferred for such a column when no problem type is set). To learn each combination as one "
            "class instead, join each row's tags into one string first"
        )


def check_input_values(series: pd.Series) -> None:
    """Refuse an input column whose cells hold lists (e.g. tags): a cell must hold one value."""
    hit = _first_collection(series)
    if hit is not None:
        row, value = hit
        raise SchemaError(
            f"column '{series.name}' holds lists (row {row}: {_short(value)}); a cell must hold one value. Join "
            "each row's items into one string (a text column), make one column per item, or leave the column out "
            "(ignore / --ignore). If these tags are what to predict, make the column the label: a multi-label target"
        )


def tag_separator_warning(labels: pd.Series, separator: str = DEFAULT_SEPARATOR) -> str | None:
    """A warning when the label values of a model inferred as single-label look like tags joined by another
    separator than ``separator`` (the configured ``task.tag_separator``), e.g. "a;b": each combination is then
    learned as one class of its own, which is rarely what was meant. None when they do not."""
    values = labels.dropna().tolist()
    for sep in _TAG_SEPARATORS:
        if sep != separator and looks_multilabel(values, sep) is not None:
            return (
                f"the values of label '{labels.name}' look like tags joined by '{sep}' (e.g. "
                f"{next(v for v in values if isinstance(v, str) and sep in v)!r}): each combination is learned as "
                f"one class of its own. If these are several tags per row, set task.tag_separator to '{sep}' (a "
                'multi-label model; see docs/USER_GUIDE.md, "Multi-label classification")'
            )
    return None


def infer_column(series: pd.Series) -> ColumnSpec:
    """Infer the kind of one (non-label) column from its values."""
    series_reason = timeseries_reason(series)
    if series_reason is not None:
        return ColumnSpec(str(series.name), ColumnKind.TIMESERIES, series_reason)
    check_input_values(series)
    name = str(series.name)
    nonnull = series.dropna()
    if len(nonnull) == 0:
        return ColumnSpec(name, ColumnKind.IGNORE, "every value is empty")
    n_unique = nonnull.nunique()
    if pd.api.types.is_bool_dtype(series):
        return ColumnSpec(name, ColumnKind.CATEGORY, "boolean values")
    if pd.api.types.is_numeric_dtype(series):
        if n_unique <= 1:
            return ColumnSpec(name, ColumnKind.IGNORE, "a single constant value")
        if n_unique <= 10 and _is_integer_valued(nonnull) and len(nonnull) >= 4 * n_unique:
            return ColumnSpec(name, ColumnKind.CATEGORY, f"integers with only {n_unique} distinct values")
        return ColumnSpec(name, ColumnKind.NUMERIC, f"numbers ({n_unique} distinct values)")
    sample = nonnull.iloc[:_SAMPLE] if len(nonnull) <= _SAMPLE else nonnull.sample(_SAMPLE, random_state=0)
    sample = sample.map(lambda v: v[:CELL_PREFIX] if isinstance(v, str) else v)
    for kind, exts in (
        (ColumnKind.IMAGE, IMAGE_EXTENSIONS),
        (ColumnKind.AUDIO, AUDIO_EXTENSIONS),
        (ColumnKind.VIDEO, VIDEO_EXTENSIONS),
        (ColumnKind.TIMESERIES, TIMESERIES_EXTENSIONS),
    ):
        share = _looks_like_path(sample, exts)
        if share >= _PATH_SHARE:
            return ColumnSpec(name, kind, f"{share:.0%} of sampled values are paths ending in {'/'.join(sorted(exts))}")
    unsupported = _unsupported_files(sample)
    if unsupported is not None:
        reason = (
            f"file paths ending in {unsupported}, a format no loader here decodes (images: "
            f"{'/'.join(sorted(IMAGE_EXTENSIONS))}; audio: {'/'.join(sorted(AUDIO_EXTENSIONS))}; video: "
            f"{'/'.join(sorted(VIDEO_EXTENSIONS))}): convert the files to "
            "one of these, or set the column's kind in columns if it is not a file column"
        )
        log.warning("column '%s' is ignored: %s", name, reason)
        return ColumnSpec(name, ColumnKind.IGNORE, reason)
    as_text = sample.map(_as_text)
    numeric = as_numbers(as_text)
    if numeric.notna().mean() >= 0.98 and nonnull.nunique() > 10:
        return ColumnSpec(name, ColumnKind.NUMERIC, "strings that parse as numbers")
    words = as_text.map(lambda s: len(re.findall(r"\w+", s))).mean()
    if n_unique == len(nonnull) and len(nonnull) > 20 and words <= 1.5:
        return ColumnSpec(name, ColumnKind.IGNORE, "a unique identifier per row (one distinct value per row)")
    if n_unique <= max(20, int(0.05 * len(nonnull))) and words <= 3:
        return ColumnSpec(name, ColumnKind.CATEGORY, f"short strings with {n_unique} distinct values")
    return ColumnSpec(name, ColumnKind.TEXT, f"free text ({words:.1f} words on average, {n_unique} distinct values)")


def _is_number_list(value: Any) -> bool:
    """A list/array of numbers, or of equal-length lists of numbers (one series: steps, or steps x channels)."""
    if isinstance(value, np.ndarray):
        return value.ndim in (1, 2) and value.size > 0 and np.issubdtype(value.dtype, np.number)
    if not isinstance(value, (list, tuple)) or not value:
        return False
    first = value[0]
    if isinstance(first, (list, tuple)):
        return all(isinstance(r, (list, tuple)) and len(r) == len(first) for r in value) and all(
            _is_number(v) for r in value[:50] for v in r
        )
    return all(_is_number(v) for v in value)


def _is_number(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float, np.number)) and not isinstance(v, bool))


_NUMBER_CHARS = frozenset("0123456789.eE+-, \t\r\n[]nul")  # JSON numbers, brackets, commas and null


def _json_number_list(value: Any) -> bool:
    if not isinstance(value, str) or not value.lstrip().startswith("["):
        return False
    if len(value) > CELL_PREFIX:  # a long series: its first characters decide (inference must stay cheap)
        return set(value[:CELL_PREFIX]) <= _NUMBER_CHARS and any(ch.isdigit() for ch in value[:CELL_PREFIX])
    try:
        parsed = json.loads(value)
    except ValueError:
        return False
    return _is_number_list(parsed)


def timeseries_reason(series: pd.Series) -> str | None:
    """Why ``series`` holds inline time series (cells that are arrays of numbers, or JSON arrays of numbers such as
    ``"[0.1, 0.3, 0.2]"`` or ``"[[0, 1], [1, 2]]"``, steps x channels); None when it does not. File paths are
    recognised by their extension with the other file kinds."""
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return None
    nonnull = series.dropna()
    if nonnull.empty:
        return None
    sample = nonnull.iloc[:_SAMPLE] if len(nonnull) <= _SAMPLE else nonnull.sample(_SAMPLE, random_state=0)
    arrays = float(np.mean([_is_number_list(v) for v in sample]))
    if arrays >= _PATH_SHARE:
        return f"{arrays:.0%} of sampled values are arrays of numbers (one time series per cell)"
    share = float(np.mean([_json_number_list(v) for v in sample]))
    if share >= _PATH_SHARE:
        return f"{share:.0%} of sampled values are JSON arrays of numbers (one time series per cell)"
    return None


def infer_schema(
    frame: pd.DataFrame,
    label: str | list[str] | None,
    overrides: Mapping[str, str] | None = None,
    ignore: list[str] | None = None,
) -> Schema:
    """Infer a :class:`Schema` for ``frame``; ``overrides`` (column → kind) and ``ignore`` win over inference.
    ``label``: the target column, or the list of target columns of a multi-task model (never inputs)."""
    overrides = dict(overrides or {})
    if len(frame.columns) == 0:
        raise SchemaError("the table has no columns")
    unnamed = [c for c in frame.columns if not isinstance(c, str)]
    if unnamed:
        raise SchemaError(
            f"column names must be strings; {len(unnamed)} column(s) are named by {type(unnamed[0]).__name__} "
            f"(e.g. {unnamed[0]!r}): name the columns (frame.columns = [...]) or read a table with a header row"
        )
    labels = [] if label is None else [label] if isinstance(label, str) else list(label)
    for name in labels:
        if name not in frame.columns:
            raise SchemaError(
                f"label column '{name}' is not in the table; its columns are: {', '.join(map(str, frame.columns))}"
            )
    as_input = [n for n in labels if n in overrides and overrides[n] != ColumnKind.IGNORE.value]
    if as_input:
        raise SchemaError(
            f"column(s) {', '.join(as_input)} are both a label and given an input kind in columns; a target cannot "
            "be an input: drop it from columns (or from the label)"
        )
    missing = [c for c in list(overrides) + list(ignore or []) if c not in frame.columns]
    if missing:
        raise SchemaError(f"config names columns that are not in the table: {', '.join(missing)}")
    specs = []
    for col in frame.columns:
        col = str(col)
        if col in labels:
            continue
        if col in (ignore or []):
            specs.append(ColumnSpec(col, ColumnKind.IGNORE, "listed in ignore"))
        elif col in overrides:
            if overrides[col] not in (ColumnKind.IGNORE.value, ColumnKind.TIMESERIES.value):
                check_input_values(frame[col])
            specs.append(ColumnSpec(col, ColumnKind(overrides[col]), "set in config"))
        else:
            specs.append(infer_column(frame[col]))
    return Schema(label if label is not None else "", specs)


def infer_problem_type(target: pd.Series, tag_separator: str = DEFAULT_SEPARATOR) -> tuple[str, str]:
    """Return (problem_type, reason) for a label column: multilabel when its values are lists of tags or tags
    joined by ``tag_separator`` (see :func:`polymodal.tags.looks_multilabel`), else by its distinct values."""
    why = looks_multilabel(target.tolist(), tag_separator)
    if why is not None:
        return "multilabel", why
    values = target.dropna()
    if _first_collection(values) is not None:  # a few list cells among single values: hashable for counting
        values = values.map(lambda v: _short(v) if isinstance(v, _COLLECTIONS) else v)
    n_unique = values.nunique()
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and (not _is_integer_valued(values) or n_unique > 20):
        return "regression", f"numeric label with {n_unique} distinct values"
    if n_unique == 2:
        return "binary", "two distinct label values"
    stray = stray_label_values(values)
    if stray is not None:
        return "multiclass", f"{n_unique} distinct label values; {stray}"
    return "multiclass", f"{n_unique} distinct label values"


def stray_label_values(values: pd.Series) -> str | None:
    """A warning when a label column of strings holds numbers in all but a few rows: one stray value (``n/a``,
    ``?``) turns a regression target into a many-class task without a word. None when it does not."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values) or len(values) < 10:
        return None
    text = values.map(lambda v: v[:CELL_PREFIX] if isinstance(v, str) else v)
    numeric = as_numbers(text)
    bad = values[numeric.isna()]
    if bad.empty or len(bad) > max(3, 0.02 * len(values)) or numeric.nunique() <= 10:
        return None
    shown = ", ".join(f"{_short(v)} (row {r})" for r, v in list(bad.items())[:3])
    return (
        f"all numeric but {len(bad)}: {shown}, so every number is a class of its own. Regression intended? Fix or "
        "blank the stray value(s) (rows without a label are left out), then the label is read as numbers"
    )


def label_warnings(target: pd.Series, problem_type: str) -> list[str]:
    """Warnings about a classification label that is probably not what was meant: numbers with a stray string,
    classes with a single row (nothing to learn a class from, nor to validate it on)."""
    if problem_type not in ("binary", "multiclass"):
        return []
    values = target.dropna()
    if _first_collection(values) is not None:
        return []
    out = []
    stray = stray_label_values(values)
    if stray is not None:
        out.append(f"label '{target.name}' has {values.nunique()} distinct values, {stray}")
    counts = values.value_counts()
    single = int((counts == 1).sum())
    if len(counts) > 2 and single == len(counts):
        out.append(
            f"every class of label '{target.name}' has a single row ({len(counts)} classes, {len(values)} rows): a "
            "classifier cannot learn a class from one example, nor validate it. Is this an identifier, or a "
            "regression target (problem_type regression)?"
        )
    elif len(counts) > 2 and single >= 0.5 * len(counts):
        out.append(
            f"{single} of the {len(counts)} classes of label '{target.name}' have a single row: those classes can "
            "hardly be learned or validated. Merge rare classes or gather more rows"
        )
    return out
