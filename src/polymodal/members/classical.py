"""What the classical members share: which modalities and tasks they take, the training targets, the spec checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import ConfigError, DataError
from .base import Member
from .features import FEATURE_KINDS, select

if TYPE_CHECKING:
    from ..data.dataset import Prepared
    from ..schema import Modality
    from ..tasks import Task

#: the problem types classical members learn (their outputs are the task's logits / standardised value)
PROBLEM_TYPES = ("binary", "multiclass", "regression")


class ClassicalMember(Member):
    """A member over tabular and TF-IDF text features (:mod:`polymodal.members.features`).

    ``kinds``: the modality kinds it reads (the others are ignored). ``variant_of``: a variant restricted to fewer
    kinds (``linear_text``, ``gbm_tabular``) applies only where it differs from its full member, i.e. when the
    table also has a kind it leaves out; fitted directly, it works on any table with one of its kinds.
    """

    kinds: ClassVar[tuple[str, ...]] = FEATURE_KINDS
    variant_of: ClassVar[str | None] = None

    #: what fit measured, saved in the spec (importance per input column, regularisation, seconds, ...)
    info: dict[str, Any]

    def feature_importance(self) -> dict[str, float]:
        """Importance per input column, summing to 1, as fit measured it (gbm: total split gain of the column's
        features; linear: mean |coefficient × the feature's training standard deviation|)."""
        return dict(self.info.get("importance", {}))

    @classmethod
    def applies(cls, modalities: list[Modality], task: Task) -> bool:
        if task.problem_type not in PROBLEM_TYPES:
            return False
        present = {m.kind for m in modalities}
        if not present & set(cls.kinds):
            return False
        if cls.variant_of is not None:  # else it would learn exactly what its full member learns
            return bool(present & (set(FEATURE_KINDS) - set(cls.kinds)))
        return True

    @classmethod
    def used(cls, modalities: list[Modality]) -> list[Modality]:
        """The modalities this member reads, refused with a clear message when there are none."""
        used = select(modalities, cls.kinds)
        if not used:
            have = ", ".join(f"{m.name} ({m.kind})" for m in modalities) or "none"
            raise DataError(
                f"member '{cls.name}' reads {' or '.join(cls.kinds)} columns; the table has: {have}",
                hint="Leave this member out (check Member.applies first).",
            )
        return used

    @staticmethod
    def check_task(name: str, task: Task) -> None:
        if task.problem_type not in PROBLEM_TYPES:
            raise ConfigError(
                f"member '{name}' learns {', '.join(PROBLEM_TYPES)} tasks, not '{task.problem_type}'; leave it out"
            )

    @staticmethod
    def targets(rows: Prepared, task: Task) -> tuple[np.ndarray, np.ndarray]:
        """(targets, positions of the rows that have a usable one): labels unseen in training (-1) are left out."""
        if rows.targets is None:
            raise DataError("a classical member needs labelled rows (Prepared.targets is empty)")
        y = np.asarray(rows.targets)
        keep = np.flatnonzero(y >= 0) if task.problem_type != "regression" else np.flatnonzero(np.isfinite(y))
        return y[keep], keep

    @staticmethod
    def check_modalities(name: str, spec: dict[str, Any], modalities: list[Modality]) -> None:
        have = {m.name for m in modalities}
        missing = [m for m in spec["modalities"] if m not in have]
        if missing:
            raise ConfigError(
                f"member '{name}' was fitted on modalities {', '.join(missing)}, which this model does not have; "
                "the member does not belong to this run directory"
            )
