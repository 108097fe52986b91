"""Modality dropout: hide whole modalities of random rows during training.

A model trained this way learns not to lean on any single modality, so it degrades gracefully when one is absent
at predict time (cf. ModDrop, Neverova et al. 2016). Only the presence masks change: encoders zero the output of an
absent modality and fusions replace it (learned missing vector, masked attention), exactly as for a truly missing one.
"""

from __future__ import annotations

import torch

from ..data.dataset import Batch


def drop_modalities(batch: Batch, rate: float, generator: torch.Generator | None = None) -> Batch:
    """Mark each present modality of each row absent with probability ``rate``; every row keeps at least one."""
    if rate <= 0 or len(batch.masks) < 2:
        return batch
    names = list(batch.masks)
    present = torch.stack([batch.masks[n] for n in names], dim=1)  # [B, M]
    draw = torch.rand(present.shape, generator=generator).to(present.device)
    keep = present & (draw >= rate)
    emptied = ~keep.any(dim=1) & present.any(dim=1)
    if emptied.any():
        # Give each emptied row back one of its own present modalities, chosen at random.
        scores = torch.rand(present.shape, generator=generator).to(present.device).masked_fill(~present, -1.0)
        restore = torch.nn.functional.one_hot(scores.argmax(dim=1), len(names)).bool()
        keep |= restore & emptied.unsqueeze(1)
    return Batch(batch.inputs, {n: keep[:, i] for i, n in enumerate(names)}, batch.target, batch.rows)
