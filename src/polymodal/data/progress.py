"""Progress for long steps: a live bar on a terminal, plain log lines when the output goes to a file or a pipe.

A live bar redraws one line with carriage returns; written to a log file it shows nothing useful until it
finishes (or a wall of half-lines). When the output is not a terminal, progress is therefore a few complete lines
through the ``polymodal`` logger (which the CLI prints on stderr), at most one every ``every`` seconds plus a final
one.
"""

from __future__ import annotations

import logging
import sys
import time

from tqdm.auto import tqdm

log = logging.getLogger("polymodal")

#: Seconds between two plain progress lines of one step.
LINE_EVERY = 5.0


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def live_bars() -> bool:
    """Whether progress can be drawn as live bars: stdout and stderr are both terminals (Lightning's epoch bar
    writes to stdout, the decoding bar to stderr; either redirected would collect carriage-return debris), or a
    Jupyter kernel, whose streams are not terminals but draw tqdm's widgets."""
    if type(sys.stdout).__module__.startswith("ipykernel"):
        return True
    return _is_terminal(sys.stdout) and _is_terminal(sys.stderr)


class Progress:
    """Counts ``done`` of ``total`` units of one step: a tqdm bar (from ``min_bar`` units) when :func:`live_bars`,
    else log lines ``<desc>: <done>/<total> <unit> (<pct>%), <s> s``; nothing when ``enabled`` is false."""

    def __init__(self, total: int, desc: str, unit: str, enabled: bool = True, min_bar: int = 200) -> None:
        self.total, self.desc, self.unit, self.done = total, desc, unit, 0
        self.live = enabled and live_bars()
        self.lines = enabled and not self.live
        self._bar = tqdm(total=total, desc=desc, unit=unit, disable=not self.live or total < min_bar, leave=False)
        self._start = self._last = time.perf_counter()
        self._note = ""

    def update(self, done: int) -> None:
        """Set the count to ``done`` (absolute, not an increment)."""
        if done == self.done:
            return
        self._bar.update(done - self.done)
        self.done = done
        now = time.perf_counter()
        if self.lines and done < self.total and now - self._last >= LINE_EVERY:
            self._last = now
            self._line(now)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        self.update(self.done + n)

    def set_postfix_str(self, note: str) -> None:
        """What is being done now: shown after the bar, or at the end of the next line."""
        self._note = note
        self._bar.set_postfix_str(note)

    def close(self) -> None:
        """Close the bar; in line mode, log the final count (the one line a short step prints)."""
        self._bar.close()
        if self.lines:
            self._line(time.perf_counter())

    def _line(self, now: float) -> None:
        pct = 100 * self.done / self.total if self.total else 100.0
        note = f"; {self._note}" if self._note and self.done < self.total else ""
        log.info(
            "%s: %d/%d %s (%.0f%%), %.1f s%s", self.desc, self.done, self.total, self.unit, pct, now - self._start, note
        )
