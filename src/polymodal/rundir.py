"""The run directory: everything needed to predict again, exactly, with no pickle.

polymodal.json           format version, label, problem type, modalities
config.yaml              the resolved config
schema.json              column kinds with the reasons they were chosen
processors.json          fitted processor state (sizes, statistics, vocabularies, category maps)
processors.safetensors   processor tensors, only for processors that have any
task.json                target encoding (classes or target scaling)
model.safetensors        the weights (pretrained backbones included)
backbones/<modality>/    a pretrained encoder's config.json and tokenizer / image processor / feature
                         extractor files, so a run loads with no network and without the original model folder
metrics.json             validation metrics and fit summary
training_log.csv         one row per epoch
leaderboard.csv          ensembles only: every member and the ensemble, validation scores and weights
manifest.json            written last: every other file's size and SHA-256, and an id unique to this save

Replacing a run directory (``--overwrite``, ``save(overwrite=True)``)
--------------------------------------------------------------------
``RUN/`` stays a plain folder holding the files, so it can be copied, archived and passed anywhere as a path. A
save writes a complete new folder next to it (``.RUN.polymodal-PID-XXXXXXXX.tmp``), writes its manifest last, and
swaps it with ``RUN/`` in one atomic ``renameat2(RENAME_EXCHANGE)`` (Linux; elsewhere two renames, between which
``RUN/`` is briefly absent); the replaced folder is then deleted. A reader may still open one file of the old
folder and one of the new, so readers never trust paths alone: :func:`read_run` reads the manifest once, reads every
file into memory checking its size and SHA-256 against that manifest, and reads the manifest again at the end. A
file that does not match while the manifest is unchanged is damage (refused, naming the file); a manifest that
changed means a save replaced the folder mid-read, and the whole read starts again. Since every save's id is new and
a replaced folder never comes back, "the same manifest at the start and at the end" means that every file read came
from that one save: a load is the old run or the new one, never a mix.

A folder saved before manifests existed loads without verification (and a read racing its first replacement is
not protected). Only an empty folder or a polymodal run is ever replaced; temp folders left by a killed save are
deleted by the next save of the same path (our own only: named for it, from a dead process or a day old).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save_file

from .errors import RunDirError
from .io import atomic_dir, is_temp_dir

FORMAT_VERSION = 1
BACKBONES = "backbones"
LEADERBOARD = "leaderboard.csv"
REQUIRED = ("polymodal.json", "config.yaml", "schema.json", "processors.json", "task.json", "model.safetensors")
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
#: What to do about a damaged run directory, said after each such error.
REMEDY = "the run directory is damaged or was edited after it was saved; save the model again or restore the folder"
#: Tensors where ±inf is a legitimate value: a boosted tree's split thresholds (±inf meaning "always"). NaN never is.
INF_ALLOWED = ("threshold",)
# How often a read restarts because a save replaced the folder under it before giving up.
READ_ATTEMPTS = 100
T = TypeVar("T")


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, default=_default) + "\n", encoding="utf-8")


def _default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_weights(path: Path, state: dict[str, torch.Tensor]) -> None:
    # safetensors writes its files 0600 whatever the umask; a plain new file first tells the mode the user's umask
    # (and any default ACL) gives, and the weights get it (an existing file keeps its own, as open() would).
    path.touch()
    plain = stat.S_IMODE(path.stat().st_mode)
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(path))
    path.chmod(plain)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys or ["epoch"])
        w.writeheader()
        w.writerows(rows)


def check_run_dir(path: Path) -> None:
    if is_temp_dir(path):
        raise RunDirError(f"{path} is a temp folder left by an interrupted save, not a run directory")
    if not path.is_dir():
        raise RunDirError(f"run directory not found: {path}")
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if missing:
        raise RunDirError(
            f"{path} is not a complete polymodal run directory; missing: {', '.join(missing)} (save the model "
            "again, or pass the folder that holds polymodal.json)"
        )
    try:
        meta = read_json(path / "polymodal.json")
    except (OSError, ValueError) as e:
        raise RunDirError(f"{path / 'polymodal.json'} cannot be read ({_short(e)}); {REMEDY}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        meta = meta if isinstance(meta, dict) else {}
        raise RunDirError(
            f"{path} was written in run-directory format {meta.get('format')}; this polymodal "
            f"reads format {FORMAT_VERSION}"
        )


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    joined = " ".join(line.strip() for line in text)
    return f"{type(e).__name__}: {joined[:300]}".rstrip(": ")


# ------------------------------------------------------------------------------------------------ writing
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: Path) -> None:
    """Record every file under ``folder`` (size, SHA-256) and a new save id in ``folder/manifest.json``; call it
    last, on the complete folder."""
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            files[p.relative_to(folder).as_posix()] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    manifest = {"format": MANIFEST_FORMAT, "save_id": uuid.uuid4().hex, "saved": time.time(), "files": files}
    write_json(folder / MANIFEST, manifest)


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a folder holding a polymodal run (its polymodal.json or manifest.json)."""
    return path.is_dir() and ((path / "polymodal.json").is_file() or (path / MANIFEST).is_file())


