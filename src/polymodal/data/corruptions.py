"""Corruptions for robustness sweeps and corruption augmentation during training: small pure functions (numpy in, new numpy out) and a registry over them.

Each ``Corruption`` says which modality kinds it applies to, its default levels (increasing severity) and what a
level means; ``corrupt_items`` applies one to the decoded items of a modality with per-row seeded generators.
"""

from __future__ import annotations

import math
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from ..registry import Registry, register
from .processors import UNK, Processor
from .stored import MappedColumn


class CorruptionError(ConfigError):
    """A corruption name, its levels, or a robustness baseline cannot be used."""


# ------------------------------------------------------------------------------------------------ corruptions
# Small, pure functions: numpy in, new numpy out (inputs are never written to). Each draws the same random numbers
# whatever the level, so that with one generator seed the levels of a row nest (more noise, a bigger patch, ...).


def add_gaussian_noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 image + N(0, std²) noise, ``std`` in units of the pixel range (1.0 = 255 grey levels); clipped."""
    noise = rng.standard_normal(image.shape) * (std * 255.0)
    return np.clip(np.rint(image.astype(np.float64) + noise), 0, 255).astype(np.uint8)


def occlude(image: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Black out a rectangle covering ``fraction`` of the image area (same aspect as the image), placed at random;
    on a video ``[T, C, H, W]`` the same rectangle on every frame (an obstacle in front of the camera)."""
    h, w = image.shape[-2:]
    u = rng.random(2)
    sh, sw = min(h, round(h * math.sqrt(fraction))), min(w, round(w * math.sqrt(fraction)))
    top, left = min(int(u[0] * (h - sh + 1)), h - sh), min(int(u[1] * (w - sw + 1)), w - sw)
    out = image.copy()
    out[..., top : top + sh, left : left + sw] = 0
    return out


