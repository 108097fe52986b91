"""Stop signals (SIGINT, SIGTERM) as an exception that unwinds the command, so that every atomic write cleans up.

The command line installs :func:`stop_on_signals` around each command: the first SIGINT or SIGTERM raises
:class:`Interrupted` in the main thread wherever it is, ``finally`` blocks and :mod:`polymodal.io`'s atomic writes
remove their temp files, and the command exits ``128 + signal`` (130, 143) with one line saying what was kept. Python's
default for SIGTERM is to die at once (temp folders left behind) and Lightning's is to end training through a
``SystemExit`` without a code (exit 0, as if it had succeeded); both are replaced for the command's duration.

:func:`deferred` holds a signal back over a few statements that must happen together (the two renames that replace a
folder): it takes effect at the end of the block.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["STOP_SIGNALS", "Interrupted", "deferred", "received", "stop_on_signals"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: signals received while stopping before the process gives up on its cleanup and exits at once
_FORCE_AFTER = 3


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived. A KeyboardInterrupt, so that code stopping on Ctrl-C (a tuning trial marked
    interrupted, Lightning's teardown) does the same for SIGTERM; ``exit_code`` is the shell's ``128 + signal``."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(self.name)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _State:
    def __init__(self) -> None:
        self.owner_pid: int | None = None
        self.received: list[int] = []
        self.defer_depth = 0
        self.pending: int | None = None


_state = _State()


def _handler(signum: int, frame: FrameType | None) -> None:
    if os.getpid() != _state.owner_pid:
        # A forked child (a DataLoader worker) inherited the handler: it stops as Python's default would.
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _state.received.append(signum)
    if len(_state.received) >= _FORCE_AFTER:
        os._exit(128 + signum)  # asked three times: stop without waiting for the cleanup
    if len(_state.received) > 1:
        return  # already stopping: the cleanup (removing temp folders) is not interrupted in its turn
    if _state.defer_depth:
        _state.pending = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` in the main thread (elsewhere: nothing
    changes, as only the main thread can set handlers). The previous handlers come back at the end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    _state.owner_pid, _state.received, _state.pending, _state.defer_depth = os.getpid(), [], None, 0
    for s in STOP_SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        _state.owner_pid = None


def received() -> int | None:
    """The first stop signal received within :func:`stop_on_signals`, if any (an error raised while stopping, e.g.
    by a library that caught :class:`Interrupted` and raised its own, still counts as the interruption)."""
    return _state.received[0] if _state.received and _state.owner_pid == os.getpid() else None


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A stop signal that arrives inside the block raises :class:`Interrupted` at its end (when the block itself
    succeeded), not in its middle. Without :func:`stop_on_signals` it changes nothing, nor in another thread than the
    main one (whose code Python's signal handlers never interrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.defer_depth += 1
    try:
        yield
    finally:
        _state.defer_depth -= 1
    if _state.defer_depth == 0 and _state.pending is not None:
        signum, _state.pending = _state.pending, None
        raise Interrupted(signum)
