"""Processors turn cell values into tensors. Fitted on the training split only; their state is saved with the run.

Each processor works on one modality and has three steps:
  ``fit(values)``         learn sizes, statistics and vocabularies from training rows
  ``load(value)``         decode one cell to a compact array (deterministic, so results can be cached)
  ``collate(items)``      stack a batch of loaded items (``None`` = absent) into tensors, augmenting in training
State is split into JSON (``state()``) and tensors (``tensors()``) so that nothing is pickled.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import pandas as pd
import torch
from PIL import Image
from pydantic import ValidationError

from ..config import LimitsConfig, PolymodalConfig, ProcessingConfig, check_encoder_keys, config_error, encoder_choice
from ..errors import LoadError
from ..registry import ENCODERS, Registry
from ..schema import ColumnKind, Modality, Schema, as_numbers
from . import loaders, segment

PROCESSORS: Registry["Processor"] = Registry("processor")


@dataclass
class LoadContext:
    """Where a table's relative paths resolve (``None`` on the server: no path is opened) and the limits to apply."""

    root: Path
    limits: LimitsConfig

    def resolve(self, value: Any) -> loaders.Source:
        """The file a cell names (or the cell's in-memory content), under ``limits.confine_to_root``."""
        return loaders.resolve_path(value, self.root, confine=self.limits.confine_to_root)


def _sample(values: list[Any], n: int, seed: int = 0) -> list[Any]:
    if len(values) <= n:
        return values
    idx = np.random.default_rng(seed).choice(len(values), n, replace=False)
    return [values[i] for i in sorted(idx)]


