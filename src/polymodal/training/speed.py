"""Automatic speed settings of a fit: the numeric precision the hardware runs fastest without losing accuracy.

Kept apart from ``fit.py`` so that the rule is one function with its reasons, tested on its own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from ..config import TrainingConfig

#: ``1``: the automatic precision picks bf16-mixed on a CPU with native bfloat16 for every table; ``0``: never;
#: unset: for tables of at least :data:`BF16_MIN_ROWS` training rows (see :func:`auto_precision`).
BF16_ENV = "POLYMODAL_CPU_BF16"

#: training rows from which a CPU with native bfloat16 trains in bf16-mixed by default
BF16_MIN_ROWS = 10_000


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively (AVX512-BF16 or AMX), as oneDNN reports it.

    Without native support bfloat16 is emulated and slower than float32, so the automatic precision stays 32-true.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def auto_precision(cfg: TrainingConfig, cuda: bool | None = None, rows: int | None = None) -> str:
    """The Lightning precision of a fit: ``cfg.precision`` when set; else 16-mixed on a GPU; on a CPU with native
    bfloat16, bf16-mixed for a table of at least :data:`BF16_MIN_ROWS` training rows (``rows``; the environment
    variable ``POLYMODAL_CPU_BF16=1`` extends it to every table, ``=0`` turns it off); 32-true otherwise.

    Why by size: bf16 makes an AV-digits epoch about 1.6x faster on a 2-core EPYC with AVX512-BF16
    (benchmarks/epoch_profile.py). On the full table (17,000 training rows, the default 16 epochs) test accuracy was
    0.9931 against the float32 baseline's 0.9925 (benchmarks/avdigits_speed.py), but on 1,500 rows (8 epochs, 2
    seeds, benchmarks/precision_accuracy.py) it was 2 points lower on both seeds: small tables train fast in float32 anyway, large ones are where the time goes.
    The trained network is float32 either way: prediction, export and saved weights do not change.
    """
    if cfg.precision:
        return cfg.precision
    if cuda is None:
        cuda = torch.cuda.is_available()
    if cuda and cfg.accelerator in ("auto", "gpu", "cuda"):
        return "16-mixed"
    on_cpu = cfg.accelerator == "cpu" or (cfg.accelerator == "auto" and not cuda)
    wanted = {"1": True, "0": False}.get(os.environ.get(BF16_ENV, ""), rows is not None and rows >= BF16_MIN_ROWS)
    if on_cpu and wanted and cpu_has_native_bf16():
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
