"""Tasks: the head, the loss, target encoding, metrics and post-processing. Importing registers them."""

from . import (  # noqa: F401  (registration side effects)
    classification,
    generation,
    multilabel,
    multitask,
    pretrain,
    reconstruction,
    regression,
    retrieval,
)
from .base import Task, build_task

__all__ = ["Task", "build_task"]
