"""polymodal: multimodal machine learning from a table."""
__version__ = "0.1.0"

from .api import Predictor  # noqa: E402
from .config import PolymodalConfig  # noqa: E402
from .errors import ConfigError, DataError, PolymodalError, SchemaError  # noqa: E402

__all__ = ["Predictor", "PolymodalConfig", "PolymodalError", "DataError", "SchemaError", "ConfigError",
           "__version__"]
