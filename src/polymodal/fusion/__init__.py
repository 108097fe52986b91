"""Fusion methods: ``dict[str, Encoded] → Tensor[B, D]``. Importing this package registers them."""

from . import (  # noqa: F401  # noqa: F401
    attention,
    dynamic,
    early,
    film,
    gating,
    graph,
    late,
    tensor,
    transformer,
)
from .base import Fusion, FusionInput, build_fusion

__all__ = ["Fusion", "FusionInput", "build_fusion"]