def drop_frames(video: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Each frame after the first is lost with probability ``fraction`` and the previous one shown instead, as a
    stream that drops frames freezes: the clip keeps its length and timing, the motion in it stutters."""
    lost = rng.random(len(video)) < fraction
    lost[0] = False
    source = np.maximum.accumulate(np.where(lost, 0, np.arange(len(video))))
    return video[source].copy()


def add_white_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Waveform + white Gaussian noise at a signal-to-noise ratio of ``snr_db`` decibels (silence stays silent)."""
    noise = rng.standard_normal(wave.shape)
    power = float(np.mean(np.square(wave, dtype=np.float64)))
    scale = math.sqrt(power / 10 ** (snr_db / 10)) if power > 0 else 0.0
    return (wave + noise * scale).astype(np.float32)


def drop_tokens(ids: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Remove each token with probability ``fraction``; a text left empty becomes one unknown token, as on load."""
    keep = rng.random(len(ids)) >= fraction
    out = ids[keep]
    return out.copy() if len(out) else np.asarray([UNK], dtype=ids.dtype)


def swap_tokens(ids: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Swap disjoint pairs of neighbouring tokens so that about ``fraction`` of the tokens move."""
    n = len(ids)
    offset = int(rng.integers(0, 2)) if n % 2 else 0  # odd lengths: either end may be the one left out
    order = rng.permutation((n - offset) // 2)
    out = ids.copy()
    for p in order[: min(len(order), round(fraction * n / 2))]:
        i = offset + 2 * int(p)
        out[i], out[i + 1] = ids[i + 1], ids[i]
    return out


def add_numeric_noise(
    item: tuple[np.ndarray, np.ndarray], std: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Tabular item (standardised values + missing flags, categories): N(0, std²) added to the present values."""
    num, cat = item
    noise = rng.standard_normal(len(num)) * std
    out = num.copy()
    out[:, 0] += np.where(num[:, 1] == 0, noise, 0.0).astype(num.dtype)  # cells that were missing stay missing
    return out, cat


CORRUPTIONS: Registry["Corruption"] = Registry("corruption")


class Corruption(ABC):
    """One kind of damage to the decoded items of a modality kind, at a severity ``level``.

    ``levels`` are the defaults, in increasing severity; ``clean_level`` is the level that means "unchanged";
    ``bounds`` the inclusive range a level may take; ``descending`` is True when a *smaller* number is more severe.
    """

    kinds: ClassVar[tuple[str, ...]]
    levels: ClassVar[tuple[float, ...]]
    unit: ClassVar[str]
    bounds: ClassVar[tuple[float, float]] = (0.0, math.inf)
    clean_level: ClassVar[float] = 0.0
    descending: ClassVar[bool] = False
    needs: ClassVar[str] = ""  # what else a modality must have, for messages (see ``applies``)
    registry_name: ClassVar[str]

    @property
    def name(self) -> str:
        return self.registry_name

    def applies(self, processor: Processor) -> bool:
        return processor.kind in self.kinds

    @abstractmethod
    def apply(self, item: Any, level: float, rng: np.random.Generator) -> Any:
        """A corrupted copy of one decoded item."""

    def check_levels(self, levels: Sequence[float] | None) -> tuple[float, ...]:
        """The levels to sweep: the defaults when ``None``; otherwise checked to be in range and ever more severe."""
        if levels is None:
            return tuple(self.levels)
        try:
            values = tuple(float(v) for v in levels)
        except (TypeError, ValueError):
            raise CorruptionError(f"corruption '{self.name}': levels must be numbers; got {list(levels)!r}") from None
        lo, hi = self.bounds
        if not values:
            raise CorruptionError(
                f"corruption '{self.name}': give at least one level (or none for the defaults {list(self.levels)})"
            )
        bad = [v for v in values if not (math.isfinite(v) and lo <= v <= hi)]
        if bad:
            raise CorruptionError(
                f"corruption '{self.name}': levels are {self.unit}, between {lo:g} and {hi:g}; got {bad[0]:g}"
            )
        sev = [-v if self.descending else v for v in (self.clean_level, *values)]
        if any(b <= a for a, b in zip(sev, sev[1:])):
            order = "decreasing" if self.descending else "increasing"
            raise CorruptionError(
                f"corruption '{self.name}': levels must be strictly {order} (more severe each step) and more severe "
                f"than the clean level {self.clean_level:g}; got {list(values)}, e.g. {list(self.levels)}"
            )
        return values


@register(CORRUPTIONS, "gaussian_noise")
class GaussianNoise(Corruption):
    kinds = ("image", "video")
    levels = (0.05, 0.1, 0.2, 0.3, 0.5)
    unit = "noise std in units of the pixel range"

    def apply(self, item: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        return add_gaussian_noise(item, level, rng)


@register(CORRUPTIONS, "occlusion")
class Occlusion(Corruption):
    kinds = ("image", "video")
    levels = (0.1, 0.2, 0.3, 0.5, 0.7)
    unit = "fraction of the image area blacked out"
    bounds = (0.0, 1.0)

    def apply(self, item: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        return occlude(item, level, rng)


@register(CORRUPTIONS, "frame_drop")
class FrameDrop(Corruption):
    kinds = ("video",)
    levels = (0.1, 0.2, 0.3, 0.5, 0.7)
    unit = "fraction of frames lost (the previous frame shown instead)"
    bounds = (0.0, 1.0)

    def apply(self, item: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        return drop_frames(item, level, rng)


@register(CORRUPTIONS, "white_noise")
class WhiteNoise(Corruption):
    kinds = ("audio",)
    levels = (20.0, 10.0, 5.0, 0.0, -5.0)
    unit = "signal-to-noise ratio in dB"
    bounds = (-math.inf, math.inf)
    clean_level = math.inf
    descending = True

    def apply(self, item: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        return add_white_noise(item, level, rng)


@register(CORRUPTIONS, "token_dropout")
class TokenDropout(Corruption):
    kinds = ("text",)
    levels = (0.1, 0.2, 0.3, 0.5, 0.7)
    unit = "fraction of tokens removed"
    bounds = (0.0, 1.0)

    def apply(self, item: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        return drop_tokens(item, level, rng)


@register(CORRUPTIONS, "token_swap")
class TokenSwap(Corruption):
    kinds = ("text",)
    levels = (0.1, 0.2, 0.3, 0.5, 0.7)
    unit = "fraction of tokens swapped with a neighbour"
    bounds = (0.0, 1.0)

    def apply(self, item: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        return swap_tokens(item, level, rng)


@register(CORRUPTIONS, "numeric_noise")
class NumericNoise(Corruption):
    kinds = ("tabular",)
    levels = (0.1, 0.25, 0.5, 1.0, 2.0)
    unit = "noise std in units of the standardised feature"
    needs = "numeric columns"

    def applies(self, processor: Processor) -> bool:
        # Only numeric columns can take noise; a categories-only tabular modality is swept for "missing" alone.
        return super().applies(processor) and bool(getattr(processor, "numeric", None))

    def apply(
        self, item: tuple[np.ndarray, np.ndarray], level: float, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        return add_numeric_noise(item, level, rng)


def add_series_noise(series: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Series [T, C] + N(0, std²) noise, ``std`` in units of each channel's own standard deviation in the series."""
    with np.errstate(all="ignore"):
        scale = np.nan_to_num(np.nanstd(series, axis=0, keepdims=True), nan=0.0)
    return (series + rng.standard_normal(series.shape) * std * scale).astype(np.float32)


def drop_steps(series: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Each step lost (every channel NaN: the processor's missing-value rule fills it) with probability
    ``fraction``; the first step is always kept so that the series is never entirely missing."""
    out = series.copy()
    lost = rng.random(len(series)) < fraction
    lost[0] = False
    out[lost] = np.nan
    return out


def drop_channels(series: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``fraction`` of the channels (rounded, at least one for a level above 0, never all) lost for the whole series
    (NaN); a one-channel series loses its second half instead."""
    out = series.copy()
    c = series.shape[1]
    if fraction <= 0:
        return out
    if c == 1:
        out[len(out) // 2 or 1 :] = np.nan
        return out
    n = min(max(1, round(fraction * c)), c - 1)
    out[:, rng.permutation(c)[:n]] = np.nan
    return out


@register(CORRUPTIONS, "series_noise")
class SeriesNoise(Corruption):
    kinds = ("timeseries",)
    levels = (0.1, 0.25, 0.5, 1.0, 2.0)
    unit = "noise std in units of each channel's standard deviation"

    def apply(self, item: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        return add_series_noise(item, level, rng)


@register(CORRUPTIONS, "dropped_steps")
class DroppedSteps(Corruption):
    kinds = ("timeseries",)
    levels = (0.1, 0.2, 0.3, 0.5, 0.7)
    unit = "fraction of time steps lost (forward-filled by the missing-value rule)"
    bounds = (0.0, 1.0)

    def apply(self, item: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        return drop_steps(item, level, rng)


@register(CORRUPTIONS, "dropped_channel")
class DroppedChannel(Corruption):
    kinds = ("timeseries",)
    levels = (0.1, 0.25, 0.5, 0.75, 1.0)
    unit = "fraction of channels lost for the whole series (rounded, at least one, never all; one channel: its second half)"
    bounds = (0.0, 1.0)

    def apply(self, item: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
        return drop_channels(item, level, rng)


def corrupt_items(
    items: Sequence[Any],
    corruption: Corruption,
    level: float,
    seed: int,
    modality: str,
    rows: Sequence[int] | np.ndarray,
) -> list[Any]:
    """A new list of corrupted copies of ``items`` (``None`` stays absent). ``rows`` seed each row's generator, so
    a row gets the same random draws at every level and whatever other rows were kept."""
    return list(corrupted_column(items, corruption, level, seed, modality, rows))


def corrupted_column(
    items: Sequence[Any],
    corruption: Corruption,
    level: float,
    seed: int,
    modality: str,
    rows: Sequence[int] | np.ndarray,
) -> MappedColumn:
    """:func:`corrupt_items` computed row by row when read (a column read from the sample store stays on disk)."""
    salt = [zlib.crc32(modality.encode()), zlib.crc32(corruption.name.encode())]
    return MappedColumn(
        items, lambda i, it: corruption.apply(it, level, np.random.default_rng([seed, *salt, int(rows[i])]))
    )


def parse_corruption_options(options: Sequence[str] | None) -> dict[str, list[float] | None] | None:
    """CLI ``--corruption`` values (``NAME`` or ``NAME=L1,L2,...``) → a spec for :func:`plan_sweep`."""
    if not options:
        return None
    spec: dict[str, list[float] | None] = {}
    for opt in options:
        name, _, levels = opt.partition("=")
        name = name.strip()
        if name in spec:
            raise CorruptionError(f"--corruption {name} is given twice")
        if not levels.strip():
            spec[name] = None
            continue
        try:
            spec[name] = [float(v) for v in levels.split(",") if v.strip()]
        except ValueError:
            raise CorruptionError(
                f"--corruption {opt}: levels must be comma-separated numbers, e.g. occlusion=0.1,0.3,0.5"
            ) from None
    return spec
