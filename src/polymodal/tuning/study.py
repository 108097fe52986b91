"""The Optuna study behind ``tune``: stored in a journal file so that it resumes and several processes share it.

A study lives in ``<out>/study.journal`` (Optuna's ``JournalStorage`` over a ``JournalFileBackend``: an
append-only log that any number of processes, on one machine or on several over a shared file system, read and
append to under a file lock). Running the same ``tune`` command again loads it and continues it.

A trial records which process runs it (host, pid) and a heartbeat every :data:`HEARTBEAT_SECONDS`; a trial left
RUNNING by a process that died (killed, out of memory, a lost machine) is marked FAIL with ``stale`` set when the
next process starts: at once when its process is gone from this machine, after :data:`STALE_SECONDS` without a
heartbeat otherwise. Stale trials do not count towards ``--trials``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.storages import InMemoryStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from ..errors import ConfigError

log = logging.getLogger("polymodal")

__all__ = ["JOURNAL", "counted_trials", "fail_stale_trials", "heartbeat", "open_study", "worker_lock"]

JOURNAL = "study.journal"
STUDY_NAME = "polymodal"
#: Seconds between two heartbeats of a running trial.
HEARTBEAT_SECONDS = 30.0
#: A RUNNING trial of another machine without a heartbeat for this long is taken for dead.
STALE_SECONDS = 600.0


def open_study(
    out: Path | None,
    *,
    direction: Literal["maximize", "minimize"],
    seed: int,
    prune: bool,
    attrs: dict[str, Any],
    startup_trials: int = 2,
    warmup_epochs: int = 1,
) -> optuna.Study:
    """Create or load the study (in ``out``'s journal, in memory when ``out`` is None).

    ``attrs`` (label, monitor): written on a new study; a loaded one must have the same, or the folder holds
    another study. The TPE sampler's seed is ``seed`` plus the number of trials already in the study, so that a
    resumed or a second process does not repeat the first one's random start. The median pruner stops a trial
    whose score after an epoch is worse than the median of the earlier trials at that epoch, once
    ``startup_trials`` trials have finished and from epoch ``warmup_epochs`` on.
    """
    storage: Any = InMemoryStorage()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        storage = JournalStorage(JournalFileBackend(str(out / JOURNAL)))
    existing = [s for s in optuna.get_all_study_summaries(storage) if s.study_name == STUDY_NAME]
    n_before = existing[0].n_trials if existing else 0
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs)
        if prune
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=seed + n_before),
        pruner=pruner,
        study_name=STUDY_NAME,
        direction=direction,
        load_if_exists=True,
    )
    if not existing:
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        return study
    theirs = {k: study.user_attrs.get(k) for k in attrs}
    if theirs != attrs or study.direction.name.lower() != direction:
        raise ConfigError(
            f"{out} holds another study ({', '.join(f'{k} {v!r}' for k, v in theirs.items())}; this one: "
            f"{', '.join(f'{k} {v!r}' for k, v in attrs.items())}); choose another --out to start a new study"
        )
    return study


# ------------------------------------------------------------------------------------------------ workers
def worker() -> dict[str, Any]:
    """Who runs a trial: this host and process."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _is_stale(trial: optuna.trial.FrozenTrial, now: float) -> bool:
    who = trial.user_attrs.get("worker") or {}
    pid = who.get("pid")
    if who.get("host") == socket.gethostname() and isinstance(pid, int) and pid != os.getpid() and not _alive(pid):
        return True
    start = trial.datetime_start.timestamp() if trial.datetime_start else now
    beat = float(trial.user_attrs.get("heartbeat", start))
    return now - beat > STALE_SECONDS


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Mark FAIL (``stale``: true) the RUNNING trials whose process is gone; returns their numbers."""
    now, failed = time.time(), []
    # Optuna has no public way to finish another process's trial; the storage's own methods do it.
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _is_stale(t, now):
            continue
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            storage.set_trial_user_attr(t._trial_id, "stale", True)
            storage.set_trial_user_attr(t._trial_id, "error", "its process stopped before the trial finished")
            if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                failed.append(t.number)
    if failed:
        log.warning(
            "trial%s %s had been left running by a process that stopped; marked failed (not counted)",
            "s" if len(failed) > 1 else "",
            ", ".join(map(str, failed)),
        )
    return failed


def counted_trials(study: optuna.Study) -> int:
    """The trials that count towards ``--trials``: finished (complete, pruned, failed by an error) or running in a
    live process; not the stale ones."""
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state != TrialState.WAITING and not t.user_attrs.get("stale", False)
    )


@contextlib.contextmanager
def heartbeat(trial: optuna.Trial, every: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """Record this process on ``trial`` and a heartbeat every ``every`` seconds while the block runs."""
    trial.set_user_attr("worker", worker())
    trial.set_user_attr("heartbeat", time.time())
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            with contextlib.suppress(Exception):  # a heartbeat is best effort; the trial itself goes on
                trial.set_user_attr("heartbeat", time.time())

    thread = threading.Thread(target=beat, name="polymodal-tune-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def worker_lock(out: Path | None) -> Iterator[None]:
    """Exclusive among this study's processes (``<out>/best.lock``): who writes ``best/`` and the leaderboard."""
    if out is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: one process per study is the safe use there
        yield
        return
    with open(out / "best.lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
