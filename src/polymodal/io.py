"""Atomic file and directory writes: a temp sibling, then a rename. Nothing half-written is ever left behind.

The temp sibling comes from ``mkstemp`` / ``mkdtemp``, which create it private (0600 / 0700) whatever the umask; the
final file or folder gets the mode a plain ``open()`` / ``mkdir()`` would have given it (0666 / 0777 less the umask),
so that results are shared as the user's other files are.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

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


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp directory next to ``path``; on success it becomes ``path`` (replacing it if ``overwrite``)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise RunDirError(f"{path} already exists; choose another --out or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        tmp.chmod(dir_mode())
        yield tmp
        if path.exists():
            # a stop signal between the two renames would leave no folder at path; after them, the old one behind
            with deferred():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
                os.replace(path, old / "x")
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
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
