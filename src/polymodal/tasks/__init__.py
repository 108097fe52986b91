"""Tasks: the head, the loss, target encoding, metrics and post-processing. Importing registers them."""

from . import classification, generation, multilabel, multitask, pretrain, regression, retrieval  # noqa: F401  (registration side effects)
from .base import Task, build_task

__all__ = ["Task", "build_task"]
