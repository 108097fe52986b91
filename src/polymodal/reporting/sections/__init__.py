"""The report's sections: one class each, registered by name in :data:`SECTIONS`.

A section declares the problem types it applies to and where it goes (``order``); the builder takes, for a run's
problem type, every registered section that applies, in order. A new section is one class plus one ``@register``
line. ``build`` returns a :class:`~polymodal.reporting.blocks.Section`; a section with nothing to show returns a
short note saying why (and how to get it), never an empty image; one that only applies when its input exists (the
robustness sweep) returns None and is left out of the page.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from ...registry import Registry
from ..blocks import Section
from ..context import ReportContext

CLASSIFICATION = frozenset({"binary", "multiclass"})
PREDICTIVE = CLASSIFICATION | {"regression"}
MULTILABEL = frozenset({"multilabel"})
ALL = PREDICTIVE | {"generation", "multitask", "retrieval"} | MULTILABEL

SECTIONS: Registry["ReportSection"] = Registry("report section")


class ReportSection(ABC):
    """One part of the report."""

    title: ClassVar[str]
    order: ClassVar[int]
    problem_types: ClassVar[frozenset[str]] = ALL
    #: built again for each target of a multi-task model (reads only the summary and the scored rows, which the
    #: builder narrows to that target; see :func:`~polymodal.reporting.context.target_context`)
    per_target: ClassVar[bool] = False

    @property
    def id(self) -> str:
        return self.registry_name  # type: ignore[attr-defined]

    def section(self, intro: str = "") -> Section:
        return Section(self.id, self.title, intro)

    @abstractmethod
    def build(self, ctx: ReportContext) -> Section | None:
        """The section for this run (reads only from ``ctx``); None leaves it out of the page."""


def sections_for(problem_type: str) -> list[ReportSection]:
    """The registered sections that apply to ``problem_type``, in page order."""
    chosen = [SECTIONS.get(n)() for n in SECTIONS.names() if problem_type in SECTIONS.get(n).problem_types]
    return sorted(chosen, key=lambda s: s.order)


def target_sections(problem_type: str) -> list[ReportSection]:
    """The per-target sections for one target of a multi-task model whose problem type is ``problem_type``."""
    return [s for s in sections_for(problem_type) if s.per_target]


# Importing the modules registers their sections.
from . import explanations, members, metrics, retrieval, robustness, run  # noqa: E402,F401

__all__ = [
    "ALL",
    "CLASSIFICATION",
    "MULTILABEL",
    "PREDICTIVE",
    "SECTIONS",
    "ReportSection",
    "sections_for",
    "target_sections",
]
