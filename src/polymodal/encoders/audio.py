"""From-scratch audio encoder: a small ResNet over log-mel spectrograms [B, 1, mels, frames]."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..params.encoders import AudioCNNConfig, ConvConfig
from ..registry import ENCODERS, register
from ..schema import Modality
from .base import Encoded, Encoder, ResNetTrunk, sincos_2d, zero_absent


@register(ENCODERS, "audio_cnn")
class AudioCNN(Encoder):
    Config = AudioCNNConfig
    kinds = ("audio",)
    config: ConvConfig

    def __init__(self, modality: Modality, processor: Any, config: ConvConfig):
        super().__init__(modality, processor, config)
        self.trunk = ResNetTrunk(1, config, config.stem_stride or 2)
        c = self.trunk.out_channels
        self.token_proj = nn.Linear(c, config.dim)
        self.proj = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(2 * c, config.dim))

    def encode(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> Encoded:
        fmap = self.trunk(inputs[self.modality.name]).mean(2)  # [B, C, T']
        pooled = self.proj(torch.cat([fmap.mean(2), fmap.amax(2)], dim=1))
        tokens = self.token_proj(fmap.transpose(1, 2))
        if self.config.positions:  # one row of time steps
            tokens = tokens + sincos_2d(1, tokens.shape[1], self.dim).to(tokens)
        return Encoded(zero_absent(pooled, mask), zero_absent(tokens, mask), mask)
