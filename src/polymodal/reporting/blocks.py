"""What a report section is made of: figures, tables, metric cards and notes (plain data for the template)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import ClassVar


@dataclass
class Figure:
    """A PNG image, embedded in the page as a ``data:`` URI (the report is one self-contained file)."""

    type: ClassVar[str] = "figure"
    title: str
    png: bytes
    alt: str
    caption: str = ""

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class Table:
    """A table of already formatted cells; ``numeric`` marks the right-aligned columns."""

    type: ClassVar[str] = "table"
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    numeric: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.numeric:
            self.numeric = [False] * len(self.columns)


@dataclass
class Metric:
    name: str
    value: str
    help: str = ""


@dataclass
class Metrics:
    """Headline numbers shown as cards."""

    type: ClassVar[str] = "metrics"
    items: list[Metric]


@dataclass
class Note:
    """A short paragraph: why a section is empty, how to add what is missing, how to read a plot."""

    type: ClassVar[str] = "note"
    text: str


@dataclass
class Gallery:
    """A titled grid of figures (explained examples)."""

    type: ClassVar[str] = "gallery"
    title: str
    figures: list[Figure]


Block = Figure | Table | Metrics | Note | Gallery


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Report:
    """Everything the template renders."""

    title: str
    subtitle: str
    sections: list[Section]
    generated: str
    version: str
