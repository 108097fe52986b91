"""Atomic file and directory writes: a temp sibling, then a rename. Nothing half-written is ever left behind.

The temp sibling comes from ``mkstemp`` / ``mkdtemp``, which create it private (0600 / 0700) whatever the umask; the
final file or folder gets the mode a plain ``open()`` / ``mkdir()`` would have given it (0666 / 0777 less the umask),
so that results are shared as the user's other files are.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import RunDirError
from .signals import deferred

_umask_lock = threading.Lock()


def umask() -> int:
    """The process's umask, read without changing it where the system allows.

    Linux reports it in /proc/self/status; elsewhere the only way is to set it and set it back, done under a lock so
    that two of our own threads never interleave (a file another thread creates in that instant would get the
    permissive mask, which is why /proc is tried first).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            found = re.search(r"^Umask:\s*([0-7]+)$", f.read(), re.MULTILINE)
        if found:
            return int(found.group(1), 8)
    except OSError:
        pass
    with _umask_lock:
        old = os.umask(0o077)
        os.umask(old)
    return old


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """The mode a plain ``mkdir`` gives a new folder."""
    return 0o777 & ~umask()


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", **kwargs) -> Iterator:
    """Open a temp file next to ``path``; on success rename it over ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            # Replacing a file keeps its mode, as writing over it with open() would; a new one gets the umask's.
            existing = _existing_mode(path)
            os.fchmod(f.fileno(), file_mode() if existing is None else existing)
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _existing_mode(path: Path) -> int | None:
    """The permission bits of the file at ``path``, or None when there is none."""
    try:
        return stat.S_IMODE(path.stat().st_mode) & 0o777
    except OSError:
        return None


#: Temp and retired folders that :func:`atomic_dir` makes next to its target: ``.NAME.polymodal-PID-XXXXXXXX.tmp``
#: (being written) and ``.old`` (the replaced folder, being deleted). The pid tells a live writer from a dead one.
TEMP_TAG = "polymodal"
_TEMP_RE = re.compile(rf"^\.(?P<name>.+)\.{TEMP_TAG}-(?P<pid>\d+)-[a-z0-9_]+\.(tmp|old)$")
# the unmarked names earlier versions used (``.NAME.XXXXXXXX.tmp``): only cleaned up once they are a day old
_LEGACY_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.(tmp|old)$")
STALE_AFTER_S = 24 * 3600


def is_temp_dir(path: str | Path) -> bool:
    """Whether ``path`` is named as one of :func:`atomic_dir`'s temp or retired folders (never a result)."""
    return _TEMP_RE.match(Path(path).name) is not None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: alive
    return True


def clean_stale_temps(path: str | Path, now: float | None = None) -> list[Path]:
    """Delete the temp folders that saves of ``path`` killed before they finished left next to it; return them.

    Only our own are touched: named for this target, and either written by a process that no longer runs (on this
    machine) or older than a day (a pid reused since, or a folder on a shared disk from another machine). A save
    still running in a live process keeps its folder.
    """
    path = Path(path)
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP_RE.match(entry.name) or _LEGACY_TEMP_RE.match(entry.name)
        if m is None or m.group("name") != path.name or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            age = now - entry.stat().st_mtime
        except OSError:
            continue
        pid = int(m.group("pid")) if "pid" in m.groupdict() and m.group("pid") else None
        dead = pid is not None and pid != os.getpid() and not _pid_alive(pid)
        if dead or age > STALE_AFTER_S:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _temp_dir(path: Path, suffix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.{TEMP_TAG}-{os.getpid()}-", suffix=suffix, dir=path.parent))


_RENAME_EXCHANGE = 2
_libc: Any = None


def exchange(a: str | Path, b: str | Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the system
    or the file system cannot, and nothing was changed."""
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        fn = _libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), ctypes.c_uint(_RENAME_EXCHANGE))
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


@contextlib.contextmanager
def atomic_dir(
    path: str | Path,
    overwrite: bool = False,
    replaceable: Callable[[Path], None] | None = None,
    finish: Callable[[Path], None] | None = None,
) -> Iterator[Path]:
    """Yield a temp directory next to ``path``; on success it becomes ``path`` (replacing it if ``overwrite``).

    ``replaceable(path)`` raises when an existing ``path`` must not be replaced (checked before and again just
    before the swap); ``finish(tmp)`` runs last on the complete temp folder (a run directory's manifest). An existing
    folder is swapped out in one atomic exchange where the system allows (Linux), so that ``path`` always names a
    complete folder; elsewhere it is absent for the instant between two renames. Temp folders left by a killed
    save are deleted on the next save of the same path.
    """
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise RunDirError(f"{path} already exists; choose another --out or pass --overwrite")
    if overwrite and replaceable is not None:
        replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path)
    tmp = _temp_dir(path, ".tmp")
    try:
        tmp.chmod(dir_mode())
        yield tmp
        if finish is not None:
            finish(tmp)
        if path.exists() or path.is_symlink():
            if not overwrite:
                raise RunDirError(
                    f"{path} appeared while it was being written; choose another --out or pass --overwrite"
                )
            if replaceable is not None:
                replaceable(path)
            # a stop signal between the two renames (no atomic exchange) would leave no folder at path; after the
            # swap, the old one behind
            with deferred():
                if exchange(tmp, path):
                    shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the replaced folder
                else:
                    old = _temp_dir(path, ".old")
                    os.replace(path, old / "x")
                    os.replace(tmp, path)
                    shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(tmp, path)
            except OSError as e:  # another writer created it in the meantime
                raise RunDirError(f"{path} could not be written ({e.strerror}); choose another --out") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_files(out_dir: str | Path, files: dict[str, bytes], error: type[Exception]) -> list[Path]:
    """Write already-rendered ``files`` (name -> bytes) into ``out_dir`` and return their paths.

    A new folder appears complete or not at all; in an existing folder each file is replaced atomically and other
    files there are left alone. ``error`` is raised when ``out_dir`` exists and is not a folder.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise error(f"{out_dir} exists and is not a folder; choose another output folder")
    if out_dir.is_dir():
        for name, data in files.items():
            with atomic_file(out_dir / name, "wb") as f:
                f.write(data)
    else:
        with atomic_dir(out_dir) as tmp:
            for name, data in files.items():
                (tmp / name).write_bytes(data)
    return [out_dir / n for n in files]
