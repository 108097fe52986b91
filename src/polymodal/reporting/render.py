"""Render a :class:`~polymodal.reporting.blocks.Report` to one self-contained HTML page (jinja2).

The template ships inside the package (``polymodal/reporting/templates/report.html.j2``) and is read through
:mod:`importlib.resources`, so it is found in an installed wheel as well as in a source checkout. The page has its
CSS inline and every image as a ``data:`` URI: it can be mailed or archived as one file and opened offline.
"""

from __future__ import annotations

import re
from importlib import resources

import jinja2
from markupsafe import Markup, escape

from .blocks import Report

TEMPLATE = "report.html.j2"
_CODE = re.compile(r"`([^`]+)`")


def _inline_code(text: str) -> Markup:
    """Escape ``text``, then show `backticked` spans as code (commands the reader can copy)."""
    return Markup(_CODE.sub(r"<code>\1</code>", str(escape(text))))


def template_source() -> str:
    """The template's text, from the installed package."""
    return resources.files("polymodal.reporting").joinpath("templates", TEMPLATE).read_text(encoding="utf-8")


def render(report: Report) -> str:
    """The report as an HTML string."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["code"] = _inline_code
    return env.from_string(template_source()).render(report=report)
