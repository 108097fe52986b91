"""Loading Hugging Face ``transformers`` backbones and their preprocessing files, from a local folder or a hub id.

``transformers`` is imported only here and only when a pretrained encoder is used (it takes seconds to import).
Nothing here turns downloads on or off: with ``HF_HUB_OFFLINE=1`` (as in the tests) a hub id is read from the local
Hugging Face cache only, and a missing model is a :class:`~polymodal.errors.ConfigError` that says what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError


@contextlib.contextmanager
def quiet_transformers() -> Iterator[Any]:
    """Import transformers with its info messages and weight-loading progress bars off (they flood every fit);
    its warnings about missing weights are errors-level anyway when they matter, and we raise our own messages."""
    import transformers
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield transformers
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _cannot_load(what: str, source: str, err: Exception) -> ConfigError:
    where = (
        "the folder exists but lacks the files"
        if Path(source).expanduser().is_dir()
        else "it is not a local folder, and it is not in the Hugging Face cache"
    )
    offline = " (downloads are off: HF_HUB_OFFLINE=1)" if os.environ.get("HF_HUB_OFFLINE") in ("1", "true") else ""
    return ConfigError(
        f"cannot load the {what} of pretrained model '{source}': {where}{offline}.\n"
        f"Pass a local folder holding config.json and the weights (as written by save_pretrained), or fetch the "
        f"model once with network access. ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    )


def _source(source: str | Path) -> str:
    path = Path(source).expanduser()
    return str(path) if path.exists() else str(source)


def load_config(source: str | Path) -> Any:
    """The backbone's ``PretrainedConfig`` (architecture only, no weights)."""
    with quiet_transformers() as tf:
        try:
            return tf.AutoConfig.from_pretrained(_source(source))
        except (OSError, ValueError, KeyError) as e:
            raise _cannot_load("configuration", str(source), e) from None


def load_model(source: str | Path, config: Any | None = None) -> nn.Module:
    """The backbone with pretrained weights (``config`` None), or built from ``config`` with fresh weights (a saved
    run: its weights then come from the run's model.safetensors)."""
    # Weights a checkpoint lacks (a pooler, a head) are initialised randomly: from a fixed seed, so that every run
    # gets the same backbone whatever its own seed, and its cached features serve all of them (compare --seeds).
    with quiet_transformers() as tf, torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            if config is not None:
                return tf.AutoModel.from_config(config)
            return tf.AutoModel.from_pretrained(_source(source))
        except (OSError, ValueError, KeyError) as e:
            raise _cannot_load("weights", str(source), e) from None


def load_preprocessor(kind: str, source: str | Path) -> Any:
    """The tokenizer (text), image processor (image) or feature extractor (audio) saved with the model."""
    with quiet_transformers() as tf:
        try:
            if kind == "text":
                return tf.AutoTokenizer.from_pretrained(_source(source))
            if kind in ("image", "video"):  # a video model's processor is an image processor applied per frame
                # The Pillow/NumPy backend: the default one needs an image library this project does not install.
                return tf.AutoImageProcessor.from_pretrained(_source(source), backend="pil")
            return tf.AutoFeatureExtractor.from_pretrained(_source(source))
        except (OSError, ValueError, KeyError, TypeError) as e:
            what = {"text": "tokenizer", "image": "image processor", "video": "image processor"}.get(
                kind, "feature extractor"
            )
            raise _cannot_load(what, str(source), e) from None


def modality_part(model: nn.Module, kind: str) -> tuple[nn.Module, nn.Module | None]:
    """The part of a loaded model that encodes ``kind``, and its projection into a joint space if it has one.

    Dual encoders (CLIP and its kin) hold ``text_model``/``vision_model`` with ``text_projection``/
    ``visual_projection``; encoder-decoder models (Whisper) keep only their encoder; other models are used whole.
    """
    attr, proj = {"text": ("text_model", "text_projection"), "image": ("vision_model", "visual_projection")}.get(
        kind, ("", "")
    )
    if attr and hasattr(model, attr):
        return getattr(model, attr), getattr(model, proj, None)
    if kind == "audio" and getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
        # (torch types a module's attributes as Tensor | Module)
        return model.get_encoder(), None  # type: ignore[operator]
    return model, None


LAYER_STACKS = ("encoder.layer", "encoder.layers", "layers", "layer", "encoder.stages", "stages", "blocks", "h")


def layer_stack(backbone: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The backbone's stack of blocks, bottom to top (BERT/ViT ``encoder.layer``, CLIP/Wav2Vec2 ``encoder.layers``,
    Whisper's encoder ``layers``, ResNet ``encoder.stages``); None when there is no known one."""
    for path in LAYER_STACKS:
        mod: Any = backbone
        for part in path.split("."):
            mod = getattr(mod, part, None)
            if mod is None:
                break
        if isinstance(mod, nn.ModuleList) and len(mod) > 0:
            return path, mod
    return None


def layer_depths(backbone: nn.Module) -> tuple[dict[str, int], int] | None:
    """Each parameter's depth: 0 below the block stack (embeddings), i + 1 inside block i, n + 1 above it (final
    norm, pooler). Returns (depth by parameter name, n) or None when the block stack cannot be found."""
    found = layer_stack(backbone)
    if found is None:
        return None
    _path, blocks = found
    n = len(blocks)
    block_of = {id(p): i for i, b in enumerate(blocks) for p in b.parameters()}
    # Parameters registered before the stack (in module order) are below it; those after are above it.
    depths: dict[str, int] = {}
    seen_stack = False
    for name, p in backbone.named_parameters():
        if id(p) in block_of:
            depths[name] = block_of[id(p)] + 1
            seen_stack = True
        else:
            depths[name] = n + 1 if seen_stack else 0
    return depths, n


def fingerprint(modules: Sequence[nn.Module | None], extra: dict[str, Any]) -> str:
    """A hash of the weights (and buffers) of ``modules`` and of ``extra`` settings: equal fingerprints compute
    equal features, so it names the model's folder in the feature cache."""
    h = hashlib.blake2b(digest_size=12)
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    for m in modules:
        if m is None:
            continue
        for name, t in m.state_dict().items():
            h.update(name.encode())
            t = t.detach().cpu().contiguous()
            h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer itself: no copy of the weights
    return h.hexdigest()
