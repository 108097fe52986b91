"""Atomic file and directory writes: a temp sibling, then a rename. Nothing half-written is ever left behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import RunDirError


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", **kwargs) -> Iterator:
    """Open a temp file next to ``path``; on success rename it over ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp directory next to ``path``; on success it becomes ``path`` (replacing it if ``overwrite``)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise RunDirError(f"{path} already exists; choose another --out or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
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
