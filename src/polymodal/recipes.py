"""Configs measured to work well for one kind of problem; each is a plain config dict to pass, or to merge into yours.

``VQA``  questions about images, answered by classification over the training answers (VQA-style), as in
         ``polymodal demo --task qa`` and seed 003:

         - ``film`` fusion: the question scales and shifts the features of every image cell, and attention pooling
           reads the cells it singles out;
         - image tokens that know their row and column: coordinate input channels (``coords``) and 2-D sine-cosine
           position codes (``positions``), which questions about places ("what shape is at the top left?",
           "where is the red circle?") need;
         - no shift augmentation of the images (``processing.image_augment: false``): it moves the very things whose
           position the questions ask about;
         - a learning rate of 5e-4, a quarter of the default.

         The figures, and the command that measures them, are in docs/BENCHMARKS.md (multimodal question answering).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from .config import read_config_file
from .errors import ConfigError

RECIPES: dict[str, dict[str, Any]] = {
    "vqa": {
        "fusion": {"name": "film"},
        "encoders": {"image": {"name": "image_cnn", "coords": True, "positions": True}},
        "processing": {"image_augment": False},
        "training": {"learning_rate": 5e-4},
    },
}


def recipe(name: str, config: dict[str, Any] | str | Path | None = None) -> dict[str, Any]:
    """The recipe ``name`` as a config dict, with ``config`` (a dict, or a YAML/JSON file) merged on top: what
    ``config`` sets wins, key by key, and the recipe fills in the rest: ``recipe("vqa", {"training":
    {"max_epochs": 20}})`` keeps the recipe's learning rate. An encoder or fusion that ``config`` names differently
    replaces the recipe's with its parameters."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe '{name}'; choose one of: {', '.join(sorted(RECIPES))}")
    user = read_config_file(config) if isinstance(config, (str, Path)) else (config or {})
    return _merge(copy.deepcopy(RECIPES[name]), user)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for k, v in extra.items():
        old: Any = base.get(k)
        # A component chosen by another name (an encoder, the fusion) replaces the recipe's, parameters and all.
        same = isinstance(v, dict) and isinstance(old, dict) and v.get("name", old.get("name")) == old.get("name")
        base[k] = _merge(old, v) if same else copy.deepcopy(v)
    return base
