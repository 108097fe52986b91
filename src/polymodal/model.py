"""The multimodal network: encoders (one per modality) → fusion → task head, with dict inputs.

Mirrors TorchMultimodal's ``LateFusion(encoders, fusion, head)``; built deterministically from the resolved config
and the fitted processors, so a run directory only needs to store weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from .config import PolymodalConfig, encoder_choice
from .data.processors import Processor
from .encoders import Encoded, Encoder, build_encoder, encoder_lr_scales
from .fusion import Fusion, FusionInput, build_fusion
from .registry import ARCHITECTURES, register
from .schema import Modality
from .tasks import Task

if TYPE_CHECKING:
    from .data.dataset import Batch


class MultimodalModel(nn.Module):
    def __init__(self, encoders: dict[str, nn.Module], fusion: Fusion, head: nn.Module):
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.head = head

    def encode(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict[str, Encoded]:
        return {name: enc(inputs, masks[name]) for name, enc in self.encoders.items()}

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.fusion(self.encode(inputs, masks)))

    def outputs(self, batch: "Batch") -> torch.Tensor:
        """The outputs that training and validation compute the loss of."""
        return self(batch.inputs, batch.masks)

    def lr_scales(self) -> dict[str, float]:
        """Learning-rate multipliers by parameter name (pretrained backbones in finetune/last_n mode); every
        parameter not named here trains at the base learning rate."""
        return encoder_lr_scales(self.encoders)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor, task: Task) -> torch.Tensor:
        """Training loss of the last ``forward``'s outputs (the fusion may add terms of its own)."""
        return self.fusion.loss(outputs, target, task)


def build_model(
    config: PolymodalConfig, modalities: list[Modality], processors: dict[str, Processor], task: Task
) -> nn.Module:
    """The encoders, assembled as the task's architecture wants (``task.architecture``: "fused" for
    classification/regression, "seq2seq" for generation), or an ensemble of networks and classical members when
    the config has an ``ensemble`` section (its builder is registered as "ensemble" by :mod:`polymodal.ensemble`)."""
    if config.ensemble is not None:
        return ARCHITECTURES.get("ensemble")(config, modalities, processors, task)
    encoders = {}
    for m in modalities:
        choice = encoder_choice(config, m)  # the column's own entry, else its kind's
        encoders[m.name] = build_encoder(choice.name, choice.params(), m, processors[m.name])
    if task.architecture == "two_tower":
        from . import towers as _towers  # noqa: F401  (registers the "two_tower" architecture)
    elif task.architecture == "crossmodal":
        from . import crossmodal as _crossmodal  # noqa: F401  (registers the "crossmodal" architecture)
    builder = ARCHITECTURES.get(task.architecture)
    if getattr(builder, "needs_processors", False):  # (the autoencoder: its decoders are shaped by them)
        return builder(config, encoders, task, processors)
    return builder(config, encoders, task)


@register(ARCHITECTURES, "fused")
def build_fused(config: PolymodalConfig, encoders: dict[str, nn.Module], task: Task) -> MultimodalModel:
    """Encoders → fusion → the task's head (no head after a decision-level fusion)."""
    inputs = [FusionInput(name, cast(Encoder, enc).dim) for name, enc in encoders.items()]
    fusion = build_fusion(
        config.fusion.name, inputs, config.fusion.dim, config.fusion.dropout, config.fusion.params(), task
    )
    head = nn.Identity() if fusion.decides else task.head(config.fusion.dim)
    return MultimodalModel(encoders, fusion, head)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
