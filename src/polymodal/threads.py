"""How many threads polymodal computes with, and OpenMP threads that sleep instead of spinning when idle.

The count is chosen once per command: ``--threads`` on the command line, else ``training.threads`` in the config,
else the ``POLYMODAL_THREADS`` environment variable, else ``OMP_NUM_THREADS``, else the cores this process may use (its CPU affinity and its
cgroup's CPU quota, so a container limited to 2 CPUs on a 64-core host gets 2, not 64). It is applied to torch's
intra-op threads (for the block only, then the caller's count again), the decode thread pool and ONNX Runtime
sessions.

torch's CPU wheel links GNU OpenMP (libgomp), whose idle threads spin for a while before sleeping. On a machine
another job also uses, the spinning threads take the cores the other job's threads wait for: two fits on two cores
took 2.4x as long at once as one after the other. A fit whose thread count nobody chose therefore shares the cores
(:mod:`polymodal.cpu_share`: fewer threads while other processes are busy). :func:`quiet_openmp` (passive waiting,
opt-in with ``POLYMODAL_OPENMP_PASSIVE=1``) is the other cure, at a price: a lone fit of a small network was about
1.6x slower with it. It works only before the OpenMP runtime is loaded (before ``import torch``), so ``import
polymodal`` calls it when torch is not imported yet, and the ``polymodal`` command always does.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import sys
from collections.abc import Iterator, MutableMapping
from pathlib import Path

from .errors import ConfigError

#: the environment variable naming the thread count (below --threads and training.threads)
ENV_VAR = "POLYMODAL_THREADS"

#: the environment variable that turns passive OpenMP waiting on (``1``); off by default (see the module's docstring)
PASSIVE_ENV_VAR = "POLYMODAL_OPENMP_PASSIVE"

#: what :func:`quiet_openmp` sets when asked to and the user set none of these names. PASSIVE: an idle OpenMP thread sleeps at
#: once (libgomp, LLVM's libomp and Intel's all read it); GOMP_SPINCOUNT: libgomp's own spin before sleeping.
OPENMP_QUIET = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0"}

CGROUP_ROOT = Path("/sys/fs/cgroup")

# --threads of the running command: above the config's training.threads, which the library reads deeper down
_flag: contextvars.ContextVar[int | None] = contextvars.ContextVar("polymodal_threads_flag", default=None)
# the count in force inside use_threads (read by the decode pool and ONNX Runtime sessions)
_current: contextvars.ContextVar[int | None] = contextvars.ContextVar("polymodal_threads", default=None)
# the OMP_NUM_THREADS value for_command put in the environment itself (not the user's choice)
_omp_ours: str | None = None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The CPUs this process's cgroup may use (its CFS quota / period), or None when there is no limit.

    cgroup v2: ``cpu.max`` ("max 100000" or "200000 100000"); v1: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``
    (-1: no limit). Files that cannot be read or parsed count as no limit."""
    try:
        fields = (root / "cpu.max").read_text().split()
        if len(fields) == 2 and fields[0] != "max":
            quota, period = float(fields[0]), float(fields[1])
            return quota / period if quota > 0 and period > 0 else None
        if fields:
            return None
    except (OSError, ValueError):
        pass
    for folder in (root / "cpu", root / "cpu,cpuacct", root):
        try:
            quota = float((folder / "cpu.cfs_quota_us").read_text())
            period = float((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota / period if quota > 0 and period > 0 else None
    return None


def available_cores(affinity: set[int] | None = None, cgroup_root: Path = CGROUP_ROOT) -> int:
    """The cores this process may use: the CPUs it may run on (affinity), capped by its cgroup's CPU quota (rounded
    up: a quota of 1.5 CPUs keeps 2 threads busy half the time each). At least 1."""
    if affinity is None:
        try:
            affinity = os.sched_getaffinity(0)
        except (AttributeError, OSError):  # not on Linux
            affinity = set(range(os.cpu_count() or 1))
    cores = max(1, len(affinity))
    limit = cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cores = min(cores, max(1, math.ceil(limit)))
    return cores


def _count(value: object, where: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{where} must be a whole number of threads (1 or more), got {value!r}")
    try:
        n = int(str(value).strip()) if isinstance(value, str) else int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        n = 0
    if n < 1 or (not isinstance(value, str) and n != value):
        raise ConfigError(f"{where} must be a whole number of threads (1 or more), got {value!r}")
    return n


def resolve_threads(
    flag: int | None = None,
    config: int | None = None,
    environ: MutableMapping[str, str] | None = None,
    detected: int | None = None,
) -> int:
    """The thread count: ``flag`` (``--threads``; also the running command's, see :func:`command_line`), else
    ``config`` (``training.threads``), else the ``POLYMODAL_THREADS`` environment variable, else ``OMP_NUM_THREADS``
    (a whole number), else ``detected`` (default: :func:`available_cores`). A value that is not a whole number >= 1 is a ConfigError."""
    flag = flag if flag is not None else _flag.get()
    if flag is not None:
        return _count(flag, "--threads")
    if config is not None:
        return _count(config, "training.threads")
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR, "").strip():
        return _count(env[ENV_VAR], f"the environment variable {ENV_VAR}")
    omp = env.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) >= 1:  # the user's OpenMP setting (not ours to check: a list like "4,2" is skipped)
        return int(omp)
    return detected if detected is not None else available_cores()


def threads_for_call(config: int | None = None) -> int:
    """The count for a library call (``fit`` in Python): as :func:`resolve_threads`, except that without a setting
    the caller's own torch count is kept when it is lower than the cores (a script's ``torch.set_num_threads(1)``
    stands; torch's default, every core of the host, is capped by the affinity and cgroup quota)."""
    import torch

    return resolve_threads(config=config, detected=min(torch.get_num_threads(), available_cores()))


def current_threads() -> int:
    """The count in force: the one :func:`use_threads` set for the running block, else :func:`resolve_threads`."""
    n = _current.get()
    return n if n is not None else resolve_threads()


@contextlib.contextmanager
def command_line(flag: int | None) -> Iterator[None]:
    """``--threads`` for the block: it wins over every ``training.threads`` the command reads (None: no flag)."""
    token = _flag.set(None if flag is None else _count(flag, "--threads"))
    try:
        yield
    finally:
        _flag.reset(token)


@contextlib.contextmanager
def for_command(flag: int | None, environ: MutableMapping[str, str] | None = None) -> Iterator[int]:
    """The command line's thread count for a command's block (yields it): ``--threads`` wins over any
    ``training.threads`` read inside; the decode pool and ONNX Runtime use the count. torch's threads: when torch is
    not imported yet (a ``polymodal`` process) through ``OMP_NUM_THREADS``, which torch reads as it loads, else set
    for the block and put back (a command run inside a Python process that uses torch already, e.g. a test)."""
    env = os.environ if environ is None else environ
    with command_line(flag):
        n = resolve_threads(environ=env)
        token = _current.set(n)
        try:
            if "torch" in sys.modules:
                with use_threads(n):
                    yield n
            else:
                global _omp_ours
                env["OMP_NUM_THREADS"] = _omp_ours = str(n)
                yield n
        finally:
            _current.reset(token)


def user_chose_threads(config: int | None = None, environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether the thread count was chosen (``--threads``, ``training.threads``, ``POLYMODAL_THREADS`` or the user's
    ``OMP_NUM_THREADS``) rather than detected: a chosen count is kept as it is, a detected one shares the cores."""
    env = os.environ if environ is None else environ
    if _flag.get() is not None or config is not None or env.get(ENV_VAR, "").strip():
        return True
    omp = env.get("OMP_NUM_THREADS", "").strip()
    return bool(omp) and omp != _omp_ours


@contextlib.contextmanager
def use_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count (and the decode pool's, ONNX Runtime's) for the block, then the caller's again.

    The torch count is process-wide: it is set only for the block, as the server does while it runs."""
    import torch

    threads = _count(threads, "the thread count")
    before = torch.get_num_threads()
    token = _current.set(threads)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        _current.reset(token)


def quiet_openmp(environ: MutableMapping[str, str] | None = None, force: bool = False) -> dict[str, str]:
    """Ask OpenMP's idle threads to sleep instead of spinning (:data:`OPENMP_QUIET`) when ``POLYMODAL_OPENMP_PASSIVE=1``
    (or ``force``), unless the user chose a wait policy (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` set: theirs is
    kept). The environment is read once, when the OpenMP runtime loads with torch, so it is left alone when torch is
    imported already (unless ``force``): too late to matter, and importing polymodal changes nothing then. Returns
    what it set."""
    env = os.environ if environ is None else environ
    if not force and (
        "torch" in sys.modules or env.get(PASSIVE_ENV_VAR, "").strip().lower() not in {"1", "true", "yes", "on"}
    ):
        return {}
    if any(name in env for name in OPENMP_QUIET):
        return {}
    env.update(OPENMP_QUIET)
    return dict(OPENMP_QUIET)
