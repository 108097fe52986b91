"""What the config check knows of each task before torch is imported, registered in :data:`TASK_PARAMS` by
problem type. A task's settings are the config's ``task`` section (:class:`polymodal.config.TaskConfig`)."""

from __future__ import annotations

from typing import ClassVar

from ..registry import Registry, register


class TaskParams:
    """A task as the config check sees it: how its network is assembled from the encoders, ``"fused"`` (fusion →
    head: the ``fusion`` section is used and checked) or ``"seq2seq"`` (token memory → decoder: it is ignored)."""

    architecture: ClassVar[str] = "fused"


TASK_PARAMS: Registry[TaskParams] = Registry("task")


@register(TASK_PARAMS, "binary")
class BinaryParams(TaskParams):
    """Two classes."""


@register(TASK_PARAMS, "multiclass")
class MulticlassParams(TaskParams):
    """One class of several."""


@register(TASK_PARAMS, "multilabel")
class MultilabelParams(TaskParams):
    """Any number of tags per row ('a|b' or a JSON list): one sigmoid output per tag, a decision threshold per tag
    tuned on validation."""


@register(TASK_PARAMS, "regression")
class RegressionParams(TaskParams):
    """A number."""


@register(TASK_PARAMS, "generation")
class GenerationParams(TaskParams):
    """Text written token by token (captions, free-form answers)."""

    architecture = "seq2seq"


@register(TASK_PARAMS, "multitask")
class MultitaskParams(TaskParams):
    """Several targets in one model (the label is a list of columns): one head and loss per target, each binary,
    multiclass or regression (task.targets sets each one's problem type and loss weight)."""


@register(TASK_PARAMS, "retrieval")
class RetrievalParams(TaskParams):
    """Cross-modal retrieval: a query tower and a target tower (task.retrieval.query / target columns) trained with
    a symmetric InfoNCE loss; embed rows, search a collection for each query's top-K targets."""

    architecture = "two_tower"


@register(TASK_PARAMS, "reconstruction")
class ReconstructionParams(TaskParams):
    """An autoencoder without a label: encoders, fusion, a bottleneck (task.reconstruction) and a decoder per
    modality; predict gives each row's anomaly score (and one per modality) from its reconstruction errors."""

    architecture = "autoencoder"


@register(TASK_PARAMS, "pretrain")
class PretrainParams(TaskParams):
    """Self-supervised pre-training on unlabelled rows (`polymodal pretrain`): every modality's encoder and a
    projection, trained with cross-modal InfoNCE between a row's modalities plus masked-modality prediction; a later
    fit starts from these encoders (training.init / --init)."""

    architecture = "crossmodal"
