"""Corruption augmentation: training rows damaged on the fly by the corruptions the robustness sweep uses.

Modality dropout teaches a model what to do when a modality is *absent*; a sensor that fails *noisily* is the more
common case, and a model that never saw noise trusts a noisy modality as much as a clean one (on AV-digits concat
fusion falls from 0.98 to 0.18 under image noise). Here each modality of each training row is, with probability
``p``, replaced by a copy corrupted by a random applicable corruption at a random level: the same registry and the
same pure functions as :mod:`polymodal.evaluation.robustness`, so training sees the damage the sweep measures.

The corruptions are numpy functions of decoded items, so they are applied to a batch's items just before the
processors collate them into tensors (:class:`~polymodal.data.dataset.Collator`, training batches only; the
processors' own augmentations follow). Validation and test loaders never get an augmenter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from .corruptions import CORRUPTIONS, Corruption
from .processors import Processor


@dataclass(frozen=True)
class _Choice:
    corruption: Corruption
    levels: tuple[float, ...]


class CorruptionAugmenter:
    """Per modality, the corruptions (and levels) a training row may get; :meth:`apply` corrupts a batch's items.

    Built with :meth:`build` from ``training.corruption_augmentation``; a modality no corruption applies to (e.g.
    categories only) is left alone.
    """

    def __init__(self, probability: float, choices: Mapping[str, Sequence[_Choice]]):
        self.probability = probability
        self.choices = {m: list(cs) for m, cs in choices.items() if cs}

    @classmethod
    def build(
        cls,
        processors: Mapping[str, Processor],
        probability: float,
        kinds: Sequence[str] | None = None,
        max_severity: float = 1.0,
    ) -> "CorruptionAugmenter | None":
        """The augmenter for these modalities, or None when it would do nothing (``probability`` 0).

        Raises ConfigError for an unknown corruption name, or named corruptions none of which applies to any
        modality of the table (the message lists what does apply).
        """
        if probability <= 0:
            return None
        names = list(CORRUPTIONS.names()) if kinds is None else list(kinds)
        corruptions = [CORRUPTIONS.build(n) for n in names]  # an unknown name: ConfigError listing the choices
        choices: dict[str, list[_Choice]] = {}
        for m, p in processors.items():
            for c in corruptions:
                if c.applies(p):
                    keep = max(1, int(np.ceil(max_severity * len(c.levels) - 1e-9)))
                    choices.setdefault(m, []).append(_Choice(c, tuple(c.levels[:keep])))
        if kinds is not None and not choices:
            usable = sorted(
                {c for p in processors.values() for c in CORRUPTIONS.names() if CORRUPTIONS.build(c).applies(p)}
            )
            raise ConfigError(
                f"training.corruption_augmentation.kinds {names} apply to none of this table's modalities "
                f"({', '.join(f'{m}: {p.kind}' for m, p in processors.items())}); these do: {', '.join(usable) or 'none'}"
            )
        return cls(probability, choices)

    def apply(self, modality: str, items: list[Any], rng: np.random.Generator) -> list[Any]:
        """A new list: each present item corrupted with probability ``probability`` (random kind and level)."""
        choices = self.choices.get(modality)
        if not choices:
            return items
        out = list(items)
        for i, item in enumerate(items):
            if item is None or rng.random() >= self.probability:
                continue
            choice = choices[int(rng.integers(len(choices)))]
            level = choice.levels[int(rng.integers(len(choice.levels)))]
            out[i] = choice.corruption.apply(item, level, rng)
        return out

    @staticmethod
    def batch_rng() -> np.random.Generator:
        """A generator for one batch, seeded from torch's global generator: training reseeds that at every epoch
        start (and each loader worker gets its own seed from it), so a fit's corruptions follow from its seed."""
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


def augmenter_from_config(processors: Mapping[str, Processor], cfg: Any) -> CorruptionAugmenter | None:
    """:meth:`CorruptionAugmenter.build` from a ``CorruptionAugmentationConfig``."""
    return CorruptionAugmenter.build(processors, cfg.probability, cfg.kinds, cfg.max_severity)
