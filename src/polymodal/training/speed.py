"""Automatic speed settings of a fit: the numeric precision the hardware runs fastest without losing accuracy.

Kept apart from ``fit.py`` so that the rule is one function with its reasons, tested on its own.
"""

from __future__ import annotations

import os

import torch

from ..config import TrainingConfig

#: Set to 0 to keep the automatic precision at 32-true on a CPU with native bfloat16 (e.g. to compare runs).
BF16_ENV = "POLYMODAL_CPU_BF16"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively (AVX512-BF16 or AMX), as oneDNN reports it.

    Without native support bfloat16 is emulated and slower than float32, so the automatic precision stays 32-true.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def auto_precision(cfg: TrainingConfig, cuda: bool | None = None) -> str:
    """The Lightning precision of a fit: ``cfg.precision`` when set; else 16-mixed on a GPU; bf16-mixed on a CPU
    with native bfloat16; 32-true otherwise.

    Why bf16-mixed on such CPUs: convolutions and matrix products run about 1.7x faster in bfloat16 there
    (benchmarks/epoch_profile.py), while the weights, the optimizer state and the loss stay float32 (autocast casts
    only the operations that are safe in bfloat16), so accuracy holds; see docs/BENCHMARKS.md (avdigits_speed).
    The trained network is float32 either way: prediction, export and saved weights do not change.
    """
    if cfg.precision:
        return cfg.precision
    if cuda is None:
        cuda = torch.cuda.is_available()
    if cuda and cfg.accelerator in ("auto", "gpu", "cuda"):
        return "16-mixed"
    on_cpu = cfg.accelerator == "cpu" or (cfg.accelerator == "auto" and not cuda)
    if on_cpu and os.environ.get(BF16_ENV, "1") != "0" and cpu_has_native_bf16():
        return "bf16-mixed"
    return "32-true"
