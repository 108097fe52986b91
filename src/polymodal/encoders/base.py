"""The encoder contract and the shared building blocks. The parameters live in :mod:`polymodal.params.encoders`
(``EncoderConfig`` and ``ConvConfig`` are re-exported here)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import ValidationError
from torch import nn

from ..config import config_error
from ..errors import ConfigError
from ..params.encoders import ConvConfig, EncoderConfig
from ..registry import ENCODERS
from ..schema import Modality


@dataclass
class Encoded:
    """What every encoder returns.

    pooled      [B, D]     one vector per row
    tokens      [B, T, D]  a sequence for cross-modal fusions (None if the encoder has none)
    mask        [B]        True where the modality is present in the row
    token_mask  [B, T]     True for real (non-padding) tokens; None = all real
    """

    pooled: torch.Tensor
    tokens: torch.Tensor | None
    mask: torch.Tensor
    token_mask: torch.Tensor | None = None


class Encoder(nn.Module):
    """Base class. Subclasses set ``Config`` (the class registered under their name in
    :data:`polymodal.params.ENCODER_PARAMS`) and ``kinds`` (the same as its ``kinds``) and implement ``encode``."""

    Config: ClassVar[type[EncoderConfig]] = EncoderConfig
    kinds: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The encoder's description is written once, on its Config (what the config schema shows users).
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("__doc__") is None:
            cls.__doc__ = cls.Config.__doc__

    def __init__(self, modality: Modality, processor: Any, config: EncoderConfig):
        super().__init__()
        self.modality = modality
        self.config = config
        self.dim = config.dim

    def inputs_of(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Only this modality's tensors: encoders never see other columns."""
        prefix = self.modality.name
        return {k: v for k, v in inputs.items() if k == prefix or k.startswith(prefix + ".")}

    def forward(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> Encoded:
        return self.encode(self.inputs_of(inputs), mask)

    def encode(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> Encoded:
        raise NotImplementedError

    def lookup_tables(self) -> dict[str, nn.Embedding]:
        """The embedding tables this encoder applies to its integer inputs, keyed by what each one embeds (the
        modality's name for a token sequence, a column's name for a category). Integrated gradients
        (:mod:`polymodal.explain`) interpolates their outputs, since integer ids cannot be interpolated; an encoder
        without such tables returns ``{}``."""
        return {}


def build_encoder(name: str, params: dict[str, Any], modality: Modality, processor: Any) -> Encoder:
    cls = ENCODERS.get(name)
    if modality.kind not in cls.kinds:
        raise ConfigError(
            f"encoder '{name}' works on {', '.join(cls.kinds)} columns, not on {modality.kind} column '{modality.name}'"
        )
    try:
        cfg = cls.Config(**params)
    except ValidationError as e:
        raise config_error(e, cls.Config, (modality.name,), what=f"invalid parameters for encoder '{name}'") from None
    return cls(modality, processor, cfg)


class ResidualBlock(nn.Module):
    """The ResNet basic block (He et al. 2016): two 3x3 convs with batch norm and an identity/projection skip."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))


class ResNetTrunk(nn.Module):
    """A small ResNet: stem, then ``stages`` stages of ``blocks`` residual blocks, each stage doubling the width and
    halving the resolution."""

    def __init__(self, cin: int, cfg: ConvConfig, stem_stride: int, stem_pool: bool = False):
        super().__init__()
        w = cfg.width
        self.coords = cfg.coords
        layers: list[nn.Module] = [
            nn.Conv2d(cin + 2 * cfg.coords, w, 3, stem_stride, 1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
        ]
        if stem_pool:
            layers.append(nn.MaxPool2d(3, 2, 1))
        for i in range(cfg.stages):
            layers.append(ResidualBlock(w * 2 ** max(i - 1, 0), w * 2**i, 1 if i == 0 else 2))
            layers += [ResidualBlock(w * 2**i, w * 2**i, 1) for _ in range(cfg.blocks - 1)]
        self.net = nn.Sequential(*layers)
        self.out_channels = w * 2 ** (cfg.stages - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.coords:
            b, _, h, w = x.shape
            ys = torch.linspace(-1, 1, h, dtype=x.dtype, device=x.device).view(1, 1, h, 1).expand(b, 1, h, w)
            xs = torch.linspace(-1, 1, w, dtype=x.dtype, device=x.device).view(1, 1, 1, w).expand(b, 1, h, w)
            x = torch.cat([x, ys, xs], 1)
        return self.net(x)


def sincos_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """[h*w, dim] position codes in row-major order: sines and cosines of the row in the first half of the
    features, of the column in the second. The periods are spread geometrically from 4 tokens to 4 times the
    longer side, so that every feature varies across the grid (Vaswani et al. 2017's fixed 10,000 would leave
    most features constant over a few cells)."""
    quarter = dim // 4
    n = max(h, w)
    periods = 4.0 * n ** (torch.arange(quarter, dtype=torch.float32) / max(quarter - 1, 1))
    freqs = 2 * math.pi / periods

    def axis(size: int) -> torch.Tensor:
        angles = torch.arange(size, dtype=torch.float32)[:, None] * freqs[None]
        return torch.cat([angles.sin(), angles.cos()], 1)  # [size, 2 * quarter]

    rows = axis(h)[:, None].expand(h, w, 2 * quarter)
    cols = axis(w)[None, :].expand(h, w, 2 * quarter)
    code = torch.cat([rows, cols], -1).reshape(h * w, 4 * quarter)
    return torch.nn.functional.pad(code, (0, dim - 4 * quarter))


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over dim 1 of [B, T, D], counting only positions where ``mask`` [B, T] is True."""
    if mask is None:
        return x.mean(1)
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def zero_absent(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero the rows of an absent modality so that nothing about the placeholder input leaks downstream."""
    return x * mask.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)


def encoder_lr_scales(encoders: nn.ModuleDict | Mapping[str, nn.Module]) -> dict[str, float]:
    """Learning-rate multipliers by parameter name (``encoders.<modality>.<parameter>``) that a network's encoders
    ask for (pretrained backbones in finetune/last_n mode, warm-started encoders); a parameter not named here trains
    at the base learning rate."""
    out: dict[str, float] = {}
    for name, enc in encoders.items():
        scales = getattr(enc, "lr_scales", None)
        if scales is not None:
            out.update({f"encoders.{name}.{k}": v for k, v in scales().items()})
    return out
