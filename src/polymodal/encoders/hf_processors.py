"""Processors for pretrained (Hugging Face) encoders: the model's own tokenizer, image processor or feature extractor.

They follow the :class:`~polymodal.data.processors.Processor` contract and decode to the same kinds of item as the
from-scratch processors (token ids, a uint8 [C, H, W] image, a float32 waveform), so missing-modality handling,
shared decoding in ``compare`` and robustness corruptions work unchanged. Each batch also carries ``<name>.key``
[B, 2] int64: a hash of the item and of the preprocessing settings, which the frozen-feature cache is keyed by.

The preprocessing files (tokenizer, image processor or feature extractor config, and the model's config.json) are
written into the run directory by ``save_assets``; a loaded run reads them from there (``load_assets``), never from
the original model folder or the hub.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..config import ProcessingConfig
from ..data import loaders
from ..data.processors import PROCESSORS, LoadContext, Processor, _FileProcessor, _present_values
from ..errors import ConfigError, ExportError, LoadError


class _HFProcessor(Processor):
    """Shared by the three kinds: where the preprocessing files are, and the cache key of an item."""

    needs_encoder_config = True

    def __init__(self, name: str, columns: list[str], cfg: ProcessingConfig, encoder_config: Any):
        super().__init__(name, columns, cfg)
        self.encoder_config = encoder_config
        self.source = str(encoder_config.model)
        self.assets: Path | None = None  # a run directory's backbones/<name> once loaded from one
        self._pre: Any = None
        self._model_config: Any = None

    # --- the pretrained files -----------------------------------------------------------------------------
    @property
    def location(self) -> str:
        return str(self.assets) if self.assets is not None else self.source

    @property
    def preprocessor(self) -> Any:
        if self._pre is None:
            from .hf_hub import load_preprocessor

            self._pre = load_preprocessor(self.kind, self.location)
        return self._pre

    @property
    def model_config(self) -> Any:
        if self._model_config is None:
            from .hf_hub import load_config

            self._model_config = load_config(self.location)
        return self._model_config

    def backbone(self) -> torch.nn.Module:
        """The whole pretrained model: with its pretrained weights at fit time; from a run directory, with the
        architecture only (the run's model.safetensors holds the weights)."""
        from .hf_hub import load_model

        if self.assets is not None:
            return load_model(self.location, config=self.model_config)
        return load_model(self.source)

    def save_assets(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.preprocessor.save_pretrained(str(folder))
        self.model_config.save_pretrained(str(folder))

    def load_assets(self, folder: Path) -> None:
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"the run directory lacks the pretrained model files of '{self.name}' ({folder}); "
                "it was written incompletely — fit and save the model again"
            )
        self.assets, self._pre, self._model_config = folder, None, None

    # --- cache keys -------------------------------------------------------------------------------------------
    def preprocessing(self) -> dict[str, Any]:
        """Every setting that changes what ``collate`` + the backbone's input are, given an item."""
        return self.state()

    def item_key(self, item: np.ndarray, salt: bytes | None = None) -> np.ndarray:
        """16 bytes (as 2 int64) hashing the decoded item with the preprocessing settings."""
        if salt is None:
            salt = json.dumps(self.preprocessing(), sort_keys=True, default=str).encode()
        h = hashlib.blake2b(salt, digest_size=16)
        h.update(f"{item.dtype}{item.shape}".encode())
        h.update(np.ascontiguousarray(item).data)
        return np.frombuffer(h.digest(), dtype=np.int64)

    def keys(self, items: list[np.ndarray | None]) -> torch.Tensor:
        """The cache keys of a batch ([B, 2] int64; zeros for absent items)."""
        salt = json.dumps(self.preprocessing(), sort_keys=True, default=str).encode()
        out = np.zeros((len(items), 2), np.int64)
        for i, it in enumerate(items):
            if it is not None:
                out[i] = self.item_key(it, salt)
        return torch.from_numpy(out)

    def set_state(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


@PROCESSORS.register("hf_text")
class HFTextProcessor(_HFProcessor):
    """The model's tokenizer. Items are token ids with the model's special tokens; the length limit is learned from
    the training texts (95th percentile) within the model's own limit."""

    kind = "text"

    def _limit(self) -> int:
        cfg = self.model_config
        limits = [getattr(cfg, "max_position_embeddings", None), getattr(self.preprocessor, "model_max_length", None)]
        sizes = [int(v) for v in limits if isinstance(v, (int, float)) and 0 < v < 1_000_000]
        return min(sizes) if sizes else 512

    def fit(self, frame: pd.DataFrame, ctx: LoadContext) -> None:
        tok = self.preprocessor
        limit = self._limit()
        if self.encoder_config.max_length is not None:
            self.max_length = min(self.encoder_config.max_length, limit)
        else:
            texts = [str(t)[: ctx.limits.max_text_chars] for t in _present_values(frame, self.columns[0])]
            sample = texts[:: max(1, len(texts) // 2000)]
            lengths = [len(ids) for ids in tok(sample, truncation=True, max_length=limit)["input_ids"]] or [16]
            self.max_length = int(min(max(np.percentile(lengths, 95), 8), 256, limit))
        self.pad_id = int(tok.pad_token_id if tok.pad_token_id is not None else 0)

    def load(self, value: Any, ctx: LoadContext) -> np.ndarray:
        text = str(value)[: ctx.limits.max_text_chars]
        ids = self.preprocessor(text, truncation=True, max_length=self.max_length)["input_ids"]
        return np.asarray(ids, dtype=np.int64)

    def collate(self, items: list[np.ndarray | None], train: bool) -> dict[str, torch.Tensor]:
        width = max([len(it) for it in items if it is not None] + [1])
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((len(items), width), dtype=torch.long)
        for i, it in enumerate(items):
            if it is not None:
                ids[i, : len(it)] = torch.from_numpy(it)
                attn[i, : len(it)] = 1
        return {self.key("input_ids"): ids, self.key("attention_mask"): attn, self.key("key"): self.keys(items)}

    def state(self) -> dict[str, Any]:
        return {"source": self.source, "max_length": self.max_length, "pad_id": self.pad_id}


@PROCESSORS.register("hf_image")
class HFImageProcessor(_HFProcessor, _FileProcessor):
    """The model's image processor (Pillow backend) resizes and crops each image once, to uint8; rescaling and
    normalisation with the model's mean/std happen per batch in torch (as the image processor would do them)."""

    kind = "image"

    def fit(self, frame: pd.DataFrame, ctx: LoadContext) -> None:
        pre = self.preprocessor
        cfg = self.model_config
        self.channels = int(getattr(cfg, "num_channels", 3) or 3)
        self.rescale = float(pre.rescale_factor) if getattr(pre, "do_rescale", True) else 1.0
        if getattr(pre, "do_normalize", True):
            mean = np.broadcast_to(np.asarray(pre.image_mean, dtype=np.float64), (self.channels,))
            std = np.broadcast_to(np.asarray(pre.image_std, dtype=np.float64), (self.channels,))
            self.mean, self.std = mean.tolist(), std.tolist()
        else:
            self.mean, self.std = [0.0] * self.channels, [1.0] * self.channels

    def load(self, value: Any, ctx: LoadContext) -> np.ndarray:
        im = loaders.load_image(ctx.resolve(value), ctx.limits, self.channels)
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB" if self.channels == 3 else "L")
        try:
            out = self.preprocessor(images=[im], do_rescale=False, do_normalize=False, return_tensors="np")
        except (ValueError, TypeError) as e:
            raise LoadError(f"the image processor of '{self.source}' cannot read this image: {e}") from None
        arr = np.asarray(out["pixel_values"][0])
        return np.clip(np.rint(arr), 0, 255).astype(np.uint8)

    def collate(self, items: list[np.ndarray | None], train: bool) -> dict[str, torch.Tensor]:
        present = [it for it in items if it is not None]
        shape = present[0].shape if present else (self.channels, *self._size())
        blank = np.zeros(shape, np.uint8)
        x = torch.from_numpy(np.stack([blank if it is None else it for it in items])).float()
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return {self.key("pixel_values"): (x * self.rescale - mean) / std, self.key("key"): self.keys(items)}

    def _size(self) -> tuple[int, int]:
        pre = self.preprocessor
        size = getattr(pre, "crop_size", None) if getattr(pre, "do_center_crop", False) else None
        size = size or getattr(pre, "size", None) or {}
        size = dict(size) if not isinstance(size, dict) else size
        if "height" in size:
            return int(size["height"]), int(size["width"])
        side = int(size.get("shortest_edge", 224))
        return side, side

    def state(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "channels": self.channels,
            "rescale": self.rescale,
            "mean": self.mean,
            "std": self.std,
        }


@PROCESSORS.register("hf_audio")
class HFAudioProcessor(_HFProcessor, _FileProcessor):
    """Mono waveform at the feature extractor's sampling rate, cropped/padded to a fixed length (learned from the
    training files: their 95th-percentile duration, within ``max_seconds``); the feature extractor (Wav2Vec2
    normalisation, Whisper log-mel) runs per batch inside the encoder, only for inputs not already cached."""

    kind = "audio"

    def fit(self, frame: pd.DataFrame, ctx: LoadContext) -> None:
        pre = self.preprocessor
        self.sample_rate = int(getattr(pre, "sampling_rate", 16_000))
        chunk = getattr(pre, "n_samples", None)  # Whisper: fixed 30 s windows, longer input is cut off
        cap = self.encoder_config.max_seconds
        if chunk:
            cap = min(cap, chunk / self.sample_rate)
        if self.encoder_config.seconds is not None:
            self.seconds = float(min(self.encoder_config.seconds, cap))
        else:
            heads = self._readable_sample(frame, lambda v: loaders.audio_info(ctx.resolve(v), ctx.limits), 200)
            p95 = float(np.percentile([d for _, d in heads], 95)) if heads else 1.0
            self.seconds = float(min(max(round(p95, 2), 0.25), cap))

    @property
    def n_samples(self) -> int:
        return int(math.ceil(self.seconds * self.sample_rate))

    def load(self, value: Any, ctx: LoadContext) -> np.ndarray:
        path = ctx.resolve(value)
        wav = loaders.load_audio(path, ctx.limits, self.sample_rate, max_seconds=self.seconds * 1.5)
        return np.ascontiguousarray(wav[: self.n_samples], dtype=np.float32)

    def collate(self, items: list[np.ndarray | None], train: bool) -> dict[str, torch.Tensor]:
        wave = torch.zeros(len(items), self.n_samples)
        for i, it in enumerate(items):
            if it is not None:
                wave[i, : len(it)] = torch.from_numpy(it[: self.n_samples])
        return {self.key("waveform"): wave, self.key("key"): self.keys(items)}

    def backbone_inputs(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        """The feature extractor's output for a batch of waveforms [B, samples] (the backbone's keyword inputs)."""
        out = self.preprocessor(
            [w.numpy() for w in wave.detach().cpu()], sampling_rate=self.sample_rate, return_tensors="pt"
        )
        return {k: v for k, v in out.items() if k in ("input_values", "input_features")}

    def traceable_backbone_inputs(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        """What :meth:`backbone_inputs` computes, in torch ops that an ONNX trace keeps (for ``polymodal export``;
        the eager path keeps the feature extractor itself)."""
        name = type(self.preprocessor).__name__
        fn = TRACEABLE_FEATURES.get(name)
        if fn is None:
            raise ExportError(
                f"the feature extractor {name} of '{self.source}' has no traceable form in polymodal (supported: "
                f"{', '.join(sorted(TRACEABLE_FEATURES))}); serve this model with --backend torch"
            )
        return fn(self.preprocessor, wave)

    def state(self) -> dict[str, Any]:
        return {"source": self.source, "sample_rate": self.sample_rate, "seconds": self.seconds}


def _wav2vec2_features(pre: Any, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    """Wav2Vec2FeatureExtractor: each waveform to zero mean and unit variance (its ``zero_mean_unit_var_norm``)."""
    if getattr(pre, "do_normalize", False):
        mean = wave.mean(1, keepdim=True)
        var = ((wave - mean) ** 2).mean(1, keepdim=True)
        wave = (wave - mean) / torch.sqrt(var + 1e-7)
    return {"input_values": wave}


def _whisper_features(pre: Any, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    """WhisperFeatureExtractor: zero-pad to its window, then the log-mel spectrogram of its torch path, with the
    short-time Fourier transform as a product with DFT matrices (ONNX has no complex numbers)."""
    n_fft, hop = int(pre.n_fft), int(pre.hop_length)
    pad = int(pre.n_samples) - wave.shape[1]
    if pad > 0:
        wave = torch.nn.functional.pad(wave, (0, pad))
    x = torch.nn.functional.pad(wave[:, None], (n_fft // 2, n_fft // 2), mode="reflect")  # [B, 1, samples]
    # framing, Hann window and DFT as one strided convolution (real parts, then imaginary parts)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    angle = 2 * math.pi * k[:, None] * torch.arange(n_fft, dtype=torch.float64)[None] / n_fft  # [F, n_fft]
    basis = torch.cat([torch.cos(angle), torch.sin(angle)]) * torch.hann_window(n_fft, dtype=torch.float64)
    spec = torch.nn.functional.conv1d(x, basis.float()[:, None], stride=hop)  # [B, 2F, T]
    real, imag = spec.chunk(2, dim=1)
    power = (real**2 + imag**2).transpose(1, 2)  # [B, T, F]
    mel = power[:, :-1] @ torch.from_numpy(np.asarray(pre.mel_filters, dtype=np.float32))  # [B, T-1, mels]
    log_spec = torch.clamp(mel, min=1e-10).log10().transpose(1, 2)
    top = log_spec.amax(dim=(1, 2), keepdim=True)
    log_spec = torch.maximum(log_spec, top - 8.0)
    return {"input_features": (log_spec + 4.0) / 4.0}


# feature extractor class -> its maths in torch (what `polymodal export` traces for hf_audio)
TRACEABLE_FEATURES = {
    "Wav2Vec2FeatureExtractor": _wav2vec2_features,
    "WhisperFeatureExtractor": _whisper_features,
}
