"""The fitted model as one graph over named tensors, for export and for the exported backends.

The graph starts where preprocessing ends: its inputs are the :class:`~polymodal.data.dataset.Batch` input keys
(``image``, ``tabular.numeric``, ...) followed by one presence mask per modality (``mask.<modality>``); its one output
is the head's raw outputs. Decoding and collating stay in Python and are the very code the eager path runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.dataset import Batch
from ..data.processors import Processor
from ..errors import ExportError

MASK_PREFIX = "mask."
OUTPUT = "outputs"


@dataclass(frozen=True)
class GraphSignature:
    """The graph's input names in order: ``inputs`` (Batch keys) then one mask per name in ``masks``."""

    inputs: tuple[str, ...]
    masks: tuple[str, ...]
    output: str = OUTPUT

    @property
    def names(self) -> list[str]:
        return [*self.inputs, *(MASK_PREFIX + m for m in self.masks)]

    def tensors(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        missing = [k for k in self.inputs if k not in batch.inputs]
        if missing:
            raise ExportError(
                f"the batch lacks the graph input(s) {', '.join(missing)}; the processors do not match "
                "the exported model (export it again from this run directory)"
            )
        return (*(batch.inputs[k] for k in self.inputs), *(batch.masks[m] for m in self.masks))

    def feed(self, batch: Batch) -> dict[str, np.ndarray]:
        """The batch as ONNX Runtime inputs, by name."""
        return {n: t.detach().cpu().numpy() for n, t in zip(self.names, self.tensors(batch))}

    def dynamic_axes(self, example: Batch) -> dict[str, dict[int, str]]:
        """Every dimension of every input is declared dynamic: dim 0 is the shared batch size; the others
        (text length, ...) are free. The preprocessing produces the sizes the model was built for, and declaring a
        fixed size dynamic costs nothing, whereas a variable size declared fixed breaks at run time; this way no
        processor has to declare which of its sizes vary."""
        axes: dict[str, dict[int, str]] = {}
        for name, t in zip(self.names, self.tensors(example)):
            axes[name] = {0: "batch", **{d: f"{name}_dim{d}" for d in range(1, t.dim())}}
        axes[self.output] = {0: "batch"}
        return axes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GraphSignature":
        return cls(tuple(d["inputs"]), tuple(d["masks"]), d.get("output", OUTPUT))


def placeholder_batch(processors: dict[str, Processor], n: int = 2) -> Batch:
    """A batch of ``n`` rows built by the processors' own collate from absent items (exact keys, dtypes and
    shapes). Masks alternate present/absent so that no trace can specialise on all-present or all-absent rows;
    length-1 sequence dimensions of integer inputs (an all-absent text collates to width 1) are widened to 3 so that
    no trace can specialise on a size of 1."""
    inputs: dict[str, torch.Tensor] = {}
    for p in processors.values():
        inputs.update(p.collate([None] * n, False))
    for k, t in inputs.items():
        if not t.is_floating_point() and t.dim() >= 2 and t.shape[1] == 1:
            inputs[k] = t.repeat(1, 3, *([1] * (t.dim() - 2)))
    masks = {m: torch.tensor([i % 2 == 0 for i in range(n)], dtype=torch.bool) for m in processors}
    return Batch(inputs, masks)


def signature_of(processors: dict[str, Processor]) -> GraphSignature:
    """The graph signature of a model fitted with ``processors`` (inputs in the order collate produces them)."""
    example = placeholder_batch(processors, 1)
    names = list(example.inputs) + [MASK_PREFIX + m for m in processors]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ExportError(
            f"input name(s) {', '.join(dupes)} would appear twice in the exported graph; rename the "
            f"column(s) so that no modality is called 'mask'"
        )
    return GraphSignature(tuple(example.inputs), tuple(processors))


class GraphModule(nn.Module):
    """``model(inputs, masks)`` with positional tensors in the signature's order (what exporters trace)."""

    def __init__(self, model: nn.Module, signature: GraphSignature):
        super().__init__()
        self.model = model
        self.signature = signature

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        k = len(self.signature.inputs)
        inputs = dict(zip(self.signature.inputs, tensors[:k]))
        masks = dict(zip(self.signature.masks, tensors[k:]))
        return self.model(inputs, masks)
