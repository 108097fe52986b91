"""The member contract: fitted on decoded training rows, rebuilt from a JSON spec plus saved tensors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..registry import Registry

if TYPE_CHECKING:
    from ..data.dataset import Prepared
    from ..data.processors import Processor
    from ..schema import Modality
    from ..tasks import Task


class Member(nn.Module, ABC):
    """A model over decoded batches (see the package docstring).

    All learned state is either in :meth:`spec` (JSON: sizes, vocabularies, hyperparameters) or in the module's
    tensors (``state_dict``, saved with safetensors): never pickled. ``from_spec(spec, ...)`` followed by
    ``load_state_dict`` rebuilds a fitted member exactly.
    """

    #: the registry name (MEMBERS)
    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def applies(cls, modalities: list[Modality], task: Task) -> bool:
        """Whether this member can learn from any of ``modalities`` for ``task`` (e.g. a text model needs text)."""

    @classmethod
    @abstractmethod
    def fit(
        cls,
        train: Prepared,
        val: Prepared,
        modalities: list[Modality],
        processors: dict[str, Processor],
        task: Task,
        *,
        seed: int = 0,
        time_limit: float | None = None,
    ) -> Member:
        """A member fitted on the decoded ``train`` rows (``val`` for early stopping only), outputs in ``task``'s
        output space. ``Prepared.targets`` holds the encoded targets."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """JSON-able: everything :meth:`from_spec` needs to build this member's modules with the right shapes."""

    @classmethod
    @abstractmethod
    def from_spec(
        cls, spec: dict[str, Any], modalities: list[Modality], processors: dict[str, Processor], task: Task
    ) -> Member:
        """An unfitted-looking member with the right shapes; ``load_state_dict`` then restores its tensors."""

    @abstractmethod
    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        """The task's outputs [batch, task.n_outputs] for one batch."""

    def feature_importance(self) -> dict[str, float]:
        """Importance of each input column (summing to 1), for explanations and the report. Default: none."""
        return {}


MEMBERS: Registry[Member] = Registry("ensemble member")
