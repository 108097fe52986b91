"""``polymodal prune``: magnitude pruning of every linear and convolution weight, with an optional fine-tune.

Each layer's ``amount`` share of smallest-magnitude weights is zeroed (``torch.nn.utils.prune.l1_unstructured``);
the zeros are made permanent before saving, so the pruned run directory is an ordinary one (same files, same
loader). Unstructured sparsity makes the weights compressible, not the dense CPU kernels faster: the speed-ups of
deployment come from ONNX Runtime and int8 (see docs/DEPLOYMENT.md).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn
from torch.nn.utils import prune

from ..errors import ExportError
from ..fitting import fine_tune
from ..pipeline import FittedPipeline

log = logging.getLogger("polymodal")
PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


@dataclass
class PruneResult:
    amount: float
    sparsity: float  # zeros / weights over every prunable layer
    layers: int
    fine_tune_epochs: int = 0
    metrics_before: dict[str, float] | None = None
    metrics_after: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prunable(model: nn.Module) -> list[tuple[str, nn.Linear | nn.Conv1d | nn.Conv2d]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE)]


def sparsity(model: nn.Module) -> float:
    """Share of exactly-zero entries over the weights of every linear/conv layer."""
    zeros = total = 0
    for _, m in prunable(model):
        w = m.weight.detach()
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros / max(total, 1)


def apply_pruning(model: nn.Module, amount: float) -> int:
    """Attach L1-magnitude masks to every linear/conv weight (kept while fine-tuning); returns the layer count."""
    if not 0.0 <= amount < 1.0:
        raise ExportError(f"--amount must be in [0, 1): the share of each layer's weights set to zero, not {amount}")
    layers = prunable(model)
    for _, m in layers:
        prune.l1_unstructured(m, "weight", amount=amount)
    return len(layers)


def make_permanent(model: nn.Module) -> None:
    """Fold the masks into the weights (``weight_orig * weight_mask`` → ``weight``), restoring the plain
    parameter names that the run directory stores."""
    for _, m in prunable(model):
        if prune.is_pruned(m):
            prune.remove(m, "weight")


def prune_run(
    run: str | Path,
    out: str | Path,
    amount: float = 0.5,
    fine_tune_data: Any = None,
    epochs: int = 1,
    eval_data: Any = None,
    data_root: str | Path | None = None,
    overwrite: bool = False,
    verbose: bool = False,
) -> PruneResult:
    """Prune run directory ``run`` into the new run directory ``out`` (written atomically), optionally fine-tuning
    on ``fine_tune_data`` and scoring on ``eval_data`` before and after."""
    p = FittedPipeline.load(run, verbose=verbose)
    before = _metrics(p, eval_data, data_root)
    layers = apply_pruning(p.model, amount)
    tuned = 0
    if fine_tune_data is not None and epochs > 0 and amount > 0:
        fine_tune(p, fine_tune_data, epochs, data_root)
        tuned = epochs
    make_permanent(p.model)
    p.model.eval()
    after = _metrics(p, eval_data, data_root)
    result = PruneResult(amount, round(sparsity(p.model), 4), layers, tuned, before, after)
    p.fit_result = None  # the saved metrics.json would describe the unpruned training run
    p.save(out, overwrite=overwrite)
    return result


def _metrics(p: FittedPipeline, data: Any, data_root: str | Path | None) -> dict[str, float] | None:
    if data is None:
        return None
    return {k: float(v) for k, v in p.evaluate(data, data_root=data_root).items()}
