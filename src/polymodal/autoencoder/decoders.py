"""One decoder per modality: from the bottleneck's code back to what that modality's encoder sees.

A decoder reconstructs its processor's batch tensors (the encoder's input representation: normalised pixels, the
standardised log-mel spectrogram, standardised numbers and category indices, the standardised series, a bag of the
text's tokens) and returns each row's error, scaled so that predicting the mean (or a uniform distribution) costs
about 1, and whether the row has anything to reconstruct. Registered by the processor's kind in :data:`DECODERS`;
a kind whose processor is not polymodal's own (a pretrained model's) gets no decoder.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data.processors import AudioProcessor, ImageProcessor, Processor, TabularProcessor, TextProcessor
from ..data.timeseries import TimeSeriesProcessor
from ..registry import Registry

#: processor kind → the decoder class for it
DECODERS: Registry[Decoder] = Registry("decoder")


class Decoder(nn.Module):
    """``forward(code, inputs) → (error [B], present [B])`` for one modality named ``name``."""

    processor_type: ClassVar[type[Processor]]

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    @classmethod
    def accepts(cls, processor: Processor) -> bool:
        return isinstance(processor, cls.processor_type)

    @classmethod
    def build(cls, name: str, processor: Processor, latent: int, hidden: int) -> Decoder:
        raise NotImplementedError

    def forward(self, code: torch.Tensor, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def build_decoder(name: str, processor: Processor, latent: int, hidden: int, text: bool = True) -> Decoder | None:
    """The decoder of modality ``name`` (None when its kind has none, or text is not reconstructed)."""
    if processor.kind not in DECODERS or (processor.kind == "text" and not text):
        return None
    cls = DECODERS.get(processor.kind)
    return cls.build(name, processor, latent, hidden) if cls.accepts(processor) else None


def _all_rows(x: torch.Tensor) -> torch.Tensor:
    return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)


class _UpConv(nn.Module):
    """code → ``channels`` maps of ``height`` x ``width``: a linear layer onto a small grid, then ``steps``
    transposed convolutions, each doubling the size; cropped to the size asked for."""

    def __init__(self, latent: int, hidden: int, channels: int, height: int, width: int, steps: int):
        super().__init__()
        scale = 2**steps
        self.h0, self.w0 = max(1, math.ceil(height / scale)), max(1, math.ceil(width / scale))
        self.height, self.width, self.hidden = height, width, hidden
        self.fc = nn.Sequential(nn.Linear(latent, hidden * self.h0 * self.w0), nn.ReLU())
        layers: list[nn.Module] = []
        c = hidden
        for i in range(steps):
            out = channels if i == steps - 1 else max(8, c // 2)
            layers.append(nn.ConvTranspose2d(c, out, 4, stride=2, padding=1))
            if i < steps - 1:
                layers.append(nn.ReLU())
            c = out
        self.up = nn.Sequential(*layers)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        x = self.fc(code).view(len(code), self.hidden, self.h0, self.w0)
        return self.up(x)[:, :, : self.height, : self.width]


@DECODERS.register("image")
class ImageDecoder(Decoder):
    """Transposed convolutions to the processed image (its size and channels, normalised pixels); mean squared
    error per row."""

    processor_type = ImageProcessor

    def __init__(self, name: str, latent: int, hidden: int, channels: int, size: int):
        super().__init__(name)
        self.net = _UpConv(latent, hidden, channels, size, size, steps=3)

    @classmethod
    def build(cls, name: str, processor: Processor, latent: int, hidden: int) -> Decoder:
        p: Any = processor
        return cls(name, latent, hidden, int(p.channels), int(p.size))

    def forward(self, code: torch.Tensor, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = inputs[self.name]
        return (self.net(code) - x).pow(2).flatten(1).mean(1), _all_rows(x)


@DECODERS.register("audio")
class AudioDecoder(Decoder):
    """Transposed convolutions to the standardised log-mel spectrogram the audio encoder sees; mean squared error
    per row."""

    processor_type = AudioProcessor

    def __init__(self, name: str, latent: int, hidden: int, n_mels: int, frames: int):
        super().__init__(name)
        self.net = _UpConv(latent, hidden, 1, n_mels, frames, steps=2)

    @classmethod
    def build(cls, name: str, processor: Processor, latent: int, hidden: int) -> Decoder:
        p: Any = processor
        return cls(name, latent, hidden, int(p.n_mels), int(p.n_frames))

    def forward(self, code: torch.Tensor, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = inputs[self.name]  # [B, 1, mels, frames]
        y = self.net(code)
        frames = min(y.shape[-1], x.shape[-1])
        return (y[..., :frames] - x[..., :frames]).pow(2).flatten(1).mean(1), _all_rows(x)


def _mlp(latent: int, hidden: int, out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, out))


@DECODERS.register("tabular")
class TabularDecoder(Decoder):
    """The standardised numbers (squared error) and the categories (cross-entropy over the training categories,
    divided by the log of their count); a row's error is the mean over its present values."""

    processor_type = TabularProcessor

    def __init__(self, name: str, latent: int, hidden: int, n_numeric: int, cardinalities: list[int]):
        super().__init__(name)
        self.n_numeric, self.cardinalities = n_numeric, list(cardinalities)
        self.net = _mlp(latent, hidden, n_numeric + sum(self.cardinalities))

    @classmethod
    def build(cls, name: str, processor: Processor, latent: int, hidden: int) -> Decoder:
        p: Any = processor
        return cls(name, latent, hidden, len(p.numeric), p.cardinalities())

    def forward(self, code: torch.Tensor, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(code)
        total = torch.zeros(len(code), device=code.device)
        count = torch.zeros(len(code), device=code.device)
        if self.n_numeric:
            num = inputs[f"{self.name}.numeric"].view(len(code), self.n_numeric, 2)
            value, seen = num[..., 0], num[..., 1] < 0.5  # (the second of each pair flags a missing value)
            err = (out[:, : self.n_numeric] - value).pow(2)
            total = total + torch.where(seen, err, torch.zeros_like(err)).sum(1)
            count = count + seen.sum(1)
        start = self.n_numeric
        if self.cardinalities:
            cats = inputs[f"{self.name}.category"]
            for j, k in enumerate(self.cardinalities):
                logits, idx = out[:, start : start + k], cats[:, j]
                start += k
                seen = idx > 0  # 0: missing (1: a category unseen in training, which no row trains on)
                ce = F.cross_entropy(logits, idx, reduction="none") / math.log(max(k - 2, 2))
                total = total + torch.where(seen, ce, torch.zeros_like(ce))
                count = count + seen
        return total / count.clamp(min=1), count > 0


@DECODERS.register("timeseries")
class TimeSeriesDecoder(Decoder):
    """The standardised series the encoder sees (every channel, its length); squared error over the observed
    steps."""

    processor_type = TimeSeriesProcessor

    def __init__(self, name: str, latent: int, hidden: int, channels: int, length: int):
        super().__init__(name)
        self.channels, self.length = channels, length
        self.net = _mlp(latent, hidden, channels * length)

    @classmethod
    def build(cls, name: str, processor: Processor, latent: int, hidden: int) -> Decoder:
        p: Any = processor
        return cls(name, latent, hidden, int(p.in_channels), int(p.length))

    def forward(self, code: torch.Tensor, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, steps = inputs[self.name], inputs[f"{self.name}.mask"]  # [B, C, L], [B, L]
        y = self.net(code).view(len(code), self.channels, self.length)[..., : x.shape[-1]]
        err = (y - x).pow(2).mean(1)  # [B, L]
        seen = steps.to(err.dtype)
        count = seen.sum(1)
        return (err * seen).sum(1) / count.clamp(min=1), count > 0


@DECODERS.register("text")
class TextDecoder(Decoder):
    """A bag of the text's tokens: cross-entropy of the predicted token distribution against the row's token
    frequencies, divided by the log of the vocabulary size."""

    processor_type = TextProcessor

    def __init__(self, name: str, latent: int, hidden: int, vocab: int):
        super().__init__(name)
        self.vocab = vocab
        self.net = _mlp(latent, hidden, vocab)

    @classmethod
    def build(cls, name: str, processor: Processor, latent: int, hidden: int) -> Decoder:
        p: Any = processor
        return cls(name, latent, hidden, len(p.vocab))

    def forward(self, code: torch.Tensor, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = inputs[self.name]  # [B, T], 0 = padding
        bag = torch.zeros(len(ids), self.vocab, device=ids.device)
        bag.scatter_add_(1, ids, (ids > 0).to(bag.dtype))
        bag[:, 0] = 0
        count = bag.sum(1)
        freq = bag / count.clamp(min=1).unsqueeze(1)
        err = -(freq * F.log_softmax(self.net(code), dim=1)).sum(1) / math.log(max(self.vocab - 1, 2))
        return err, count > 0
