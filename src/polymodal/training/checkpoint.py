"""Checkpoints of a fit at every epoch end, and resuming from the last one after a crash or ``kill -9``.

One checkpoint is one safetensors file, written atomically (temp file + rename, so a kill while writing leaves the
previous checkpoint intact): Lightning's checkpoint (weights, optimizer, scheduler, loop counters, the callbacks'
state: the best epoch's weights and metrics, the history rows) with every tensor stored as a tensor and everything
else as JSON in the file's metadata. Loading it unpickles nothing.

The checkpoint lives in a folder of its own (:class:`Checkpointing`), never inside the run directory being built:
for ``polymodal fit --out RUN`` it is ``.RUN.resume`` beside ``RUN`` (:func:`resume_dir_for`). The folder also holds
``resume.json``: the fingerprint of the fit (table path, size and mtime or a hash of a DataFrame; label; config;
preset) that a resume must match. A finished fit removes the folder.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from safetensors import safe_open
from safetensors.torch import save

from ..data.samplers import epoch_seed
from ..errors import ResumeError, in_terms
from ..io import atomic_file
from ..ranks import is_main_process

log = logging.getLogger("polymodal")

CHECKPOINT = "last.safetensors"
FINGERPRINT = "resume.json"
_META = "polymodal.checkpoint"
_FORMAT = 1


# ------------------------------------------------------------------------------------- tensors + JSON
def _flatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """``obj`` as JSON, each tensor replaced by a reference to its entry in ``tensors``."""
    if isinstance(obj, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = obj.detach().cpu().contiguous().clone()  # a clone: safetensors refuses shared storage
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: _flatten(v, tensors) for k, v in obj.items()}}
        return {"__items__": [[_flatten(k, tensors), _flatten(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_flatten(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    raise TypeError(f"a checkpoint holds tensors and JSON values only; got {type(obj).__name__}")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__dict__"].items()}
        if "__items__" in obj:
            return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
    return obj


def write_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write ``checkpoint`` (nested dicts, lists, tuples, tensors and JSON scalars) to one safetensors file,
    atomically."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _flatten(checkpoint, tensors)
    blob = save(tensors, metadata={_META: json.dumps({"format": _FORMAT, "tree": tree})})
    with atomic_file(path, "wb") as f:
        f.write(blob)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`write_checkpoint` (no unpickling)."""
    with safe_open(str(path), framework="pt") as f:
        meta = (f.metadata() or {}).get(_META)
        if meta is None:
            raise ResumeError(f"{path} is not a polymodal checkpoint; delete it and fit again without resuming")
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
    return _unflatten(json.loads(meta)["tree"], tensors)


def checkpoint_epoch(path: str | Path) -> int | None:
    """The 0-based epoch whose end the checkpoint at ``path`` saved (None: no checkpoint there yet); reads only the
    file's header."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = (f.metadata() or {}).get(_META)
    except (OSError, ValueError, RuntimeError):  # absent, or (elsewhere than POSIX) replaced while opening
        return None
    if meta is None:
        return None
    epoch = json.loads(meta)["tree"]["__dict__"].get("epoch")
    return int(epoch) if isinstance(epoch, int) else None


class SafetensorsCheckpointIO(CheckpointIO):
    """Lightning's checkpoint IO through :func:`write_checkpoint` / :func:`read_checkpoint`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        write_checkpoint(path, checkpoint)

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        return read_checkpoint(path)

    def remove_checkpoint(self, path: Any) -> None:
        Path(path).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------ callbacks
