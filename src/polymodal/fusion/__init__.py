"""Fusion methods: ``dict[str, Encoded] → Tensor[B, D]``. Importing this package registers them."""
from . import early  # noqa: F401  (registration side effects)
from . import gating, tensor  # noqa: F401
from . import attention, film, graph, late, transformer  # noqa: F401
from .base import Fusion, FusionInput, build_fusion

__all__ = ["Fusion", "FusionInput", "build_fusion"]
