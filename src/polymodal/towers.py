"""The "two_tower" architecture of ``problem_type: retrieval``: the query columns' encoders → a fusion → a
projection head, and the same for the target columns; both projections are L2-normalised into one space.

Each tower fuses its own columns with the configured (feature-level) fusion; the learned temperature is a
log-parametrised scale clamped to ``task.retrieval.max_logit_scale``. The forward pass returns ``[B, 2, dim]``:
both unit vectors times ``sqrt(scale)``, so their dot product is the InfoNCE logit (see
:mod:`polymodal.tasks.retrieval`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import nn

from .config import PolymodalConfig
from .encoders import Encoded, Encoder, encoder_lr_scales
from .errors import ConfigError
from .fusion import Fusion, FusionInput, build_fusion
from .registry import ARCHITECTURES, register
from .tasks import Task

if TYPE_CHECKING:
    from .data.dataset import Batch


class TwoTowerModel(nn.Module):
    def __init__(
        self,
        encoders: dict[str, nn.Module],
        towers: dict[str, list[str]],
        fusions: dict[str, Fusion],
        dim: int,
        temperature: float,
        max_logit_scale: float,
    ):
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.towers = towers  # side → its modality names (the encoders' keys)
        self.fusions = nn.ModuleDict(fusions)
        self.projections = nn.ModuleDict({side: nn.Linear(f.dim, dim) for side, f in fusions.items()})
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        self.max_log_scale = math.log(max_logit_scale)

    def encode(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict[str, Encoded]:
        return {name: enc(inputs, masks[name]) for name, enc in self.encoders.items()}

    def embed(self, encoded: dict[str, Encoded], side: str) -> torch.Tensor:
        """One tower's unit vectors ``[B, dim]``."""
        fused = self.fusions[side]({name: encoded[name] for name in self.towers[side]})
        return F.normalize(self.projections[side](fused).float(), dim=-1)

    def logit_scale(self) -> torch.Tensor:
        return self.log_scale.clamp(max=self.max_log_scale).exp()

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        encoded = self.encode(inputs, masks)
        both = torch.stack([self.embed(encoded, "query"), self.embed(encoded, "target")], dim=1)
        return both * self.logit_scale().sqrt()

    def outputs(self, batch: "Batch") -> torch.Tensor:
        return self(batch.inputs, batch.masks)

    def lr_scales(self) -> dict[str, float]:
        return encoder_lr_scales(self.encoders)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor, task: Task) -> torch.Tensor:
        return task.loss(outputs, target)


def tower_modalities(
    encoders: dict[str, nn.Module], columns: dict[str, list[str]], side: str, cols: list[str]
) -> list[str]:
    """The modalities (encoder keys) that read ``cols``; a modality reading columns of both sides is refused."""
    names = [name for name, read in columns.items() if set(read) & set(cols)]
    for name in names:
        outside = sorted(set(columns[name]) - set(cols))
        if outside:
            raise ConfigError(
                f"the {side} column(s) {', '.join(sorted(set(columns[name]) & set(cols)))} share the '{name}' "
                f"encoder with {', '.join(outside)}; numeric/category columns of one side only, or set "
                "columns: {col: ignore} for the others"
            )
    if not names:
        raise ConfigError(f"none of the {side} columns ({', '.join(cols)}) is an input column of the table")
    return names


@register(ARCHITECTURES, "two_tower")
def build_two_tower(config: PolymodalConfig, encoders: dict[str, nn.Module], task: Task) -> TwoTowerModel:
    r = config.task.retrieval
    columns = {name: list(cast(Encoder, enc).modality.columns) for name, enc in encoders.items()}
    towers = {"query": tower_modalities(encoders, columns, "query", r.query)}
    towers["target"] = tower_modalities(encoders, columns, "target", r.target)
    fusions = {}
    for side, names in towers.items():
        inputs = [FusionInput(name, cast(Encoder, encoders[name]).dim) for name in names]
        fusion = build_fusion(
            config.fusion.name, inputs, config.fusion.dim, config.fusion.dropout, config.fusion.params(), task
        )
        if fusion.decides:
            raise ConfigError(
                f"fusion '{config.fusion.name}' decides per modality; a retrieval tower needs a feature-level "
                "fusion (e.g. fusion: early or attention)"
            )
        fusions[side] = fusion
    used = set(towers["query"]) | set(towers["target"])
    unused = {k: v for k, v in encoders.items() if k not in used}
    if unused:
        raise ConfigError(f"column(s) of {', '.join(unused)} are in neither tower: pass them as query or target")
    return TwoTowerModel(encoders, towers, fusions, r.dim, r.temperature, r.max_logit_scale)
