"""From-scratch video encoder: the image CNN's trunk on every frame (shared weights) + a temporal model."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..params.encoders import VideoCNNConfig
from ..registry import ENCODERS, register
from ..schema import Modality
from .base import Encoded, Encoder, ResNetTrunk, masked_mean, zero_absent


@register(ENCODERS, "video_cnn")
class VideoCNN(Encoder):
    Config = VideoCNNConfig
    kinds = ("video",)
    config: VideoCNNConfig

    def __init__(self, modality: Modality, processor: Any, config: VideoCNNConfig):
        super().__init__(modality, processor, config)
        stride = config.stem_stride or (2 if processor.size >= 32 else 1)
        self.trunk = ResNetTrunk(6 if config.motion == "diff" else 3, config, stride, stem_pool=processor.size >= 96)
        self.proj = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(self.trunk.out_channels, config.dim))
        self.temporal: nn.TransformerEncoder | None = None
        if config.temporal == "transformer":
            if processor.frames > config.max_frames:
                raise ConfigError(
                    f"encoder video_cnn: {processor.frames} frames per clip (processing.video_frames), more than its "
                    f"max_frames ({config.max_frames}): raise max_frames or sample fewer frames"
                )
            self.positions = nn.Parameter(torch.zeros(1, config.max_frames, config.dim))
            nn.init.normal_(self.positions, std=0.02)
            layer = nn.TransformerEncoderLayer(
                config.dim, config.heads, 2 * config.dim, config.dropout, batch_first=True, norm_first=True
            )
            self.temporal = nn.TransformerEncoder(layer, config.temporal_layers, enable_nested_tensor=False)

    def encode(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> Encoded:
        x = inputs[self.modality.name]  # [B, N, 3, S, S]
        frames = inputs[self.modality.name + ".frames"].bool()  # [B, N]
        b, n = x.shape[:2]
        if self.config.motion == "diff":
            x = torch.cat([x, frame_differences(x, frames)], 2)
        fmap = self.trunk(x.flatten(0, 1))  # [B*N, C, h, w]: one CNN for every frame
        tokens = self.proj(fmap.mean((2, 3))).view(b, n, self.dim)
        if self.temporal is not None:
            # An absent video has no real frame; attention over nothing only gives NaN, so it attends to its
            # (blank) first frame and is zeroed below.
            attend = frames.clone()
            attend[:, 0] = True
            tokens = self.temporal(tokens + self.positions[:, :n], src_key_padding_mask=~attend)
        pooled = masked_mean(tokens, frames)
        return Encoded(zero_absent(pooled, mask), zero_absent(tokens, mask), mask, frames | ~mask.view(-1, 1))


def frame_differences(x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """[B, N, C, H, W] -> each frame minus the one before it; zero for the first frame and next to a padded frame
    (a jump to a blank frame is not motion)."""
    diff = torch.zeros_like(x)
    both = (frames[:, 1:] & frames[:, :-1]).to(x.dtype).view(*frames.shape[:1], -1, 1, 1, 1)
    diff[:, 1:] = (x[:, 1:] - x[:, :-1]) * both
    return diff