def check_replaceable(path: Path) -> None:
    """Raise unless ``path`` may be replaced by a save: absent, an empty folder or a polymodal run."""
    path = Path(path)
    if path.is_symlink():
        raise RunDirError(f"{path} is a symbolic link; pass the folder it points to as --out to replace that run")
    if not path.exists():
        return
    if not path.is_dir():
        raise RunDirError(
            f"{path} is a file, not a run directory; --overwrite replaces only a polymodal run directory or an "
            "empty folder: choose another --out or move the file away"
        )
    if is_run_dir(path):
        return
    entries = sorted(p.name for p in path.iterdir())
    if entries:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise RunDirError(
            f"{path} is not a polymodal run directory (it holds {shown}); --overwrite replaces only a run "
            "directory or an empty folder: choose another --out or empty the folder yourself"
        )


@contextlib.contextmanager
def writing(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp folder to write a run into; on success it gets its manifest and replaces ``path`` atomically
    (see the module's docstring). ``overwrite`` replaces only an empty folder or a polymodal run."""
    with atomic_dir(Path(path), overwrite=overwrite, replaceable=check_replaceable, finish=write_manifest) as tmp:
        yield tmp


# ------------------------------------------------------------------------------------------------ reading
class _Replaced(Exception):
    """The run directory was replaced by a save while it was being read: read it again."""


class RunFiles:
    """One consistent read of a run directory: every file's bytes, checked against the manifest read first."""

    def __init__(self, path: Path, skip: tuple[str, ...] = ()):
        self.path = path
        self._manifest_raw = self._read_manifest()
        self.verified = self._manifest_raw is not None
        self.files: dict[str, dict[str, Any]] = {}
        if self._manifest_raw is not None:
            self.files = {n: v for n, v in self._parse_manifest(self._manifest_raw).items() if n not in skip}
        self.data: dict[str, bytes] = {}
        names = [n for n in self.files if "/" not in n] if self.verified else list(_KNOWN)
        for name in names:
            if self.verified or (path / name).is_file():
                self.data[name] = self._read(name)
        self.confirm()

    def _read_manifest(self) -> bytes | None:
        try:
            return (self.path / MANIFEST).read_bytes()
        except FileNotFoundError:
            if not self.path.is_dir():  # replaced by two renames (no atomic exchange here) just now
                raise _Replaced from None
            return None
        except OSError as e:
            raise RunDirError(f"{self.path / MANIFEST} cannot be read ({_short(e)})") from None

    def _parse_manifest(self, raw: bytes) -> dict[str, dict[str, Any]]:
        try:
            m = json.loads(raw)
            files = m["files"]
            ok = isinstance(files, dict) and all(
                isinstance(v, dict) and isinstance(v.get("size"), int) and isinstance(v.get("sha256"), str)
                for v in files.values()
            )
        except (ValueError, KeyError, TypeError):
            ok = False
        # names are relative paths inside the folder: nothing outside it is ever read because a manifest says so
        ok = ok and all(n and not n.startswith("/") and ".." not in n.split("/") for n in files)
        if not ok or m.get("format") != MANIFEST_FORMAT:
            raise RunDirError(f"{self.path / MANIFEST} is not a valid manifest; {REMEDY}")
        return files

    def confirm(self) -> None:
        """Raise ``_Replaced`` when the manifest is no longer the one this read started from."""
        try:
            now: bytes | None = (self.path / MANIFEST).read_bytes()
        except FileNotFoundError:
            now = None
        except OSError:
            raise _Replaced from None
        if now != self._manifest_raw:
            raise _Replaced

    def _damaged(self, name: str, what: str) -> RunDirError:
        self.confirm()  # a save that replaced the folder explains it: read again
        return RunDirError(f"{self.path / name} {what}; {REMEDY}")

    def _read(self, name: str) -> bytes:
        try:
            data = (self.path / name).read_bytes()
        except FileNotFoundError:
            raise self._damaged(name, "is missing") from None
        except OSError as e:
            raise self._damaged(name, f"cannot be read ({_short(e)})") from None
        if self.verified:
            want = self.files[name]
            if len(data) != want["size"]:
                raise self._damaged(name, f"has {len(data)} bytes where its manifest records {want['size']}")
            if hashlib.sha256(data).hexdigest() != want["sha256"]:
                raise self._damaged(name, "does not match the SHA-256 its manifest records")
        return data

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str) -> bytes:
        if name not in self.data:
            raise self._damaged(name, "is missing" + (" from the manifest" if self.verified else ""))
        return self.data[name]

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.raw(name))
        except ValueError as e:
            raise self._damaged(name, f"is not valid JSON ({_short(e)})") from None

    def text(self, name: str) -> str:
        try:
            return self.raw(name).decode("utf-8")
        except UnicodeDecodeError as e:
            raise self._damaged(name, f"is not UTF-8 text ({_short(e)})") from None

    def weights(self, name: str) -> dict[str, torch.Tensor]:
        """The tensors of a safetensors file; NaN (and ±inf outside :data:`INF_ALLOWED`) refused."""
        try:
            tensors = load_bytes(self.raw(name))
        except RunDirError:
            raise
        except Exception as e:  # safetensors raises its own SafetensorError and others for a corrupt header
            raise self._damaged(name, f"is not a valid safetensors file ({_short(e)})") from None
        for key, t in tensors.items():
            if not t.is_floating_point() or bool(torch.isfinite(t).all()):
                continue
            if bool(torch.isnan(t).any()) or not key.endswith(INF_ALLOWED):
                raise self._damaged(name, f"holds NaN or infinite values in tensor '{key}'")
        return tensors

    def folder(self, name: str) -> Path:
        """The path of sub-folder ``name`` after checking every file in it against the manifest (for readers that
        take a folder, such as a pretrained tokenizer's); :meth:`confirm` after using it."""
        folder = self.path / name
        if not self.verified:
            return folder
        prefix = name.rstrip("/") + "/"
        listed = {n for n in self.files if n.startswith(prefix)}
        present = {p.relative_to(self.path).as_posix() for p in folder.rglob("*") if p.is_file()}
        for extra in sorted(present - listed):
            raise self._damaged(extra, "is not listed in the manifest")
        for n in sorted(listed):
            self._read(n)
        return folder

    @contextlib.contextmanager
    def blame(self, name: str, what: str = "does not hold what this polymodal expects") -> Iterator[None]:
        """Turn any error raised in the block into a :class:`RunDirError` naming ``name`` (parsing or applying a
        file that passed its checksum: damage, or a file written by an incompatible polymodal)."""
        try:
            yield
        except (RunDirError, _Replaced):
            raise
        except Exception as e:
            raise self._damaged(name, f"{what} ({_short(e)})") from None


