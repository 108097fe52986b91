"""Backends of generation (sequence-to-sequence) models: eager torch, or ONNX Runtime on the encoder + decoder-step
graphs written by ``polymodal export`` (see :mod:`polymodal.export.generation`).

Their ``run`` returns the task's :class:`~polymodal.tasks.generation.Generated` (token ids, scores, lengths), decoded
with the task's current decoding options (``FittedPipeline.decoding`` changes them for a block), so that
``Predictor.load(dir, backend="onnx")``, ``predict``/``evaluate`` and ``POST /generate`` work the same on both.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
from fastapi import FastAPI, Query, Request
from pydantic import BaseModel, Field

from ..data.dataset import Batch, Collator, Prepared
from ..errors import ConfigError
from ..registry import Registry, register
from ..tasks.generation import Generated, GenerationTask
from .backends import Backend
from .payload import RequestError
from .schemas import ErrorResponse, ServeConfig
from .stream import TimedOut

if TYPE_CHECKING:
    from ..pipeline import FittedPipeline

log = logging.getLogger("polymodal")
GENERATION_BACKENDS: Registry[Any] = Registry("backend for generation models")


class GenerationBackend(Backend):
    """Decodes batches of a generation model into :class:`Generated` rows."""

    @property
    def task(self) -> GenerationTask:
        return cast(GenerationTask, self.pipeline.task)

    def predict(self, batches: Iterable[Batch]) -> Any:  # Generated
        return self.task.collect_outputs([cast(Generated, self.run(b)) for b in batches])


@register(GENERATION_BACKENDS, "torch")
class TorchGenerationBackend(GenerationBackend):
    """The eager model's own ``generate``."""

    def __init__(self, pipeline: "FittedPipeline", source: Path | None = None, threads: int | None = None):
        super().__init__(pipeline, source)
        self.model = pipeline.model.eval()

    def run(self, batch: Batch) -> Any:  # Generated
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            return self.task.predict_batch(self.model, batch.to(device))


@register(GENERATION_BACKENDS, "onnx")
class OnnxGenerationBackend(GenerationBackend):
    """ONNX Runtime on ``generator.encoder.onnx`` + ``generator.step.onnx`` of the source directory (exported in
    memory at load time when it has none); greedy and beam search are the eager model's functions."""

    def __init__(self, pipeline: "FittedPipeline", source: Path | None = None, threads: int | None = None):
        from ..export.generation import ENCODER_FILE, STEP_FILE, GeneratorSignature, OnnxGenerator
        from ..export.graph import signature_of
        from ..generation.model import Seq2SeqModel

        super().__init__(pipeline, source)
        model = cast(Seq2SeqModel, pipeline.model)
        files = [None if source is None else Path(source) / f for f in (ENCODER_FILE, STEP_FILE)]
        if all(f is not None and f.is_file() for f in files):
            gsig = GeneratorSignature(signature_of(pipeline.processors), len(model.head.layers))
            self.generator = OnnxGenerator(
                cast(Path, files[0]), cast(Path, files[1]), gsig, model.head.specials, model.head.max_positions, threads
            )
        else:
            log.info("onnx: no %s and %s%s; exporting the model in memory", ENCODER_FILE, STEP_FILE,
                     f" in {source}" if source is not None else "")  # fmt: skip
            self.generator = OnnxGenerator.for_model(model, pipeline.processors, threads)

    def run(self, batch: Batch) -> Any:  # Generated
        task = self.task
        d = self.generator.generate(batch, task.decoding, task.max_target_tokens)
        return Generated(d.ids.numpy(), d.scores.float().numpy(), d.lengths.numpy())


def load_generation_backend(
    name: str, pipeline: "FittedPipeline", source: str | Path | None = None, threads: int | None = None
) -> GenerationBackend:
    """Build the generation backend registered as ``name`` ("torch", "onnx")."""
    return cast(
        GenerationBackend, GENERATION_BACKENDS.get(name)(pipeline, None if source is None else Path(source), threads)
    )


class GeneratedText(BaseModel):
    text: str = Field(..., description="the generated text")
    log_prob: float = Field(..., description="its log-probability under the model (end token included)")
    tokens: int = Field(..., description="tokens generated, the end token included")


class GenerateResponse(BaseModel):
    generations: list[GeneratedText]


def add_generate_route(
    app: FastAPI,
    pipeline: "FittedPipeline",
    backend: Backend,
    config: ServeConfig,
    decode_rows: Callable[[list[dict[str, Any]]], Awaitable[Prepared]],
    read_rows: Callable[[Request], Awaitable[list[dict[str, Any]]]],
) -> None:
    """``POST /generate`` on ``app``: rows as for ``/predict`` (JSON or one multipart row), decoding options as
    query parameters (``method``, ``beam_width``, ``max_length``, ``length_penalty``, ``no_repeat_ngram``; the
    fitted ones by default). Requests are decoded in the worker pool and generated one request at a time in a
    worker thread (decoding options belong to the request, so requests are not micro-batched together)."""
    from ..config import DecodingConfig

    lock = asyncio.Lock()
    procs = pipeline.processors
    task = cast(GenerationTask, pipeline.task)
    fields = set(DecodingConfig.model_fields)

    def run(prepared: Prepared, decoding: dict[str, Any]) -> Generated:
        with pipeline.decoding(decoding):
            batch = Collator(prepared, procs, False, torch.long)(list(range(len(prepared))))
            return cast(Generated, backend.run(batch))

    responses: dict[int | str, dict[str, Any]] = {
        s: {"model": ErrorResponse} for s in (400, 401, 408, 413, 415, 422, 429, 503, 504)
    }

    @app.post("/generate", response_model=GenerateResponse, responses=responses)
    async def generate(
        request: Request,
        method: Literal["greedy", "beam"] | None = Query(None, description="greedy or beam search (default: fitted)"),
        beam_width: int | None = Query(None, ge=1, le=64, description="hypotheses kept per row (beam search)"),
        max_length: int | None = Query(None, ge=1, description="tokens generated at most"),
        length_penalty: float | None = Query(None, ge=0, description="beam ranking: score / length ** this"),
        no_repeat_ngram: int | None = Query(None, ge=0, description="never repeat an n-gram of this size"),
    ) -> dict[str, Any]:
        """Generate text for rows sent as for ``/predict``; each answer is the text, its log-probability and its
        token count, in the rows' order."""
        given = {
            "method": method,
            "beam_width": beam_width,
            "max_length": max_length,
            "length_penalty": length_penalty,
            "no_repeat_ngram": no_repeat_ngram,
        }
        decoding = {k: v for k, v in given.items() if v is not None and k in fields}
        rows = await read_rows(request)
        try:
            async with asyncio.timeout(config.request_timeout_s):
                prepared = await decode_rows(rows)
                async with lock:
                    out = await asyncio.to_thread(run, prepared, decoding)
        except TimeoutError:
            raise TimedOut(config.request_timeout_s) from None
        except ConfigError as e:  # decoding options the model cannot honour (max_length past its positions)
            raise RequestError(422, str(e)) from None
        texts = task.postprocess(out)
        return {
            "generations": [
                {"text": str(texts[i]), "log_prob": float(out.scores[i]), "tokens": int(out.lengths[i])}
                for i in range(len(texts))
            ]
        }