class Processor(ABC):
    """Base class: one per modality kind, registered by kind name."""

    kind: ClassVar[str]

    def __init__(self, name: str, columns: list[str], cfg: ProcessingConfig):
        self.name = name
        self.columns = columns
        self.cfg = cfg

    # --- learned at fit time -------------------------------------------------------------------------------
    @abstractmethod
    def fit(self, frame: pd.DataFrame, ctx: LoadContext) -> None: ...

    # --- per row ---------------------------------------------------------------------------------------------
    def cell(self, row: Mapping[Any, Any]) -> Any:
        """The raw value this modality reads from a row (one column for most kinds)."""
        return row[self.columns[0]]

    def is_absent(self, value: Any) -> bool:
        return loaders.is_empty(value)

    def cache_key(self, value: Any) -> str | None:
        """Rows with equal keys share one decoded item (e.g. the same file); None = do not share."""
        return None

    @abstractmethod
    def load(self, value: Any, ctx: LoadContext) -> Any: ...

    def load_signature(self) -> dict[str, Any]:
        """The fitted state that ``load`` depends on: equal signatures decode a cell identically."""
        return self.state()

    # --- per batch ------------------------------------------------------------------------------------------
    @abstractmethod
    def collate(self, items: list[Any | None], train: bool) -> dict[str, torch.Tensor]: ...

    # --- persistence ----------------------------------------------------------------------------------------
    @abstractmethod
    def state(self) -> dict[str, Any]: ...

    def tensors(self) -> dict[str, torch.Tensor]:
        return {}

    @abstractmethod
    def set_state(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None: ...

    def key(self, suffix: str = "") -> str:
        return f"{self.name}.{suffix}" if suffix else self.name

    # --- files besides JSON and tensors (a pretrained model's tokenizer/config), in the run directory ---------
    def save_assets(self, folder: Path) -> None:
        """Write the files this processor needs into ``folder`` (nothing for most processors)."""

    def load_assets(self, folder: Path) -> None:
        """Read what :meth:`save_assets` wrote (called by ``Predictor.load`` after ``set_state``)."""

    @property
    def has_assets(self) -> bool:
        return type(self).save_assets is not Processor.save_assets


def _present_values(frame: pd.DataFrame, column: str) -> list[Any]:
    return [v for v in frame[column].tolist() if not loaders.is_empty(v)]


class _FileProcessor(Processor):
    def cache_key(self, value: Any) -> str | None:
        return str(value).strip()

    def _readable_sample(self, frame: pd.DataFrame, probe: Callable[[Any], Any], n: int, seed: int = 0) -> list[Any]:
        """``probe`` up to ``n`` training cells, skipping unreadable files (prepare/validate report them by row)."""
        out = []
        for v in _sample(_present_values(frame, self.columns[0]), n, seed):
            try:
                out.append(probe(v))
            except LoadError:
                continue
        return out


@PROCESSORS.register("image")
class ImageProcessor(_FileProcessor):
    """Resize to a square, keep uint8 until the batch; normalise with training mean/std; shift + jitter in training."""

    kind = "image"

    def fit(self, frame: pd.DataFrame, ctx: LoadContext) -> None:
        heads = self._readable_sample(frame, lambda v: loaders.image_size(ctx.resolve(v), ctx.limits), 200)
        if self.cfg.image_size is not None:
            self.size = self.cfg.image_size
        else:
            side = float(np.median([max(w, h) for w, h, _ in heads])) if heads else 64.0
            self.size = int(min(max(8 * math.ceil(side / 8), 32), 128))
        if self.cfg.image_channels is not None:
            self.channels = self.cfg.image_channels
        else:
            gray = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
            self.channels = 1 if heads and all(m in gray for _, _, m in heads) else 3
        pixels = self._readable_sample(frame, lambda v: self.load(v, ctx), 64, seed=1)
        if pixels:
            arr = np.stack(pixels).astype(np.float32) / 255.0
            self.mean = arr.mean(axis=(0, 2, 3)).tolist()
            self.std = np.maximum(arr.std(axis=(0, 2, 3)), 1e-3).tolist()
        else:
            self.mean, self.std = [0.5] * self.channels, [0.25] * self.channels

    def load_signature(self) -> dict[str, Any]:
        return {"size": self.size, "channels": self.channels}

    def load(self, value: Any, ctx: LoadContext) -> np.ndarray:
        im = loaders.load_image(ctx.resolve(value), ctx.limits, self.channels)
        im = im.resize((self.size, self.size), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
        return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))

    def collate(self, items: list[np.ndarray | None], train: bool) -> dict[str, torch.Tensor]:
        blank = np.zeros((self.channels, self.size, self.size), np.uint8)
        x = torch.from_numpy(np.stack([blank if it is None else it for it in items])).float().div_(255.0)
        if train and self.cfg.image_augment:
            x = _random_shift(x, max(1, self.size // 10))
            x = x * (1 + 0.1 * (torch.rand(len(x), 1, 1, 1) - 0.5) * 2)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return {self.key(): (x - mean) / std}

    def state(self) -> dict[str, Any]:
        return {"size": self.size, "channels": self.channels, "mean": self.mean, "std": self.std}

    def set_state(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.size, self.channels, self.mean, self.std = state["size"], state["channels"], state["mean"], state["std"]


def _random_shift(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Translate each image by up to ``pad`` pixels (edge-replicated), a cheap batched augmentation."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (b,))
    dy = torch.randint(0, 2 * pad + 1, (b,))
    # One gather for the whole batch (a per-image Python loop cost more than the convolutions on small images);
    # the same draws give the same crops as slicing each image.
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # [B, h, 1]
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # [B, 1, w]
    out = padded[torch.arange(b)[:, None, None], :, rows, cols]  # [B, h, w, C]: the indexed dims come first
    return out.permute(0, 3, 1, 2).contiguous()


@functools.lru_cache(maxsize=8)
def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    """Triangular HTK-style mel filters, shape [n_fft // 2 + 1, n_mels] (cached: every collation asks for the same
    one; callers must not modify it in place)."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(20.0)), hz_to_mel(np.array(sample_rate / 2)), n_mels + 2))
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.maximum(0, np.minimum((freqs - lower) / (center - lower), (upper - freqs) / (upper - center)))
    return torch.from_numpy(fb.T.astype(np.float32))


@functools.lru_cache(maxsize=8)
def _hann_window(n_fft: int) -> torch.Tensor:
    return torch.hann_window(n_fft)


@PROCESSORS.register("audio")
class AudioProcessor(_FileProcessor):
    """Mono waveform at one sample rate, cropped/padded to a fixed length; batched log-mel spectrogram in torch."""

    kind = "audio"

    def fit(self, frame: pd.DataFrame, ctx: LoadContext) -> None:
        heads = self._readable_sample(frame, lambda v: loaders.audio_info(ctx.resolve(v), ctx.limits), 200)
        if self.cfg.sample_rate is not None:
            self.sample_rate = self.cfg.sample_rate
        else:
            common = Counter(sr for sr, _ in heads).most_common(1)
            self.sample_rate = min(common[0][0], 16_000) if common else 16_000
        if self.cfg.audio_seconds is not None:
            self.seconds = float(self.cfg.audio_seconds)
        else:
            p95 = float(np.percentile([d for _, d in heads], 95)) if heads else 1.0
            self.seconds = float(min(max(round(p95, 2), 0.25), 10.0))
        self.n_mels = self.cfg.n_mels
        self.n_fft = 1 << max(6, int(round(math.log2(self.sample_rate * 0.025))))
        self.hop = max(1, int(self.sample_rate * 0.010))
        self.mean, self.std = 0.0, 1.0
        waves = self._readable_sample(frame, lambda v: self.load(v, ctx), 64, seed=1)
        if waves:
            mel = self._logmel(self._fix_length(waves, train=False))
            self.mean, self.std = float(mel.mean()), float(max(mel.std().item(), 1e-3))

    @property
    def n_samples(self) -> int:
        return int(round(self.seconds * self.sample_rate))

    @property
    def n_frames(self) -> int:
        return self.n_samples // self.hop + 1

    def load_signature(self) -> dict[str, Any]:
        return {"sample_rate": self.sample_rate, "seconds": self.seconds}

    def load(self, value: Any, ctx: LoadContext) -> np.ndarray:
        path = ctx.resolve(value)
        return loaders.load_audio(path, ctx.limits, self.sample_rate, max_seconds=self.seconds * 1.5)

    def _fix_length(self, items: list[np.ndarray | None], train: bool) -> torch.Tensor:
        n = self.n_samples
        out = torch.zeros(len(items), n)
        for i, wav in enumerate(items):
            if wav is None:
                continue
            w = torch.from_numpy(wav)
            if len(w) > n:
                start = int(torch.randint(0, len(w) - n + 1, ()).item()) if train else 0
                w = w[start : start + n]
            offset = int(torch.randint(0, n - len(w) + 1, ()).item()) if train and self.cfg.audio_augment else 0
            out[i, offset : offset + len(w)] = w
        return out

    def _logmel(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, self.n_fft, self.hop, window=_hann_window(self.n_fft), return_complex=True)
        power = spec.abs().pow(2).transpose(1, 2)  # [B, T, F]
        fb = mel_filterbank(self.n_fft, self.n_mels, self.sample_rate)
        return torch.log(power @ fb + 1e-6).transpose(1, 2)  # [B, M, T]

    def collate(self, items: list[np.ndarray | None], train: bool) -> dict[str, torch.Tensor]:
        mel = (self._logmel(self._fix_length(items, train)) - self.mean) / self.std
        if train and self.cfg.audio_augment:
            mel = _spec_augment(mel)
        return {self.key(): mel.unsqueeze(1)}

    def state(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("sample_rate", "seconds", "n_mels", "n_fft", "hop", "mean", "std")}

    def set_state(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


def _spec_augment(mel: torch.Tensor, max_f: int = 6, max_t: int = 10) -> torch.Tensor:
    """One frequency band and one time span zeroed per example (SpecAugment, Park et al. 2019)."""
    b, m, t = mel.shape
    fm = torch.arange(m).view(1, m, 1)
    tm = torch.arange(t).view(1, 1, t)
    f0 = torch.randint(0, m, (b, 1, 1))
    fw = torch.randint(0, max_f + 1, (b, 1, 1))
    t0 = torch.randint(0, t, (b, 1, 1))
    tw = torch.randint(0, max_t + 1, (b, 1, 1))
    drop = ((fm >= f0) & (fm < f0 + fw)) | ((tm >= t0) & (tm < t0 + tw))
    return mel.masked_fill(drop, 0.0)


PAD, UNK = 0, 1


def tokenize(text: str, segmentation: str = segment.LEGACY_SEGMENTATION) -> list[str]:
    """Lower-cased tokens (``polymodal.data.segment``; the default splits on word characters and punctuation)."""
    return segment.tokenize(text, segmentation)


@PROCESSORS.register("text")
class TextProcessor(Processor):
    """Lower-cased word/punctuation tokens, CJK text segmented by ``processing.text_segmentation``; a vocabulary of
    the most frequent training tokens (0 = pad, 1 = unknown)."""

    kind = "text"
    segmentation = segment.LEGACY_SEGMENTATION

    def tokens(self, text: str) -> list[str]:
        """The tokens this processor sees in ``text`` (before the vocabulary lookup and the length cut)."""
        return segment.tokenize(text, self.segmentation)

    def fit(self, frame: pd.DataFrame, ctx: LoadContext) -> None:
        self.segmentation = self.cfg.text_segmentation
        segment.segmenter(self.segmentation)  # an unusable choice fails here, before any row is read
        counts: Counter[str] = Counter()
        lengths = []
        for text in _present_values(frame, self.columns[0]):
            text = str(text)[: ctx.limits.max_text_chars]
            toks = self.tokens(text)
            counts.update(toks)
            lengths.append(len(toks))
        kept = [t for t, c in counts.most_common(self.cfg.vocab_size - 2) if c >= self.cfg.text_min_freq]
        self.vocab = ["<pad>", "<unk>"] + kept
        self.max_tokens = self.cfg.text_max_tokens or int(
            min(max(np.percentile(lengths, 95) if lengths else 16, 8), 256)
        )
        self._index = {t: i for i, t in enumerate(self.vocab)}

    def load(self, value: Any, ctx: LoadContext) -> np.ndarray:
        toks = self.tokens(str(value)[: ctx.limits.max_text_chars])[: self.max_tokens]
        ids = [self._index.get(t, UNK) for t in toks] or [UNK]
        return np.asarray(ids, dtype=np.int64)

    def collate(self, items: list[np.ndarray | None], train: bool) -> dict[str, torch.Tensor]:
        width = max([len(it) for it in items if it is not None] + [1])
        out = torch.zeros(len(items), width, dtype=torch.long)
        for i, it in enumerate(items):
            if it is not None:
                out[i, : len(it)] = torch.from_numpy(it)
        return {self.key(): out}

    def state(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "max_tokens": self.max_tokens, "segmentation": self.segmentation}

    def set_state(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.vocab, self.max_tokens = state["vocab"], state["max_tokens"]
        # A run directory saved before CJK support has no "segmentation": it was trained on the regex tokens.
        self.segmentation = state.get("segmentation", segment.LEGACY_SEGMENTATION)
        segment.segmenter(self.segmentation)
        self._index = {t: i for i, t in enumerate(self.vocab)}


MISSING_CATEGORY, UNKNOWN_CATEGORY = 0, 1

#: Standardised numeric values are clipped to +-this many training standard deviations. A value that far out is an
#: outlier whatever its size; unclipped, a large finite number (1e30) overflows float32 inside the network and its
#: outputs become NaN. Within the clip, the networks' float32 activations stay finite.
NUMERIC_CLIP = 1e4


def finite_mean_std(v: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of finite float64 values, finite even for values near float64's limit (whose
    squares overflow): those are scaled down first. A constant column gets std 1."""
    if len(v) == 0:
        return 0.0, 1.0
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is detected below and computed again
        mean, std = float(v.mean()), float(v.std()) if len(v) > 1 else 1.0
    if not (math.isfinite(mean) and math.isfinite(std)):
        scale = float(np.abs(v).max())
        u = v / scale
        mean, std = float(u.mean()) * scale, float(u.std()) * scale
    return mean, std if std > 1e-12 else 1.0


def standardise(x: float, mean: float, std: float) -> float:
    """``(x - mean) / std`` in float64, clipped to +-:data:`NUMERIC_CLIP` (an overflow to inf clips too)."""
    return min(max((x - mean) / std, -NUMERIC_CLIP), NUMERIC_CLIP)


@PROCESSORS.register("tabular")
class TabularProcessor(Processor):
    """Numerics: standardised, NaN → 0 (the training mean) plus a missing flag. Categories: index, 0 = missing, 1 = unknown."""

    kind = "tabular"

    def __init__(self, name: str, columns: list[str], cfg: ProcessingConfig, categorical: list[str] | None = None):
        super().__init__(name, columns, cfg)
        self.categorical = list(categorical or [])
        self.numeric = [c for c in columns if c not in self.categorical]

    def fit(self, frame: pd.DataFrame, ctx: LoadContext) -> None:
        self.stats = {}
        for c in self.numeric:
            v = as_numbers(frame[c]).to_numpy(dtype=float)
            mean, std = finite_mean_std(v[np.isfinite(v)])
            self.stats[c] = {"mean": mean, "std": std}
        self.categories = {
            c: sorted({_cat_str(v) for v in frame[c].tolist() if not loaders.is_empty(v)}) for c in self.categorical
        }
        self._build_index()

    def _build_index(self) -> None:
        self._index = {c: {v: i + 2 for i, v in enumerate(vals)} for c, vals in self.categories.items()}

    def cardinalities(self) -> list[int]:
        return [len(self.categories[c]) + 2 for c in self.categorical]

    def cell(self, row: Mapping[Any, Any]) -> Any:
        return {c: row[c] for c in self.columns}

    def is_absent(self, value: Any) -> bool:
        return all(loaders.is_empty(v) for v in value.values())

    def load(self, value: dict[str, Any], ctx: LoadContext) -> tuple[np.ndarray, np.ndarray]:
        num = np.zeros((len(self.numeric), 2), np.float32)
        for j, c in enumerate(self.numeric):
            v = value[c]
            if loaders.is_empty(v):
                num[j] = (0.0, 1.0)
                continue
            try:
                x = float(v)
            except OverflowError:  # an integer beyond float64 (5,000 digits): as far out as a value can be
                num[j, 0] = NUMERIC_CLIP if v > 0 else -NUMERIC_CLIP
                continue
            except (TypeError, ValueError):
                raise LoadError(f"'{_clip(v)}' is not a number (column '{c}' is numeric)") from None
            if not math.isfinite(x):
                num[j] = (0.0, 1.0)
                continue
            num[j, 0] = standardise(x, self.stats[c]["mean"], self.stats[c]["std"])
        cat = np.array(
            [
                MISSING_CATEGORY
                if loaders.is_empty(value[c])
                else self._index[c].get(_cat_str(value[c]), UNKNOWN_CATEGORY)
                for c in self.categorical
            ],
            np.int64,
        )
        return num, cat

    def unknown_categories(self, frame: pd.DataFrame) -> dict[str, list[int]]:
        """Rows (positions) whose category value was not seen in training, per column."""
        out = {}
        for c in self.categorical:
            rows = [
                i
                for i, v in enumerate(frame[c].tolist())
                if not loaders.is_empty(v) and _cat_str(v) not in self._index[c]
            ]
            if rows:
                out[c] = rows
        return out

    def collate(self, items: list[Any | None], train: bool) -> dict[str, torch.Tensor]:
        n_num, n_cat = len(self.numeric), len(self.categorical)
        num = np.stack([np.tile([0.0, 1.0], (n_num, 1)).astype(np.float32) if it is None else it[0] for it in items])
        cat = np.stack([np.zeros(n_cat, np.int64) if it is None else it[1] for it in items])
        return {
            self.key("numeric"): torch.from_numpy(num).reshape(len(items), n_num * 2),
            self.key("category"): torch.from_numpy(cat),
        }

    def state(self) -> dict[str, Any]:
        return {
            "numeric": self.numeric,
            "categorical": self.categorical,
            "stats": self.stats,
            "categories": self.categories,
        }

    def set_state(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.numeric, self.categorical = state["numeric"], state["categorical"]
        self.stats, self.categories = state["stats"], state["categories"]
        self._build_index()


def _clip(v: Any, n: int = 60) -> str:
    text = str(v)
    return text if len(text) <= n else f"{text[:n]}... ({len(text):,} characters)"


def _cat_str(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def build_processors(schema: Schema, config: PolymodalConfig) -> tuple[list[Modality], dict[str, Processor]]:
    """One unfitted processor per modality of ``schema``."""
    modalities = schema.modalities()
    check_encoder_keys(config, modalities)  # the table is known now; nothing is decoded yet
    procs: dict[str, Processor] = {}
    for m in modalities:
        # A pretrained encoder brings its own preprocessing (its tokenizer, image processor, feature extractor).
        choice = encoder_choice(config, m)
        encoder = ENCODERS.get(choice.name) if choice.name in ENCODERS else None
        cls = PROCESSORS.get(getattr(encoder, "processor", "") or m.kind)
        if getattr(cls, "needs_encoder_config", False):
            assert choice is not None, "only an encoder's choice brings a processor that needs its config"
            procs[m.name] = cast("type[Any]", cls)(
                m.name,
                m.columns,
                config.processing,  # takes the config too
                _encoder_config(encoder, choice.params()),
            )
        elif cls is TabularProcessor:
            procs[m.name] = TabularProcessor(
                m.name, m.columns, config.processing, categorical=schema.of_kind(ColumnKind.CATEGORY)
            )
        else:
            procs[m.name] = cls(m.name, m.columns, config.processing)
    return modalities, procs


def _encoder_config(encoder: Any, params: dict[str, Any]) -> Any:
    """The encoder's validated parameters, which its processor reads too (model source, lengths)."""
    try:
        return encoder.Config(**params)
    except ValidationError as e:
        what = f"invalid parameters for encoder '{encoder.registry_name}'"
        raise config_error(e, encoder.Config, what=what) from None


# Kinds whose processor lives in a module of its own register it on import (after PROCESSORS and the base classes
# above exist, which those modules import), so these come last.
from . import timeseries, video_processing  # noqa: E402, F401
