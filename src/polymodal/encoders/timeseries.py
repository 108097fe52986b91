"""From-scratch time-series encoders over [B, channels, steps] with a step mask [B, steps].

``ts_cnn`` (the default) is a 1-D ResNet whose blocks are InceptionTime-style parallel convolutions, ``ts_gru`` a
bidirectional recurrent net, ``ts_patchtst`` a patching Transformer. Each returns a pooled vector, a token sequence
(at most ``max_tokens`` long) and its mask, so every fusion can read it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..params.timeseries import SeriesConfig, TSCNNConfig, TSGRUConfig, TSPatchTSTConfig
from ..registry import ENCODERS, register
from ..schema import Modality
from .base import Encoded, Encoder, masked_mean, sincos_2d, zero_absent


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over dim 1 of [B, T, D] at positions where ``mask`` [B, T] is True (0 for a row with none)."""
    out = x.masked_fill(~mask.unsqueeze(-1), -1e4).amax(1)
    return torch.where(mask.any(1, keepdim=True), out, torch.zeros_like(out))


class _SeriesEncoder(Encoder):
    """Shared: reading the inputs, pooling, and capping the token sequence for fusions."""

    config: SeriesConfig

    def __init__(self, modality: Modality, processor: Any, config: SeriesConfig, width: int):
        super().__init__(modality, processor, config)
        self.in_channels = int(processor.in_channels)
        self.proj = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(2 * width, config.dim))
        self.token_proj = nn.Linear(width, config.dim)

    def series(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = inputs[self.modality.name]
        return x, inputs[f"{self.modality.name}.mask"]

    def finish(self, states: torch.Tensor, smask: torch.Tensor, mask: torch.Tensor) -> Encoded:
        """states [B, T, W] with step mask [B, T] → pooled, tokens (at most max_tokens) and the token mask."""
        pooled = self.proj(torch.cat([masked_mean(states, smask), masked_max(states, smask)], 1))
        tokens, tmask = self.token_proj(states), smask
        if tokens.shape[1] > self.config.max_tokens:
            n = self.config.max_tokens
            m = smask.unsqueeze(1).to(tokens.dtype)
            summed = F.adaptive_avg_pool1d(tokens.transpose(1, 2) * m, n)
            share = F.adaptive_avg_pool1d(m, n)
            tokens = (summed / share.clamp_min(1e-6)).transpose(1, 2)
            tmask = share[:, 0] > 0
        return Encoded(zero_absent(pooled, mask), zero_absent(tokens, mask), mask, tmask)


class InceptionBlock(nn.Module):
    """Parallel 'same' convolutions of several kernel lengths plus a max-pool branch, concatenated (Szegedy et al.
    2015, as InceptionTime uses them), then batch norm and ReLU."""

    def __init__(self, cin: int, cout: int, kernels: list[int]):
        super().__init__()
        n = len(kernels) + 1
        widths = [cout // n + (1 if i < cout % n else 0) for i in range(n)]
        self.convs = nn.ModuleList(nn.Conv1d(cin, w, k, padding="same", bias=False) for w, k in zip(widths, kernels))
        self.pool_conv = nn.Conv1d(cin, widths[-1], 1, bias=False)
        self.norm = nn.BatchNorm1d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool_conv(F.max_pool1d(x, 3, 1, 1))
        return F.relu(self.norm(torch.cat([c(x) for c in self.convs] + [pooled], 1)))


class ResidualStage(nn.Module):
    """Two inception blocks with an identity/projection skip (He et al. 2016), then an optional halving of time."""

    def __init__(self, cin: int, cout: int, kernels: list[int], downsample: bool):
        super().__init__()
        self.a = InceptionBlock(cin, cout, kernels)
        self.b = InceptionBlock(cout, cout, kernels)
        self.skip = (
            nn.Identity() if cin == cout else nn.Sequential(nn.Conv1d(cin, cout, 1, bias=False), nn.BatchNorm1d(cout))
        )
        self.downsample = downsample

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = F.relu(self.b(self.a(x)) + self.skip(x)) * m
        if self.downsample:
            summed = F.avg_pool1d(y, 2, 2, ceil_mode=True)
            share = F.avg_pool1d(m, 2, 2, ceil_mode=True)
            y, m = summed / share.clamp_min(1e-6) * (share > 0), (share > 0).to(y.dtype)
        return y, m


@register(ENCODERS, "ts_cnn")
class TimeSeriesCNN(_SeriesEncoder):
    Config = TSCNNConfig
    kinds = ("timeseries",)
    config: TSCNNConfig

    def __init__(self, modality: Modality, processor: Any, config: TSCNNConfig):
        widths = [config.width * 2 ** min(i, 2) for i in range(config.stages)]
        super().__init__(modality, processor, config, widths[-1])
        cins = [self.in_channels, *widths[:-1]]
        self.stages = nn.ModuleList(
            ResidualStage(ci, co, config.kernels, downsample=i > 0) for i, (ci, co) in enumerate(zip(cins, widths))
        )

    def encode(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> Encoded:
        x, smask = self.series(inputs)
        m = smask.unsqueeze(1).to(x.dtype)
        x = x * m
        for stage in self.stages:
            x, m = stage(x, m)
        return self.finish(x.transpose(1, 2), m[:, 0] > 0, mask)


@register(ENCODERS, "ts_gru")
class TimeSeriesRNN(_SeriesEncoder):
    Config = TSGRUConfig
    kinds = ("timeseries",)
    config: TSGRUConfig

    def __init__(self, modality: Modality, processor: Any, config: TSGRUConfig):
        super().__init__(modality, processor, config, 2 * config.hidden)
        self.inp = nn.Linear(self.in_channels, config.hidden)
        rnn = nn.GRU if config.cell == "gru" else nn.LSTM
        self.rnn = rnn(
            config.hidden,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )

    def encode(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> Encoded:
        x, smask = self.series(inputs)
        # Padding steps are zeros after the series; the backward direction reads them first, which the step mask
        # in pooling and the zeroed inputs keep harmless (packing would not export to ONNX).
        states, _ = self.rnn(torch.tanh(self.inp(x.transpose(1, 2))) * smask.unsqueeze(-1).to(x.dtype))
        return self.finish(states, smask, mask)


@register(ENCODERS, "ts_patchtst")
class TimeSeriesPatchTST(_SeriesEncoder):
    Config = TSPatchTSTConfig
    kinds = ("timeseries",)
    config: TSPatchTSTConfig

    def __init__(self, modality: Modality, processor: Any, config: TSPatchTSTConfig):
        super().__init__(modality, processor, config, config.dim)
        d = config.dim
        self.stride = config.stride or max(1, config.patch // 2)
        per_patch = config.patch if config.channel_independent else config.patch * self.in_channels
        self.embed = nn.Linear(per_patch, d)
        layer = nn.TransformerEncoderLayer(
            d, config.heads, 2 * d, config.dropout, batch_first=True, norm_first=True, activation="gelu"
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    def encode(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> Encoded:
        x, smask = self.series(inputs)
        b, c, t = x.shape
        p, s = self.config.patch, self.stride
        pad = max(p - t, 0) + (-(max(t, p) - p) % s)  # the last patch ends at the last step
        x = F.pad(x, (0, pad))
        m = F.pad(smask.to(x.dtype), (0, pad))
        patches = x.unfold(2, p, s)  # [B, C, N, p]
        pmask = m.unfold(1, p, s).amax(-1) > 0  # [B, N]: a patch is real when it holds an observed step
        n = patches.shape[2]
        if self.config.channel_independent:
            tokens = self.embed(patches.reshape(b * c, n, p))
            keys = pmask.repeat_interleave(c, 0)
        else:
            tokens = self.embed(patches.permute(0, 2, 1, 3).reshape(b, n, c * p))
            keys = pmask
        tokens = tokens + sincos_2d(1, n, self.dim).to(tokens)
        safe = keys.clone()
        safe[:, 0] = True  # a row with no real patch (absent) must not softmax over nothing
        tokens = self.norm(self.encoder(tokens, src_key_padding_mask=~safe))
        if self.config.channel_independent:
            tokens = tokens.reshape(b, c, n, -1).mean(1)
        return self.finish(tokens, pmask, mask)
