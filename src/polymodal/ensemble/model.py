"""The ensemble module and its builder (registered as the "ensemble" architecture)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..config import EnsembleConfig, EnsembleMemberConfig, PolymodalConfig
from ..errors import ConfigError
from ..members import MEMBERS
from ..model import build_model
from ..registry import ARCHITECTURES, register

if TYPE_CHECKING:
    from ..data.processors import Processor
    from ..schema import Modality
    from ..tasks import Task

#: How members' outputs are combined, by problem type: "probabilities" (log of the weighted mean of the softmax
#: probabilities: the result is again logits, so the task's predict_proba, postprocess and metrics apply unchanged)
#: or "mean" (weighted mean of the outputs: standardised regression values).
COMBINERS: dict[str, str] = {"binary": "probabilities", "multiclass": "probabilities", "regression": "mean"}


def combiner_for(problem_type: str) -> str:
    if problem_type not in COMBINERS:
        raise ConfigError(
            f"ensembles (the quality preset) are for {', '.join(sorted(COMBINERS))} problems, not {problem_type}; "
            "fit it without --preset quality"
        )
    return COMBINERS[problem_type]


def combine(outputs: Sequence[torch.Tensor], weights: Sequence[float], combiner: str) -> torch.Tensor:
    """The members' outputs combined with ``weights`` (each > 0, summing to 1)."""
    if combiner == "probabilities":
        # log sum_i w_i softmax(o_i), computed as a log-sum-exp: exact, and no log(0) for a class every member rules out
        parts = [torch.log_softmax(o.float(), dim=-1) + math.log(w) for o, w in zip(outputs, weights)]
        return torch.logsumexp(torch.stack(parts), dim=0)
    total = outputs[0].float() * weights[0]
    for o, w in zip(outputs[1:], weights[1:]):
        total = total + o.float() * w
    return total


class EnsembleModel(nn.Module):
    """Named members and fixed weights; ``forward`` combines the members with a positive weight (see
    :data:`COMBINERS`). Members with weight 0 are kept (their weights are saved) so the leaderboard can score them,
    but they are not run by ``forward`` and are absent from an exported graph."""

    def __init__(self, members: dict[str, nn.Module], weights: Sequence[float], combiner: str):
        super().__init__()
        if len(weights) != len(members):
            raise ValueError(f"{len(members)} members but {len(weights)} weights")
        self.members = nn.ModuleDict(members)
        self.weights = [float(w) for w in weights]
        self.combiner = combiner
        self.used = [(name, w) for name, w in zip(members, self.weights) if w > 0]
        if not self.used:
            raise ValueError("an ensemble needs at least one member with a positive weight")

    def member_outputs(
        self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Every member's own outputs for one batch (weight-0 members included)."""
        return {name: m(inputs, masks) for name, m in self.members.items()}

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        outs = [self.members[name](inputs, masks) for name, _ in self.used]
        return combine(outs, [w for _, w in self.used], self.combiner)

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}={w:.3f}" for n, w in zip(self.members, self.weights))
        return f"EnsembleModel({self.combiner}: {parts})"


def is_ensemble(model: object) -> bool:
    return isinstance(model, EnsembleModel)


def member_modalities(member: EnsembleMemberConfig, modalities: list[Modality]) -> list[Modality]:
    """The modalities ``member`` reads (all of them when it names none)."""
    if not member.modalities:
        return list(modalities)
    by_name = {m.name: m for m in modalities}
    unknown = [n for n in member.modalities if n not in by_name]
    if unknown:
        raise ConfigError(
            f"ensemble member '{member.name}' reads modalities {', '.join(unknown)} that this run does not have "
            f"(it has: {', '.join(by_name)})"
        )
    return [by_name[n] for n in member.modalities]


def member_config(config: PolymodalConfig, member: EnsembleMemberConfig) -> PolymodalConfig:
    """The config a network member is built (and trained) with: the run's, with the member's fusion and seed."""
    cfg = config.model_copy(deep=True)
    cfg.ensemble = None
    if member.fusion is not None:
        cfg.fusion = member.fusion.model_copy(deep=True)
    cfg.training.seed = member.seed
    return cfg


def build_member(
    config: PolymodalConfig,
    member: EnsembleMemberConfig,
    modalities: list[Modality],
    processors: dict[str, Processor],
    task: Task,
) -> nn.Module:
    """One member's modules with the right shapes (a network's initial weights come from the global generator)."""
    mods = member_modalities(member, modalities)
    procs = {m.name: processors[m.name] for m in mods}
    if member.kind == "network":
        return build_model(member_config(config, member), mods, procs, task)
    return MEMBERS.get(member.kind).from_spec(member.spec, mods, procs, task)


@register(ARCHITECTURES, "ensemble")
def build_ensemble(
    config: PolymodalConfig, modalities: list[Modality], processors: dict[str, Processor], task: Task
) -> EnsembleModel:
    """The ensemble that ``config.ensemble`` describes; ``load_state_dict`` then restores every member's weights."""
    ens: EnsembleConfig | None = config.ensemble
    if ens is None:
        raise ConfigError("this config has no ensemble section")
    members = {m.name: build_member(config, m, modalities, processors, task) for m in ens.members}
    return EnsembleModel(members, ens.weights, combiner_for(task.problem_type))
