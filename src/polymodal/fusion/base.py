"""The fusion contract. Missing modalities are handled here, through the presence masks, never by crashing."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn

from ..encoders.base import Encoded
from ..errors import ConfigError
from ..registry import FUSIONS


@dataclass(frozen=True)
class FusionInput:
    """What a fusion needs to know about one modality to size its layers."""

    name: str
    dim: int


class FusionParams(BaseModel):
    """Fusion-specific parameters beyond ``dim`` and ``dropout`` (none for the simplest methods)."""

    model_config = ConfigDict(extra="forbid")


class Fusion(nn.Module):
    Params: ClassVar[type[FusionParams]] = FusionParams

    def __init__(self, inputs: list[FusionInput], dim: int, dropout: float, params: FusionParams):
        super().__init__()
        self.inputs = inputs
        self.dim = dim
        self.params = params

    def forward(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        raise NotImplementedError


class MissingEmbedding(nn.Module):
    """A learned vector per modality that stands in for the pooled embedding of an absent modality."""

    def __init__(self, inputs: list[FusionInput]):
        super().__init__()
        self.vectors = nn.ParameterDict({f.name: nn.Parameter(torch.zeros(f.dim)) for f in inputs})

    def forward(self, name: str, enc: Encoded) -> torch.Tensor:
        present = enc.mask.unsqueeze(1)
        return torch.where(present, enc.pooled, self.vectors[name].to(enc.pooled.dtype).expand_as(enc.pooled))


def build_fusion(name: str, inputs: list[FusionInput], dim: int, dropout: float, params: dict[str, Any]) -> Fusion:
    cls = FUSIONS.get(name)
    try:
        p = cls.Params(**params)
    except ValidationError as e:
        raise ConfigError(f"invalid parameters for fusion '{name}':\n{e}") from None
    return cls(inputs, dim, dropout, p)
