"""The fusion's own weights over modalities: attention from [CLS] (attention, transformer), attention received
(graph), gates (gated), learned softmax weights (weighted, late with combine=weighted).

Each fusion class says what its weights are through :meth:`polymodal.fusion.Fusion.modality_weights` (None for
fusions that have none: concat, product, tensor, low-rank, a late-fusion vote). They describe how the fusion mixes
its inputs, not how much each input changes the prediction; the attributions measure that.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


@torch.no_grad()
def fusion_weights(
    model: nn.Module, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]
) -> list[dict[str, float]] | None:
    """Per row of the batch: modality name → weight (summing to 1 over the present modalities), or None when
    the model's fusion has no weights over modalities."""
    fusion: Any = getattr(model, "fusion", None)
    weigh = getattr(fusion, "modality_weights", None)
    if weigh is None:
        return None
    # (a model with a fusion is a MultimodalModel; torch types its attributes as Tensor | Module)
    w = weigh(model.encode(inputs, masks))  # type: ignore[operator]
    if w is None:
        return None
    names = [f.name for f in fusion.inputs]
    return [{n: float(v) for n, v in zip(names, row)} for row in w.float().cpu().tolist()]
