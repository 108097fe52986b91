"""The pretrained video encoder ``hf_video`` (VideoMAE, TimeSformer, ViViT, … through ``transformers``) and its
processor: the model's number of frames, sampled uniformly over each clip by :func:`polymodal.data.video.load_video`
and resized to the model's square image size (uint8 until the batch), normalised per batch with the mean/std of the
model's image processor."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from ..data.processors import PROCESSORS, LoadContext, _FileProcessor
from ..data.video import load_video
from ..errors import ConfigError
from ..params.encoders import HFVideoConfig
from ..registry import ENCODERS, register
from .hf import HFEncoder, HFImage
from .hf_processors import _HFProcessor


@PROCESSORS.register("hf_video")
class HFVideoProcessor(_HFProcessor, _FileProcessor):
    """``num_frames`` frames per clip (the model's own: a video transformer's time positions are fixed), repeated
    at the end for a shorter clip, each resized to the model's ``image_size`` square."""

    kind = "video"

    def fit(self, frame: pd.DataFrame, ctx: LoadContext) -> None:
        cfg, pre = self.model_config, self.preprocessor
        self.frames = int(getattr(cfg, "num_frames", 0) or 8)
        size = getattr(cfg, "image_size", None)
        if isinstance(size, (list, tuple)):
            size = size[0]
        if not isinstance(size, int) or size <= 0:
            raise ConfigError(
                f"hf_video: the config of '{self.source}' names no square image_size; use a video model "
                "(VideoMAE, TimeSformer, ViViT)"
            )
        self.size = size
        self.rescale = float(pre.rescale_factor) if getattr(pre, "do_rescale", True) else 1.0
        if getattr(pre, "do_normalize", True):
            self.mean = np.broadcast_to(np.asarray(pre.image_mean, dtype=np.float64), (3,)).tolist()
            self.std = np.broadcast_to(np.asarray(pre.image_std, dtype=np.float64), (3,)).tolist()
        else:
            self.mean, self.std = [0.0] * 3, [1.0] * 3

    def load(self, value: Any, ctx: LoadContext) -> np.ndarray:
        clip = load_video(ctx.resolve(value), ctx.limits, self.frames, self.size)
        if len(clip) < self.frames:  # the model takes exactly num_frames: hold the last frame
            clip = np.concatenate([clip, np.repeat(clip[-1:], self.frames - len(clip), axis=0)])
        return clip

    def collate(self, items: list[np.ndarray | None], train: bool) -> dict[str, torch.Tensor]:
        blank = np.zeros((self.frames, 3, self.size, self.size), np.uint8)
        x = torch.from_numpy(np.stack([blank if it is None else it for it in items])).float()
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 1, 3, 1, 1)
        return {self.key("pixel_values"): (x * self.rescale - mean) / std, self.key("key"): self.keys(items)}

    def state(self) -> dict[str, Any]:
        keys = ("source", "frames", "size", "rescale", "mean", "std")
        return {k: getattr(self, k) for k in keys}


@register(ENCODERS, "hf_video")
class HFVideo(HFEncoder):
    Config = HFVideoConfig
    kinds = ("video",)
    processor = "hf_video"

    # frames arrive as pixel_values [B, T, C, H, W], picked by row as an image's are
    backbone_inputs = HFImage.backbone_inputs
