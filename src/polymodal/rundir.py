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
"""

from __future__ import annotations

import csv
import json
import stat
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .errors import RunDirError

FORMAT_VERSION = 1
BACKBONES = "backbones"
LEADERBOARD = "leaderboard.csv"
REQUIRED = ("polymodal.json", "config.yaml", "schema.json", "processors.json", "task.json", "model.safetensors")


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
    if not path.is_dir():
        raise RunDirError(f"run directory not found: {path}")
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if missing:
        raise RunDirError(f"{path} is not a complete polymodal run directory; missing: {', '.join(missing)}")
    meta = read_json(path / "polymodal.json")
    if meta.get("format") != FORMAT_VERSION:
        raise RunDirError(
            f"{path} was written in run-directory format {meta.get('format')}; this polymodal "
            f"reads format {FORMAT_VERSION}"
        )
