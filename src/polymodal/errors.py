"""polymodal's own exception types.

Every error a user can cause derives from :class:`PolymodalError`; the CLI turns these into a message and exit
code 2 instead of a traceback. Messages say what is wrong *and* what to do about it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

# Whether the code running now was called from the command line: an error then names an option as the CLI spells
# it (``--data-root``), not as Python does (``data_root=``). A context variable, so that a Python caller in another
# thread (or the server) never sees the CLI's terms.
_cli_terms: ContextVar[bool] = ContextVar("polymodal_cli_terms", default=False)


@contextlib.contextmanager
def cli_terms() -> Iterator[None]:
    """Within the block, :func:`in_terms` picks the command line's spelling of an option (the CLI enters it)."""
    token = _cli_terms.set(True)
    try:
        yield
    finally:
        _cli_terms.reset(token)


def in_terms(python: str, cli: str) -> str:
    """``python`` or ``cli``, whichever names the option the way the current caller sets it."""
    return cli if _cli_terms.get() else python


class PolymodalError(Exception):
    """Base class of every error polymodal raises on purpose."""


class ConfigError(PolymodalError, ValueError):
    """A configuration value is invalid or inconsistent."""


class SchemaError(PolymodalError, ValueError):
    """The table's columns do not fit what is needed (label absent, columns differ from training, ...)."""


class RunDirError(PolymodalError):
    """A run directory is missing, incomplete, or would be overwritten."""


@dataclass(frozen=True)
class RowIssue:
    """One problem found in one cell. ``row`` is the row's label: its 0-based number in a table read from a file,
    or the DataFrame's own index label."""

    row: Hashable
    column: str
    problem: str

    def __str__(self) -> str:
        return f"row {self.row}, column '{self.column}': {self.problem}"

    def sort_key(self) -> tuple:
        """Orders by row, then column; rows of different label types (int/str) never get compared."""
        return (type(self.row).__name__, self.row, self.column)


class DataError(PolymodalError, ValueError):
    """Rows of the table cannot be used. ``issues`` names each row, column and problem."""

    def __init__(self, message: str, issues: list[RowIssue] | None = None, hint: str | None = None):
        self.issues = list(issues or [])
        self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        lines = [self.args[0]]
        shown = self.issues[:20]
        lines += [f"  - {i}" for i in shown]
        if len(self.issues) > len(shown):
            lines.append(f"  ... and {len(self.issues) - len(shown)} more")
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)


class LoadError(PolymodalError, ValueError):
    """One file could not be decoded or breaks a safety limit (no row/column context yet)."""


def row_label(value: Hashable) -> Hashable:
    """A row label as a plain Python value (numpy integers become int) for messages and reports."""
    return value.item() if hasattr(value, "item") else value


class ExportError(PolymodalError):
    """A model could not be exported, quantized or pruned, or an export directory is unusable."""


class ExplainError(PolymodalError, ValueError):
    """An explanation or a modality-importance measurement cannot be computed for this model or these rows."""


class NotFittedError(PolymodalError):
    """A predictor was used before ``fit`` or ``load``."""


class TuningError(PolymodalError):
    """A tuning study could not produce a model (no trial completed, every trial failed)."""

    def __init__(self, message: str, hint: str | None = None):
        self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.args[0]}\n{self.hint}" if self.hint else str(self.args[0])


class OutputError(PolymodalError):
    """An output path cannot be written: under a file, in a folder without write permission, or a folder where a
    file is expected. Checked before any work, so that a long command never fails at its end."""


class ResumeError(PolymodalError):
    """An interrupted fit cannot be resumed: nothing was saved, or the table or arguments differ from the run's."""
