"""polymodal: multimodal machine learning from a table.

Names are imported lazily (PEP 562) so that ``polymodal --help`` does not pay for importing torch and Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .threads import quiet_openmp
from .version import __version__

# Idle OpenMP threads sleep instead of spinning (polymodal.threads): only when torch is not imported yet, since the
# OpenMP runtime reads the environment once, as torch loads it; a user's own OMP_WAIT_POLICY / GOMP_SPINCOUNT is kept.
quiet_openmp()

_EXPORTS = {
    "Predictor": "polymodal.api",
    "compare": "polymodal.evaluation.compare",
    "report": "polymodal.reporting",
    "PolymodalConfig": "polymodal.config",
    "PolymodalError": "polymodal.errors",
    "DataError": "polymodal.errors",
    "SchemaError": "polymodal.errors",
    "ConfigError": "polymodal.errors",
}
__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .api import Predictor
    from .config import PolymodalConfig
    from .errors import ConfigError, DataError, PolymodalError, SchemaError
    from .evaluation.compare import compare
    from .reporting import report


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'polymodal' has no attribute {name!r}")
