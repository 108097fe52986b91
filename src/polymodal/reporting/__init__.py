"""The HTML report: ``polymodal report RUN TEST.csv --out report.html`` / :func:`polymodal.report`.

context.py    what a report is built from, gathered once (run summary, history, the scored test table)
sections/     one class per section, registered by name; which apply depends on the problem type
plots.py      the report's own matplotlib figures
blocks.py     what sections are made of (figures, tables, metric cards, notes)
render.py     jinja2 → one self-contained HTML page (template: templates/report.html.j2)
build.py      ties them together; :func:`report` writes the file atomically
"""

from __future__ import annotations

from .blocks import Report
from .build import build_report, report
from .context import ReportOptions
from .render import render

__all__ = ["Report", "ReportOptions", "build_report", "render", "report"]
