"""Share the cores with other jobs: fewer torch threads while other processes keep the cores busy, all of them back
when they stop.

Why: torch's CPU build uses GNU OpenMP, whose threads spin while they wait for each other. Two jobs on a 2-core
machine that each run 2 threads spin on the cores the other needs: two fits at once took 2.4x as long as one after
the other. Passive waiting (idle threads sleep at once) cures that, but makes a lone fit of a small network about 1.6x
slower, since every parallel region then pays a wake-up. A :class:`ThreadGovernor` keeps libgomp's default and
instead lowers the thread count to the cores left free by other processes (their runnable threads, sampled from
``/proc``), down to one thread, which never waits for a peer. It samples at most every ``interval_s`` seconds and
changes the count only when the last samples agree, so a short burst elsewhere does not make it flap.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

#: turn the governor off (``0``): the thread count then stays what it was set to
ENV_VAR = "POLYMODAL_SHARE_CORES"

PROC = Path("/proc")


def _running_threads(task_dir: Path) -> int:
    """Threads in state R (running or runnable) under a ``/proc/<pid>/task`` folder."""
    n = 0
    try:
        tasks = list(task_dir.iterdir())
    except OSError:
        return 0
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        # "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ")"
        if stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] == "R":
            n += 1
    return n


def _children(task_dir: Path) -> list[int]:
    pids: list[int] = []
    try:
        tasks = list(task_dir.iterdir())
    except OSError:
        return pids
    for task in tasks:
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return pids


def others_running(proc: Path = PROC) -> int | None:
    """Runnable threads on the machine that are not this process's or its children's (loader workers count as
    ours), from ``/proc/stat``'s ``procs_running``; None where ``/proc`` cannot be read (not Linux)."""
    try:
        for line in (proc / "stat").read_text().splitlines():
            if line.startswith("procs_running "):
                total = int(line.split()[1])
                break
        else:
            return None
    except (OSError, ValueError):
        return None
    own_tasks = proc / "self" / "task"
    own = _running_threads(own_tasks)
    for pid in _children(own_tasks):
        own += _running_threads(proc / str(pid) / "task")
    return max(0, total - own)


def enabled(environ: dict[str, str] | None = None) -> bool:
    """False when ``POLYMODAL_SHARE_CORES=0`` (or ``false``/``no``/``off``)."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "").strip().lower()
    return value not in {"0", "false", "no", "off"}


class ThreadGovernor:
    """Sets torch's thread count to the cores other processes leave free, between 1 and ``ceiling``.

    Call :meth:`poll` often (every training step); it samples at most every ``interval_s`` seconds, keeps the last
    ``window`` samples and changes the count only when the median of a full window asks for another one. Sampler,
    clock and setter are parameters so that the decision can be tested without a busy machine."""

    def __init__(
        self,
        ceiling: int,
        cores: int,
        *,
        interval_s: float = 0.5,
        window: int = 4,
        sampler: Callable[[], int | None] = others_running,
        clock: Callable[[], float] = time.monotonic,
        setter: Callable[[int], None] | None = None,
    ) -> None:
        self.ceiling = max(1, ceiling)
        self.cores = max(1, cores)
        self.interval_s = interval_s
        self.samples: deque[int] = deque(maxlen=max(1, window))
        self._sampler = sampler
        self._clock = clock
        self._setter = setter if setter is not None else _torch_setter
        self._next = clock()
        self.current = self.ceiling
        self.changes: list[int] = []  # every count it set, in order (the fit's record shows them)

    def target(self) -> int:
        """The count the samples so far ask for: the cores others leave free, between 1 and the ceiling."""
        others = statistics.median_low(self.samples) if self.samples else 0
        return min(self.ceiling, max(1, self.cores - others))

    def poll(self) -> int | None:
        """Sample when due; set and return a new count when a full window asks for it, else None."""
        now = self._clock()
        if now < self._next:
            return None
        self._next = now + self.interval_s
        sample = self._sampler()
        if sample is None:
            return None
        self.samples.append(sample)
        if len(self.samples) < (self.samples.maxlen or 1):
            return None
        want = self.target()
        if want == self.current:
            return None
        self.current = want
        self.changes.append(want)
        self._setter(want)
        return want


def _torch_setter(n: int) -> None:
    import torch

    torch.set_num_threads(n)
