"""The time-series processor: per-channel standardisation, a fixed length, a step mask, training augmentations.

Recorded rule for missing values inside a series (NaN, inf, an empty CSV cell): each channel is forward-filled
(leading gaps take the channel's training mean, i.e. 0 after standardisation), and one extra input channel holds
the share of channels that were missing at each step, so the encoder can tell filled values from observed ones.
A cell that is empty altogether is an absent modality (masked like any other missing cell).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..errors import LoadError
from . import series
from .processors import PROCESSORS, LoadContext, _FileProcessor, _sample

MIN_LENGTH = 8


def forward_fill(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values with each channel's NaN replaced by its last observed value (leading ones stay NaN), missing mask)."""
    missing = np.isnan(x)
    if not missing.any():
        return x, missing
    idx = np.where(~missing, np.arange(len(x))[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    filled = x[idx, np.arange(x.shape[1])[None, :]]
    return filled, missing


def interpolate_rows(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``x`` [B, C, T] read at fractional ``positions`` [B, L] (linear interpolation) → [B, C, L]."""
    t = x.shape[2]
    pos = positions.clamp(0, t - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp_max(t - 1)
    w = (pos - lo.to(pos.dtype)).unsqueeze(1)
    take = lambda i: x.gather(2, i.unsqueeze(1).expand(-1, x.shape[1], -1))  # noqa: E731
    return take(lo) * (1 - w) + take(hi) * w


@PROCESSORS.register("timeseries")
class TimeSeriesProcessor(_FileProcessor):
    """Series [steps, channels] → a tensor [B, channels + 1, length] (the extra channel: share of missing values
    per step) and a step mask [B, length]. Statistics and the length are learned from the training rows."""

    kind = "timeseries"
    channels: int | None = None

    def cache_key(self, value: Any) -> str | None:
        return None if series.is_inline(value) else str(value).strip()  # an inline series is its row's own

    def is_absent(self, value: Any) -> bool:
        if isinstance(value, (list, tuple, np.ndarray)):
            return False  # a zero-length array is a bad cell (load says so), not a missing one
        return super().is_absent(value)

    def load(self, value: Any, ctx: LoadContext) -> np.ndarray:
        if series.is_inline(value):
            arr = series.load_inline(value, ctx.limits)
        else:
            arr = series.load_series_file(ctx.resolve(value), ctx.limits)
        if np.isnan(arr).all():
            raise LoadError("time series holds no finite value (every value is NaN or infinite)")
        if self.channels is not None and arr.shape[1] != self.channels:
            raise LoadError(
                f"time series has {arr.shape[1]} channel(s); the model was trained on {self.channels} "
                "(channels are the columns of a .csv/.parquet file, the second axis of a .npy array)"
            )
        return arr

    def fit(self, frame: pd.DataFrame, ctx: LoadContext) -> None:
        # Streamed over a sample of training cells (each series decoded, summed, dropped): long series never all
        # sit in memory at once. Statistics are kept per channel count; the most common count is the model's.
        self.channels = None
        stats: dict[int, list[Any]] = {}  # channels -> [lengths, count, sum, sum of squares] (per channel)
        for v in _sample([v for v in frame[self.columns[0]].tolist() if not self.is_absent(v)], 500):
            try:
                arr = self.load(v, ctx)
            except LoadError:
                continue  # reported by row when the table is prepared
            values = arr.astype(np.float64)
            seen = ~np.isnan(values)
            s = stats.setdefault(arr.shape[1], [[], 0, 0.0, 0.0])
            s[0].append(len(arr))
            s[1] = s[1] + seen.sum(0)
            s[2] = s[2] + np.where(seen, values, 0.0).sum(0)
            s[3] = s[3] + np.where(seen, values**2, 0.0).sum(0)
        self.channels = max(stats, key=lambda c: len(stats[c][0])) if stats else 1
        lengths, count, total, squares = stats.get(self.channels, [[], 0, 0.0, 0.0])
        if self.cfg.series_length is not None:
            self.length = int(self.cfg.series_length)
        else:
            p95 = float(np.percentile(lengths, 95)) if lengths else 64.0
            self.length = int(min(max(math.ceil(p95), MIN_LENGTH), self.cfg.series_max_length))
        with np.errstate(all="ignore"):
            mean = np.broadcast_to(total / np.maximum(count, 1), (self.channels,))
            std = np.sqrt(np.maximum(squares / np.maximum(count, 1) - mean**2, 0.0))
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-8 * np.maximum(np.abs(mean), 1.0)), std, 1.0)
        self.mean, self.std = mean.tolist(), std.tolist()

    def load_signature(self) -> dict[str, Any]:
        return {"channels": self.channels}

    @property
    def in_channels(self) -> int:
        """Channels the encoder sees: the series' own plus the missing-share channel."""
        return int(self.channels or 1) + 1

    def _prepare(self, arr: np.ndarray) -> np.ndarray:
        """Standardised, forward-filled [T, C + 1] (last channel: share of channels missing at the step)."""
        filled, missing = forward_fill(arr)
        z = (filled - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        z = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
        np.clip(z, -1e4, 1e4, out=z)
        return np.concatenate([z, missing.mean(axis=1, keepdims=True)], axis=1).astype(np.float32)

    def collate(self, items: list[np.ndarray | None], train: bool) -> dict[str, torch.Tensor]:
        n, length, c = len(items), self.length, self.in_channels
        x = torch.zeros(n, c, length)
        mask = torch.zeros(n, length, dtype=torch.bool)
        augment = train and self.cfg.series_augment
        for i, it in enumerate(items):
            if it is None:
                continue
            z = torch.from_numpy(self._prepare(it)).T  # [C + 1, T]
            t = z.shape[1]
            if self.cfg.series_fit == "resample" and t != length:
                pos = torch.linspace(0, t - 1, length).unsqueeze(0)
                x[i] = interpolate_rows(z.unsqueeze(0), pos)[0]
                mask[i] = True
                continue
            if t > length:
                start = int(torch.randint(0, t - length + 1, ()).item()) if train else 0
                z, t = z[:, start : start + length], length
            x[i, :, :t] = z
            mask[i, :t] = True
        if augment:
            x = augment_series(x, mask)
        return {self.key(): x, self.key("mask"): mask}

    def state(self) -> dict[str, Any]:
        return {"channels": self.channels, "length": self.length, "mean": self.mean, "std": self.std}

    def set_state(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.channels, self.length = state["channels"], state["length"]
        self.mean, self.std = state["mean"], state["std"]


def augment_series(x: torch.Tensor, mask: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Training augmentations of standardised series (Um et al. 2017; Le Guennec et al. 2016), each applied to a
    random half of the rows: a window crop stretched back to the row's length, a smooth time warp, per-channel
    scaling and jitter. Only the observed steps of a row are read and written; the missing-share channel (last) is
    warped with the values but never scaled or jittered."""
    b, c, length = x.shape
    lengths = mask.sum(1).clamp_min(1).to(x.dtype)  # [B]
    grid = torch.linspace(0, 1, length).unsqueeze(0).expand(b, length)  # [B, L], relative positions
    # window crop: read a random 90% window of each chosen row, stretched over the row's length
    crop = torch.rand(b) < p
    scale = torch.where(crop, torch.full((b,), 0.9), torch.ones(b))
    start = torch.rand(b) * (1 - scale)
    rel = start[:, None] + grid * scale[:, None]
    # time warp: a smooth monotone reparametrisation from 4 random speed knots (cumulative, renormalised to [0, 1])
    warp = torch.rand(b) < p
    knots = 1 + 0.2 * torch.randn(b, 1, 4).clamp(-2, 2)
    speed = F.interpolate(knots, size=length, mode="linear", align_corners=True)[:, 0].clamp_min(0.2)
    cum = torch.cumsum(speed, 1)
    cum = (cum - cum[:, :1]) / (cum[:, -1:] - cum[:, :1]).clamp_min(1e-6)
    rel = torch.where(warp[:, None], start[:, None] + cum * scale[:, None], rel)
    out = interpolate_rows(x, rel * (lengths[:, None] - 1))
    out = out * mask.unsqueeze(1).to(x.dtype)
    values = out[:, :-1]
    gain = torch.where(torch.rand(b, 1, 1) < p, 1 + 0.1 * torch.randn(b, c - 1, 1), torch.ones(b, c - 1, 1))
    noise = torch.where(torch.rand(b, 1, 1) < p, 0.03 * torch.randn_like(values), torch.zeros_like(values))
    values = (values * gain + noise) * mask.unsqueeze(1).to(x.dtype)
    return torch.cat([values, out[:, -1:]], 1)
