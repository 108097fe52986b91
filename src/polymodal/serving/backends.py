"""Where a fitted model runs: eager PyTorch, or ONNX Runtime on the exported graph (fp32 or int8).

Each backend takes a collated :class:`~polymodal.data.dataset.Batch` (the same preprocessing for all of them) and
returns the head's raw outputs; the task turns those into predictions. A new backend is one class and one
``@register`` line, and then works in ``Predictor.load(..., backend=)``, ``polymodal serve --backend`` and the
benchmarks.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from ..data.dataset import Batch
from ..errors import ExportError
from ..export.graph import GraphSignature, signature_of
from ..registry import Registry, register

if TYPE_CHECKING:
    from ..pipeline import FittedPipeline

log = logging.getLogger("polymodal")
BACKENDS: Registry[Any] = Registry("backend")


class Backend(ABC):
    """Runs batches of a fitted pipeline's network. ``source`` is the run or export directory it was loaded from
    (None for a pipeline in memory)."""

    registry_name: ClassVar[str]  # set by @register

    def __init__(self, pipeline: "FittedPipeline", source: Path | None = None, threads: int | None = None):
        self.pipeline = pipeline
        self.source = source

    @abstractmethod
    def run(self, batch: Batch) -> np.ndarray:
        """Raw head outputs [B, n_outputs] (float32) for one collated batch."""

    def predict(self, batches: Iterable[Batch]) -> np.ndarray:
        outs = [self.run(b) for b in batches]
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


@register(BACKENDS, "torch")
class TorchBackend(Backend):
    """The eager PyTorch model (what ``fit`` trained)."""

    def __init__(self, pipeline: "FittedPipeline", source: Path | None = None, threads: int | None = None):
        super().__init__(pipeline, source)
        self.model = pipeline.model.eval()

    def run(self, batch: Batch) -> np.ndarray:
        device = next(self.model.parameters()).device
        batch = batch.to(device)
        with torch.inference_mode():
            return self.model(batch.inputs, batch.masks).float().cpu().numpy()


class OnnxBackend(Backend):
    """ONNX Runtime on ``file`` in the source directory (written by ``polymodal export``); when the directory has
    no such file the graph is exported (and quantized) in memory at load time, which takes seconds."""

    file: ClassVar[str]
    build: ClassVar["staticmethod[[FittedPipeline], bytes]"]
    hint: ClassVar[str] = ""  # said when the file is missing and the graph is built in memory

    def __init__(self, pipeline: "FittedPipeline", source: Path | None = None, threads: int | None = None):
        from ..export.onnx_graph import session

        super().__init__(pipeline, source)
        self.signature: GraphSignature = signature_of(pipeline.processors)
        path = None if source is None else Path(source) / self.file
        if path is not None and path.is_file():
            self.session = session(path, threads)
        else:
            log.info(
                "%s: no %s%s; exporting the model in memory%s",
                self.registry_name,
                self.file,
                f" in {source}" if source is not None else "",
                self.hint,
            )
            self.session = session(type(self).build(pipeline), threads)
        declared = [i.name for i in self.session.get_inputs()]
        unknown = sorted(set(declared) - set(self.signature.names))
        if unknown:
            raise ExportError(
                f"{path} expects input(s) {', '.join(unknown)} that this model's preprocessing does not "
                "produce: it was exported from another model; export it again"
            )
        self._inputs = set(declared)  # the exporter drops inputs the graph never reads

    def run(self, batch: Batch) -> np.ndarray:
        feed = {k: v for k, v in self.signature.feed(batch).items() if k in self._inputs}
        return self.session.run([self.signature.output], feed)[0]


def _onnx_fp32(pipeline: "FittedPipeline") -> bytes:
    from ..export.onnx_graph import to_onnx

    return to_onnx(pipeline.model, pipeline.processors)[0]


def _onnx_int8(pipeline: "FittedPipeline") -> bytes:
    from ..export.quantize import quantize

    return quantize(_onnx_fp32(pipeline), "dynamic")


@register(BACKENDS, "onnx")
class OnnxFp32Backend(OnnxBackend):
    """The exported graph in float32: same outputs as ``torch`` to ~1e-5."""

    file = "model.onnx"
    build = staticmethod(_onnx_fp32)


@register(BACKENDS, "onnx-int8")
class OnnxInt8Backend(OnnxBackend):
    """The int8-quantized graph (``polymodal export --quantize int8``; dynamic quantization when built in memory)."""

    file = "model.int8.onnx"
    build = staticmethod(_onnx_int8)
    hint = (
        " with dynamic int8 quantization (slower than float32 for CNN encoders; `polymodal export RUN --quantize "
        "int8 --calibration TABLE` writes a statically quantized model.int8.onnx, which is faster)"
    )


def load_backend(
    name: str, pipeline: "FittedPipeline", source: str | Path | None = None, threads: int | None = None
) -> Backend:
    """Build the backend registered as ``name`` ("torch", "onnx", "onnx-int8") for a fitted pipeline (a generation
    model gets its own kind of backend: :mod:`polymodal.serving.generation`)."""
    from ..tasks.generation import GenerationTask

    if isinstance(pipeline.task, GenerationTask):
        from .generation import load_generation_backend

        return load_generation_backend(name, pipeline, source, threads)
    return BACKENDS.get(name)(pipeline, None if source is None else Path(source), threads)