class EpochSeed(L.Callback):
    """Reseeds Python, NumPy and torch at every training epoch start from (seed, epoch), so that augmentation,
    dropout, modality dropout and the loader workers' seeds draw the same numbers in an epoch whether the run got
    there in one process or was resumed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        s = epoch_seed(self.seed, trainer.current_epoch)
        random.seed(s)
        np.random.seed(s)
        torch.manual_seed(s)  # (and every CUDA device's generator)


class EpochCheckpoint(L.Callback):
    """Saves the trainer's checkpoint in ``checkpointing``'s folder at every training epoch end (after its
    validation, and also when the time limit ends an epoch early). Must come after the callbacks whose state it
    saves."""

    def __init__(self, checkpointing: Checkpointing) -> None:
        self.checkpointing = checkpointing

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:  # (the checkpoint itself is written by rank 0 only, as Lightning does)
            self.checkpointing.prepare()
        trainer.save_checkpoint(self.checkpointing.path)
        log.debug("checkpoint of epoch %d written to %s", trainer.current_epoch + 1, self.checkpointing.path)


# --------------------------------------------------------------------------------------- the folder
def resume_dir_for(out: str | Path) -> Path:
    """Where ``polymodal fit --out OUT`` keeps its checkpoint: ``.OUT.resume`` beside ``OUT``."""
    out = Path(out)
    return out.parent / f".{out.name}.resume"


def data_fingerprint(data: Any) -> Any:
    """What identifies a training table: a file's resolved path, size and modification time; a DataFrame's shape,
    columns and content hash."""
    if isinstance(data, (str, Path)):
        p = Path(data).resolve()
        st = p.stat()
        return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    frame = getattr(data, "frame", data)  # a Table
    if isinstance(frame, pd.DataFrame):
        digest = pd.util.hash_pandas_object(frame.astype(str), index=True).to_numpy()
        return {"rows": len(frame), "columns": [str(c) for c in frame.columns], "hash": hex(int(digest.sum()))}
    return {"type": type(data).__name__}


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if old == new else [prefix or "(all)"]


@dataclass
class Checkpointing:
    """A fit's checkpoint folder. ``resume``: continue from its checkpoint (the fit's fingerprint must match the
    one the folder was started with); otherwise any earlier checkpoint there is discarded. The folder is created
    with the first checkpoint: a fit that writes none (an ensemble's members, a failure before the first epoch
    ended) leaves nothing behind."""

    folder: Path
    resume: bool = False
    fingerprint: dict[str, Any] | None = None

    @property
    def path(self) -> Path:
        return self.folder / CHECKPOINT

    def begin(self, fingerprint: dict[str, Any]) -> None:
        """Check (resume) or record (a fresh start) the fit's fingerprint; call before training."""
        fingerprint = json.loads(json.dumps(fingerprint, default=str))  # as it will read back
        self.fingerprint = fingerprint
        stored = self.folder / FINGERPRINT
        if self.resume:
            if not stored.is_file():
                raise ResumeError(
                    f"nothing to resume: no checkpoint in {self.folder} (the fit finished, trained several members, "
                    "or stopped before its first epoch ended); "
                    + in_terms("call fit without resume=True", "run the command without --resume")
                )
            old = json.loads(stored.read_text())
            diff = _differences(old, fingerprint)
            if diff:
                shown = ", ".join(diff[:6]) + (f" and {len(diff) - 6} more" if len(diff) > 6 else "")
                raise ResumeError(
                    f"cannot resume the fit in {self.folder}: it was started with other data or arguments "
                    f"(differing: {shown}); "
                    + in_terms(
                        "pass the same data, label and config, or fit again without resume=True",
                        "run the same command line with --resume, or start again without --resume",
                    )
                )
            if self.path.is_file():
                log.info("resuming from the checkpoint in %s", self.folder)
            else:
                log.info("the interrupted fit saved no epoch yet: training starts from the beginning")
            return
        if not is_main_process():  # rank 0 alone clears a stale folder (two ranks removing it would race)
            return
        if self.folder.exists() or self.folder.is_symlink():
            ours = self.folder.is_dir() and (self.folder / FINGERPRINT).is_file()
            if not ours and not (self.folder.is_dir() and not any(self.folder.iterdir())):
                raise ResumeError(
                    f"{self.folder} exists and is not a polymodal checkpoint folder; move it or choose another"
                )
            if ours:
                log.warning(
                    "discarding the checkpoint of an earlier interrupted fit in %s (%s would have continued it)",
                    self.folder,
                    in_terms("resume=True", "--resume"),
                )
            shutil.rmtree(self.folder)

    def prepare(self) -> None:
        """Create the folder with the fit's fingerprint, before its first checkpoint."""
        stored = self.folder / FINGERPRINT
        if stored.is_file():
            return
        assert self.fingerprint is not None, "begin() records the fingerprint"
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(stored) as f:
            json.dump(self.fingerprint, f, indent=1, sort_keys=True)

    def resume_from(self) -> Path | None:
        """The checkpoint to continue from (None: train from the start)."""
        return self.path if self.resume and self.path.is_file() else None

    def finish(self) -> None:
        """The fit succeeded: its checkpoint is no longer needed."""
        shutil.rmtree(self.folder, ignore_errors=True)
