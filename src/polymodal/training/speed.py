"""Automatic speed settings of a fit: the numeric precision the hardware runs fastest without losing accuracy.

Kept apart from ``fit.py`` so that the rule is one function with its reasons, tested on its own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

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


@contextlib.contextmanager
def channels_last(model: torch.nn.Module) -> Iterator[None]:
    """Within the block the network's 4-D weights (convolutions) are stored channels-last, the layout oneDNN and
    cuDNN run fastest (about 1.1x on float32 and 1.3x on bfloat16 for the AV-digits CNNs; a 1-channel input is the
    same memory in either layout). Afterwards every weight is contiguous again, as safetensors and ONNX export
    expect. A network without 4-D weights is left as it is."""
    if not any(p.ndim == 4 for p in model.parameters()):
        yield
        return
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    try:
        yield
    finally:
        model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
