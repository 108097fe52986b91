"""Members of an ensemble: models over decoded batches that are not the fused network (classical learners).

Every member is a ``torch.nn.Module`` whose ``forward(inputs, masks)`` takes the batch dicts the network takes and
returns the task's outputs (class logits / standardised regression values), so an ensemble of members and networks
predicts, exports, serves and explains like one network. Importing this package registers the members.
"""

from . import gbm, linear, rocket  # noqa: F401  (registers the classical members)
from .base import MEMBERS, Member
from .classical import ClassicalMember
from .gbm import GBMMember, GBMTabularMember
from .linear import LinearMember, LinearTextMember
from .rocket import RocketMember

__all__ = [
    "MEMBERS",
    "ClassicalMember",
    "GBMMember",
    "GBMTabularMember",
    "LinearMember",
    "LinearTextMember",
    "Member",
    "RocketMember",
]
