"""From-scratch image encoder: a small ResNet over the processor's normalised square images."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..params.encoders import ConvConfig, ImageCNNConfig
from ..registry import ENCODERS, register
from ..schema import Modality
from .base import Encoded, Encoder, ResNetTrunk, sincos_2d, zero_absent


@register(ENCODERS, "image_cnn")
class ImageCNN(Encoder):
    Config = ImageCNNConfig
    kinds = ("image",)
    config: ConvConfig

    def __init__(self, modality: Modality, processor: Any, config: ConvConfig):
        super().__init__(modality, processor, config)
        # Downsample early on larger inputs: a 4x cheaper network on CPU at no cost in accuracy at these sizes.
        stride = config.stem_stride or (2 if processor.size >= 32 else 1)
        self.trunk = ResNetTrunk(processor.channels, config, stride, stem_pool=processor.size >= 96)
        self.proj = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(self.trunk.out_channels, config.dim))

    def encode(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> Encoded:
        fmap = self.trunk(inputs[self.modality.name])  # [B, C, h, w]
        tokens = self.proj(fmap.flatten(2).transpose(1, 2))  # [B, h*w, D]
        if self.config.positions:
            tokens = tokens + sincos_2d(fmap.shape[2], fmap.shape[3], self.dim).to(tokens)
        pooled = self.proj(fmap.mean((2, 3)))
        return Encoded(zero_absent(pooled, mask), zero_absent(tokens, mask), mask)