def verify(folder: str | Path, skip: tuple[str, ...] = ()) -> None:
    """Check every file the manifest of ``folder`` lists (sub-folders included) but those in ``skip`` (left out
    of a copy); nothing to check without a manifest. For a copy of a run (an export), which a save may have
    replaced while it was being copied."""
    files = RunFiles(Path(folder), skip)
    for sub in sorted({n.split("/", 1)[0] for n in files.files if "/" in n}):
        files.folder(sub)


_KNOWN = (*REQUIRED, "processors.safetensors", "metrics.json", "training_log.csv", LEADERBOARD)


def read_run(path: str | Path, load: Callable[[RunFiles], T], attempts: int = READ_ATTEMPTS) -> T:
    """``load(files)`` on one consistent read of run directory ``path``; restarted when a save replaces the folder
    while it runs (see the module docstring). Raises :class:`RunDirError` for a missing, damaged or tampered run."""
    path = Path(path)
    for attempt in range(attempts):
        try:
            check_run_dir(path)
            files = RunFiles(path)
            result = load(files)
            files.confirm()
            return result
        except _Replaced:
            time.sleep(min(0.001 * (attempt + 1), 0.05))
        except RunDirError:
            if attempt + 1 < attempts and _being_replaced(path):
                time.sleep(min(0.001 * (attempt + 1), 0.05))
                continue
            raise
    raise RunDirError(f"{path} kept being replaced while it was read ({attempts} tries); try again when saves stop")


def _being_replaced(path: Path) -> bool:
    """Whether a save's temp folder sits next to ``path`` (a missing folder may be mid-swap on a system without
    an atomic exchange)."""
    try:
        return any(is_temp_dir(p) and p.name.startswith(f".{path.name}.") for p in path.parent.iterdir())
    except OSError:
        return False
