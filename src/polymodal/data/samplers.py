"""Training-row samplers whose order is a function of (seed, epoch) alone.

A resumed fit must draw the same rows in the same order as an uninterrupted one; a sampler fed by a generator that
advances once per epoch in this process would not (after a resume it starts from the seed again). Lightning calls
``set_epoch`` before every training epoch (as it does for a DistributedSampler).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 32-bit seed for ``epoch`` of a run seeded with ``seed`` (neighbouring epochs share nothing)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class EpochSampler(torch.utils.data.Sampler[int]):
    """Row positions of one epoch: a permutation of ``0..n-1`` (``weights`` None), or ``n`` draws with replacement
    in proportion to ``weights`` (the balanced sampler); either is determined by ``(seed, epoch)``."""

    def __init__(self, n: int, seed: int, weights: np.ndarray | None = None) -> None:
        self.n, self.seed, self.epoch = n, seed, 0
        #: the DataLoader's own generator (its workers' base seed): without one, creating the loader's iterator
        #: draws from the global torch generator, and Lightning creates it before or after the epoch's reseeding
        #: (:class:`~polymodal.training.checkpoint.EpochSeed`) depending on whether the run was resumed
        self.loader_generator = torch.Generator().manual_seed(seed)
        self.weights = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float64))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.loader_generator.manual_seed(epoch_seed(self.seed, epoch))

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        if self.weights is None:
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        return iter(order.tolist())
