"""The fusion contract. Missing modalities are handled here, through the presence masks, never by crashing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import ValidationError
from torch import nn

from ..config import config_error
from ..encoders.base import Encoded
from ..errors import ConfigError
from ..params.fusion import FusionParams
from ..registry import FUSIONS

if TYPE_CHECKING:
    from ..tasks import Task


@dataclass(frozen=True)
class FusionInput:
    """What a fusion needs to know about one modality to size its layers."""

    name: str
    dim: int


class Fusion(nn.Module):
    """``dict[str, Encoded] → Tensor``: a fused vector of width ``dim`` for the task's head.

    A decision-level fusion (``decides = True``) instead returns the task's outputs itself: it is built with the
    task, and the model adds no head after it.
    """

    Params: ClassVar[type[FusionParams]] = FusionParams
    decides: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The fusion's description is written once, on its Params (what the config schema shows users).
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("__doc__") is None:
            cls.__doc__ = cls.Params.__doc__

    def __init__(self, inputs: list[FusionInput], dim: int, dropout: float, params: FusionParams):
        super().__init__()
        self.inputs = inputs
        self.dim = dim
        self.params = params

    def forward(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, target: torch.Tensor, task: "Task") -> torch.Tensor:
        """The training loss of the model's outputs; decision-level fusions add their per-modality heads' losses."""
        return task.loss(outputs, target)

    def modality_weights(self, encoded: dict[str, Encoded]) -> torch.Tensor | None:
        """How much weight this fusion gives each modality in each row: ``[B, M]`` in the order of ``inputs``,
        rows summing to 1 over the present modalities (0 for absent ones); None for fusions that have no such
        weights (concatenation, products). Read by the explanations; never used in training."""
        return None


class MissingEmbedding(nn.Module):
    """A learned vector per modality that stands in for the pooled embedding of an absent modality."""

    def __init__(self, inputs: list[FusionInput]):
        super().__init__()
        self.vectors = nn.ParameterDict({f.name: nn.Parameter(torch.zeros(f.dim)) for f in inputs})

    def forward(self, name: str, enc: Encoded) -> torch.Tensor:
        present = enc.mask.unsqueeze(1)
        return torch.where(present, enc.pooled, self.vectors[name].to(enc.pooled.dtype).expand_as(enc.pooled))


def token_sequence(enc: Encoded, max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A modality's first ``max_tokens`` tokens [B, T, D] (its pooled vector as one token when the encoder gives
    none) and which of them are valid [B, T]: real tokens of present rows. Invalid positions are zeroed, so that
    nothing about an absent modality or a padding token can reach a fusion's output."""
    toks = enc.tokens if enc.tokens is not None else enc.pooled.unsqueeze(1)
    toks = toks[:, :max_tokens]
    if enc.tokens is not None and enc.token_mask is not None:
        tmask = enc.token_mask[:, : toks.shape[1]].bool()
    else:
        tmask = torch.ones(toks.shape[:2], dtype=torch.bool, device=toks.device)
    keep = tmask & enc.mask.unsqueeze(1)
    return toks * keep.unsqueeze(-1).to(toks.dtype), keep


def build_fusion(
    name: str, inputs: list[FusionInput], dim: int, dropout: float, params: dict[str, Any], task: "Task | None" = None
) -> Fusion:
    """Build a registered fusion; decision-level fusions also need the ``task`` (their heads are its heads)."""
    cls = FUSIONS.get(name)
    try:
        p = cls.Params(**params)
    except ValidationError as e:
        raise config_error(e, cls.Params, ("fusion",), what=f"invalid parameters for fusion '{name}'") from None
    if not cls.decides:
        return cls(inputs, dim, dropout, p)
    if task is None:
        raise ConfigError(f"fusion '{name}' is decision-level: it needs the task to build its per-modality heads")
    # decision-level fusions (``decides``) take the task as a fifth argument
    return cls(inputs, dim, dropout, p, task)  # type: ignore[call-arg]
