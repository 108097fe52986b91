"""Every component's parameters, apart from the component: pydantic models and their registries, no torch.

A component is two classes, each with one ``@register`` line under the same name: its parameters here (an
encoder's ``Config`` with the ``kinds`` of column it encodes, a fusion's ``Params``, a task's architecture) and its
module in :mod:`polymodal.encoders`, :mod:`polymodal.fusion` or :mod:`polymodal.tasks`, which names them as its
``Config`` / ``Params``. The config check (:mod:`polymodal.components`) and the config's JSON Schema and example
(:mod:`polymodal.config_schema`) read only these registries, so that a typo in a config is reported in a fraction of
a second, before torch or pandas is imported. ``tests/test_params.py`` checks that both sides name the same
components with the same parameters.
"""

from .encoders import ENCODER_PARAMS, EncoderConfig
from .fusion import FUSION_PARAMS, FusionParams
from .tasks import TASK_PARAMS, TaskParams
from .timeseries import TSCNNConfig, TSGRUConfig, TSPatchTSTConfig  # noqa: F401  (registration)

__all__ = ["ENCODER_PARAMS", "FUSION_PARAMS", "TASK_PARAMS", "EncoderConfig", "FusionParams", "TaskParams"]
