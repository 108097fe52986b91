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
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from torch import nn
from torch.nn.utils import prune

from ..data.dataset import make_loader
from ..data.readers import Table, read_table
from ..errors import ExportError
from ..training import fit_model

if TYPE_CHECKING:
    from ..api import Predictor

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


def prunable(model: nn.Module) -> list[tuple[str, nn.Module]]:
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


def fine_tune(predictor: "Predictor", data: Any, epochs: int, data_root: str | Path | None = None) -> None:
    """Train the (masked) model ``epochs`` more epochs on a labelled table, split for validation as ``fit`` does;
    the masks keep pruned weights at zero. The best validation epoch is kept."""
    cfg = predictor.config
    table = read_table(data, data_root if data_root is not None else cfg.data_root)
    frame = predictor._labelled(table.frame, "fine-tuning")  # noqa: SLF001  (the same label checks as fit)
    task = predictor.task
    train_pos, val_pos = predictor._split(  # noqa: SLF001
        frame[predictor.label], task, cfg.training.validation_fraction, cfg.training.seed)
    train_t = Table(frame.iloc[train_pos], table.root, table.source)
    val_t = Table(frame.iloc[val_pos], table.root, table.source)
    train, val = predictor._prepare_all([(train_t, "training rows"), (val_t, "validation rows")],  # noqa: SLF001
                                        predictor.processors, task, cfg)
    tcfg = cfg.training.model_copy()
    tcfg.max_epochs = epochs
    tcfg.learning_rate = tcfg.learning_rate * 0.1  # fine-tuning: a tenth of the training rate
    tcfg.warmup_fraction = 0.0
    L.seed_everything(tcfg.seed, workers=True, verbose=False)
    bs = tcfg.batch_size or 32
    train_loader = make_loader(train, predictor.processors, bs, True, task.target_dtype, tcfg.num_workers, tcfg.seed)
    val_loader = make_loader(val, predictor.processors, max(bs, 128), False, task.target_dtype, tcfg.num_workers)
    val_labels = val_t.frame[predictor.label].iloc[val.rows].reset_index(drop=True)
    fit_model(predictor.model, task, train_loader, val_loader, val_labels, tcfg, epochs, progress=predictor.verbose)
    predictor.model.cpu().eval()


def prune_run(run: str | Path, out: str | Path, amount: float = 0.5, fine_tune_data: Any = None, epochs: int = 1,
              eval_data: Any = None, data_root: str | Path | None = None, overwrite: bool = False,
              verbose: bool = False) -> PruneResult:
    """Prune run directory ``run`` into the new run directory ``out`` (written atomically), optionally fine-tuning
    on ``fine_tune_data`` and scoring on ``eval_data`` before and after."""
    from ..api import Predictor

    p = Predictor.load(run, verbose=verbose)
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


def _metrics(p: "Predictor", data: Any, data_root: str | Path | None) -> dict[str, float] | None:
    if data is None:
        return None
    return {k: float(v) for k, v in p.evaluate(data, data_root=data_root).items()}
