"""Weighted ensembles of networks and classical members over the same decoded batch.

:class:`EnsembleModel` is an ``nn.Module`` with the network's ``forward(inputs, masks)``, so a run whose config has an
``ensemble`` section predicts, evaluates, exports, serves and explains (by occlusion) like one network. Importing this
package registers its builder as the "ensemble" architecture, which :func:`polymodal.model.build_model` uses when the
config has that section. Fitting one (training the members, greedy selection) is :mod:`polymodal.selection`.
"""

from .model import COMBINERS, EnsembleModel, build_ensemble, combine, is_ensemble, member_modalities
from .outputs import member_metrics, member_outputs, outputs_of

__all__ = [
    "COMBINERS",
    "EnsembleModel",
    "build_ensemble",
    "combine",
    "is_ensemble",
    "member_metrics",
    "member_modalities",
    "member_outputs",
    "outputs_of",
]
