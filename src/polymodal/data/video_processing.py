"""The video processor: a fixed number of frames per clip, resized like images and kept uint8 until the batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from .processors import PROCESSORS, LoadContext, _FileProcessor, _random_shift
from .video import load_video, video_info

#: candidate frames decoded per sampled frame, so that training can jitter which frame of each segment it sees
CANDIDATES = 2


@PROCESSORS.register("video")
class VideoProcessor(_FileProcessor):
    """``video_frames`` frames sampled uniformly over each clip (segment-wise, TSN-style: the middle frame of each of
    N equal segments, a random one in training), resized to ``size`` x ``size`` RGB, normalised with the training
    mean/std. Batches hold ``[B, N, 3, size, size]`` plus ``<name>.frames``, a ``[B, N]`` mask of real frames (a clip
    shorter than N frames is padded)."""

    kind = "video"

    def fit(self, frame: pd.DataFrame, ctx: LoadContext) -> None:
        self.frames = self.cfg.video_frames
        heads = self._readable_sample(frame, lambda v: video_info(ctx.resolve(v), ctx.limits), 100)
        if self.cfg.video_size is not None:
            self.size = self.cfg.video_size
        else:
            # frames cost N times an image: smaller squares than the image processor's (at most 64)
            side = float(np.median([max(h.width, h.height) for h in heads])) if heads else 32.0
            self.size = int(min(max(8 * round(side / 8), 16), 64))
        clips = self._readable_sample(frame, lambda v: self.load(v, ctx), 16, seed=1)
        if clips:
            arr = np.concatenate(clips).astype(np.float32) / 255.0
            self.mean = arr.mean(axis=(0, 2, 3)).tolist()
            self.std = np.maximum(arr.std(axis=(0, 2, 3)), 1e-3).tolist()
        else:
            self.mean, self.std = [0.5] * 3, [0.25] * 3

    def load_signature(self) -> dict[str, Any]:
        return {"size": self.size, "frames": self.frames}

    def load(self, value: Any, ctx: LoadContext) -> np.ndarray:
        return load_video(ctx.resolve(value), ctx.limits, self.frames * CANDIDATES, self.size)

    def pick(self, n_candidates: int, train: bool) -> np.ndarray:
        """Which of ``n_candidates`` decoded frames the batch shows: one per segment, in order."""
        if n_candidates <= self.frames:
            return np.arange(n_candidates)
        edges = np.linspace(0, n_candidates, self.frames + 1)
        if train and self.cfg.video_augment:
            u = torch.rand(self.frames).numpy()  # torch's generator: seeded per epoch like the other augmentations
        else:
            u = np.full(self.frames, 0.5)
        return np.minimum((edges[:-1] + u * np.diff(edges)).astype(int), n_candidates - 1)

    def collate(self, items: list[np.ndarray | None], train: bool) -> dict[str, torch.Tensor]:
        n, s = self.frames, self.size
        x = torch.zeros(len(items), n, 3, s, s)
        present = torch.zeros(len(items), n, dtype=torch.bool)
        for i, it in enumerate(items):
            if it is None:
                continue
            idx = self.pick(len(it), train)
            x[i, : len(idx)] = torch.from_numpy(it[idx]).float().div_(255.0)
            present[i, : len(idx)] = True
        if train and self.cfg.video_augment:  # one shift per clip, the same for all of its frames
            x = _random_shift(x.view(len(items), n * 3, s, s), max(1, s // 10)).view(len(items), n, 3, s, s)
        mean = torch.tensor(self.mean).view(1, 1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 1, 3, 1, 1)
        x = ((x - mean) / std) * present.view(len(items), n, 1, 1, 1)
        return {self.key(): x, self.key("frames"): present}

    def state(self) -> dict[str, Any]:
        return {"size": self.size, "frames": self.frames, "mean": self.mean, "std": self.std}

    def set_state(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.size, self.frames, self.mean, self.std = state["size"], state["frames"], state["mean"], state["std"]
