"""Starting a fit from a pre-trained run (``training.init``, ``fit --init``): the encoders of the modalities it shares
with the new table take its weights, and their processors take its fitted state.

A modality is *shared* when the run has a modality of the same name; it must then read the same columns, be of the
same kind and use the same encoder with the same settings, or the fit is refused with the modality named (a weight
of another shape, or one trained on other inputs, would be silently wrong). The processors' state (a text
vocabulary, a tabular normalisation, an image or audio size) is reused, not refitted on the labelled rows: the
weights were trained on inputs prepared that way, so a refitted vocabulary would feed them other token ids.
A processor with files of its own (a pretrained Hugging Face tokenizer or image processor) is fitted as usual: it
prepares inputs from its checkpoint, the same on any table. Modalities of the new table that the run lacks start
from scratch (logged); a table that shares none with the run is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from .config import PolymodalConfig, encoder_choice
from .data.processors import Processor
from .errors import ConfigError
from .pipeline import FittedPipeline
from .registry import ENCODERS
from .schema import Modality

log = logging.getLogger("polymodal")

_CACHE: dict[tuple[str, int], FittedPipeline] = {}


def load_init(path: str | Path) -> FittedPipeline:
    """The run at ``path`` (loaded once per change of its manifest: an ensemble builds several networks from it)."""
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(
            f"training.init: '{folder}' is not a run directory; create one with `polymodal pretrain TABLE --out "
            f"{folder}` (or give the path of an existing run)"
        )
    manifest = folder / "manifest.json"
    key = (str(folder.resolve()), manifest.stat().st_mtime_ns if manifest.exists() else 0)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = FittedPipeline.load(folder, verbose=False)
    return _CACHE[key]


def _encoder_settings(cfg: PolymodalConfig, m: Modality) -> tuple[str, dict[str, Any]]:
    choice = encoder_choice(cfg, m)
    params = choice.params()
    if choice.name in ENCODERS:  # defaults filled in: {dim: 64} and {} of the same encoder are the same settings
        params = ENCODERS.get(choice.name).Config(**params).model_dump()
    return choice.name, params


def shared_modalities(cfg: PolymodalConfig, modalities: list[Modality], init: FittedPipeline) -> list[str]:
    """The names of ``modalities`` that the run ``init`` has, checked to match (else :class:`ConfigError`)."""
    theirs = {m.name: m for m in init.modalities}
    shared, problems = [], []
    for m in modalities:
        other = theirs.get(m.name)
        if other is None:
            continue
        if other.kind != m.kind or list(other.columns) != list(m.columns):
            problems.append(
                f"'{m.name}' is {m.kind} over column(s) {', '.join(m.columns)} here, {other.kind} over "
                f"{', '.join(other.columns)} in the pre-trained run"
            )
            continue
        ours, pre = _encoder_settings(cfg, m), _encoder_settings(init.config, other)
        if ours != pre:
            diff = sorted(k for k in set(ours[1]) | set(pre[1]) if ours[1].get(k) != pre[1].get(k))
            what = f"encoder '{ours[0]}' here, '{pre[0]}' there" if ours[0] != pre[0] else f"encoder '{ours[0]}'"
            problems.append(
                f"'{m.name}': {what}"
                + (f"; settings that differ: {', '.join(f'{k} ({ours[1].get(k)} vs {pre[1].get(k)})' for k in diff)}")
            )
            continue
        shared.append(m.name)
    if problems:
        raise ConfigError(
            "training.init: these modalities do not match the pre-trained run, so its weights cannot start them: "
            + "; ".join(problems)
            + ". Use the run's encoder settings for them (its config.yaml), or set columns: {col: ignore}"
        )
    if not shared:
        raise ConfigError(
            f"training.init: this table shares no modality with the pre-trained run (it has "
            f"{', '.join(theirs)}; this table {', '.join(m.name for m in modalities)}): nothing to start from"
        )
    fresh = [m.name for m in modalities if m.name not in shared]
    log.info(
        "training.init: %s start from the pre-trained run%s",
        ", ".join(shared),
        f"; {', '.join(fresh)} from scratch" if fresh else "",
    )
    return shared


def reuse_processors(cfg: PolymodalConfig, modalities: list[Modality], processors: dict[str, Processor]) -> set[str]:
    """Give the shared modalities' processors the pre-trained run's fitted state; returns their names (the caller
    fits the others). Processors with files of their own are left to be fitted."""
    assert cfg.training.init is not None, "only called with training.init"
    init = load_init(cfg.training.init)
    done: set[str] = set()
    for name in shared_modalities(cfg, modalities, init):
        theirs = init.processors[name]
        if theirs.has_assets:
            continue
        processors[name].set_state(theirs.state(), theirs.tensors())
        done.add(name)
    return done


def init_encoders(cfg: PolymodalConfig, modalities: list[Modality], model: nn.Module) -> list[str]:
    """Copy the pre-trained run's encoder weights into ``model``'s encoders of the shared modalities."""
    assert cfg.training.init is not None, "only called with training.init"
    init = load_init(cfg.training.init)
    mine = getattr(model, "encoders", None)
    theirs = getattr(init.model, "encoders", None)
    if not isinstance(mine, nn.ModuleDict) or not isinstance(theirs, nn.ModuleDict):
        raise ConfigError("training.init: only a network of per-modality encoders can start from a pre-trained run")
    names = [n for n in shared_modalities(cfg, modalities, init) if n in mine]
    for name in names:
        try:
            mine[name].load_state_dict(theirs[name].state_dict())
        except RuntimeError as e:  # shapes: the processors' state differs (e.g. refitted on other rows)
            raise ConfigError(f"training.init: the pre-trained '{name}' encoder does not fit this one: {e}") from None
        scale_learning_rate(mine[name], cfg.training.init_lr_scale)
    return names


def scale_learning_rate(encoder: nn.Module, scale: float) -> None:
    """Train ``encoder`` at ``scale`` times its learning rate (on top of a pretrained backbone's own layer-wise
    rates, ``lr_scales``, which the optimizer's parameter groups read); 0 freezes it."""
    if scale == 1.0:
        return
    if scale == 0.0:
        for p in encoder.parameters():
            p.requires_grad_(False)
        return
    own = getattr(encoder, "lr_scales", None)
    base: dict[str, float] = own() if callable(own) else {}
    scales = {n: scale * base.get(n, 1.0) for n, _ in encoder.named_parameters()}
    # an instance attribute: this encoder object only, for this fit (a loaded run is rebuilt without it)
    setattr(encoder, "lr_scales", lambda: scales)  # noqa: B010  (nn.Module's __setattr__ types only tensors)
