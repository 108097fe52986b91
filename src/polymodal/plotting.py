"""Figures without pyplot: every polymodal plot is drawn on its own ``Figure`` with an Agg canvas.

Why: pyplot keeps process-wide state (the backend, the list of open figures). A library that calls
``matplotlib.use("Agg")`` or ``plt.subplots`` changes the backend of the user's notebook or GUI and leaks figures
when an exception skips ``plt.close``. A figure made here belongs to no one but its caller: it needs no display,
touches no global setting and is freed by the garbage collector like any other object.
"""

from __future__ import annotations

import io
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(**kwargs: Any) -> Figure:
    """A ``Figure`` (``figsize``, ``layout`` … as for ``Figure``) attached to its own Agg canvas."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)  # sets fig.canvas; a file-only canvas, never a window
    return fig


def subplots(
    nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None, squeeze: bool = True, **kwargs: Any
) -> tuple[Figure, Any]:
    """``plt.subplots`` without pyplot: (figure, axes), ``axes`` shaped as pyplot shapes them."""
    fig = new_figure(figsize=figsize)
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **kwargs)
    return fig, axes


def png_bytes(fig: Figure, dpi: int = 110, **savefig: Any) -> bytes:
    """The figure as PNG bytes (extra ``savefig`` options such as ``bbox_inches`` pass through)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, **savefig)
    return buf.getvalue()
