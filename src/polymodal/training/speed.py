"""Automatic speed settings of a fit: the numeric precision the hardware runs fastest without losing accuracy.

Kept apart from ``fit.py`` so that the rule is one function with its reasons, tested on its own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from ..config import TrainingConfig

#: Set to 1 to let the automatic precision pick bf16-mixed on a CPU with native bfloat16 (off by default: see
#: :func:`auto_precision`).
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
    """The Lightning precision of a fit: ``cfg.precision`` when set; else 16-mixed on a GPU; on a CPU 32-true, or
    bf16-mixed where the CPU has native bfloat16 and the environment variable ``POLYMODAL_CPU_BF16=1`` asks for it.

    Why bf16 on a CPU is not the default: it makes an AV-digits epoch about 1.6x faster on a 2-core EPYC with
    AVX512-BF16 (benchmarks/epoch_profile.py), but in a small side-by-side check (1,500 AV-digits rows, 8 epochs,
    2 seeds) test accuracy was 2 points lower than float32's on both seeds; until a full-size run shows accuracy
    holds (benchmarks/avdigits_speed.py --env POLYMODAL_CPU_BF16=1), it is opt-in. The trained network is float32
    either way: prediction, export and saved weights do not change.
    """
    if cfg.precision:
        return cfg.precision
    if cuda is None:
        cuda = torch.cuda.is_available()
    if cuda and cfg.accelerator in ("auto", "gpu", "cuda"):
        return "16-mixed"
    on_cpu = cfg.accelerator == "cpu" or (cfg.accelerator == "auto" and not cuda)
    if on_cpu and os.environ.get(BF16_ENV, "0") == "1" and cpu_has_native_bf16():
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
