"""A generation (sequence-to-sequence) model as two ONNX graphs, and greedy / beam search over ONNX Runtime.

A generator cannot be one graph: decoding is a loop whose length and hypothesis bookkeeping (beam search) depend on
the tokens produced. So the loop stays in Python — the very :func:`~polymodal.generation.decoding.greedy` and
:func:`~polymodal.generation.decoding.beam_search` the eager model runs — and only the network is exported:

    generator.encoder.onnx  the model's inputs (as ``model.onnx``'s) -> ``keep`` [B, M] (memory slots to attend) and,
                            per decoder layer i, the memory's keys and values ``mem_k.i`` / ``mem_v.i`` [B, H, M, D]
    generator.step.onnx     one token per hypothesis: ``tokens`` [N], ``position`` (scalar), ``keep``, the memory
                            keys/values, and the prefix's cached keys/values ``past_k.i`` / ``past_v.i`` [N, H, T, D]
                            -> ``logprobs`` [N, V] and the cache with this token appended ``present_k.i`` /
                            ``present_v.i`` [N, H, T + 1, D]

Every axis that varies (rows, hypotheses, memory length, prefix length) is dynamic. Beam search reorders the cache
in NumPy between steps, as the eager stepper does in torch.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from ..data.dataset import Batch
from ..data.processors import Processor
from ..errors import ConfigError, ExportError
from ..generation.decoding import Decoded, Specials, beam_search, greedy
from ..generation.model import DecoderLayer, Seq2SeqModel
from .graph import GraphSignature, placeholder_batch, signature_of
from .onnx_graph import OPSET, session, traceable_attention

if TYPE_CHECKING:
    from ..config import DecodingConfig

ENCODER_FILE = "generator.encoder.onnx"
STEP_FILE = "generator.step.onnx"


@dataclass(frozen=True)
class GeneratorSignature:
    """The names of the two graphs' inputs and outputs (``inputs``: the model's graph signature)."""

    inputs: GraphSignature
    layers: int

    @property
    def memory_names(self) -> list[str]:
        return [f"mem_{kv}.{i}" for i in range(self.layers) for kv in ("k", "v")]

    @property
    def past_names(self) -> list[str]:
        return [f"past_{kv}.{i}" for i in range(self.layers) for kv in ("k", "v")]

    @property
    def present_names(self) -> list[str]:
        return [f"present_{kv}.{i}" for i in range(self.layers) for kv in ("k", "v")]


class EncoderGraph(nn.Module):
    """Positional model inputs -> keep mask and every layer's memory keys and values."""

    def __init__(self, model: Seq2SeqModel, signature: GraphSignature):
        super().__init__()
        self.model, self.signature = model, signature

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        k = len(self.signature.inputs)
        inputs = dict(zip(self.signature.inputs, tensors[:k]))
        masks = dict(zip(self.signature.masks, tensors[k:]))
        memory, keep = self.model.memory(self.model.encode(inputs, masks))
        out: list[torch.Tensor] = [keep]
        for layer in cast("list[DecoderLayer]", list(self.model.head.layers)):
            out.extend(layer.memory_kv(memory))
        return tuple(out)


class StepGraph(nn.Module):
    """One decoding step of :class:`~polymodal.generation.model.CachedStepper` with the cache as inputs/outputs."""

    def __init__(self, model: Seq2SeqModel):
        super().__init__()
        self.head = model.head

    def forward(
        self, tokens: torch.Tensor, position: torch.Tensor, keep: torch.Tensor, *kv: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        h = self.head
        layers = cast("list[DecoderLayer]", list(h.layers))
        n = len(layers)
        memory, past = kv[: 2 * n], kv[2 * n :]
        # (the eager stepper slices pos[t : t + 1] with a Python int, which a trace would freeze: gather instead)
        x = h.embed(tokens.view(-1, 1)) * math.sqrt(h.dim) + h.pos.index_select(0, position.view(1))
        mask = keep[:, None, None, :]
        present: list[torch.Tensor] = []
        for i, layer in enumerate(layers):
            cache = {"k": past[2 * i], "v": past[2 * i + 1]}
            x = layer(x, (memory[2 * i], memory[2 * i + 1]), mask, cache)
            present.extend((cache["k"], cache["v"]))
        logp = torch.log_softmax((h.norm(x[:, -1]) @ h.embed.weight.t()).float(), dim=-1)
        return (logp, *present)


def _export(module: nn.Module, args: tuple, inputs: list[str], outputs: list[str], axes: dict, opset: int) -> bytes:
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), traceable_attention():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                buf,  # type: ignore[arg-type]
                dynamo=False,
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
            )
    except Exception as e:  # the exporter raises many types; all mean "this model does not trace"
        raise ExportError(
            f"the generation model could not be exported to ONNX: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
        ) from None
    return buf.getvalue()


def to_onnx_generator(
    model: nn.Module, processors: dict[str, Processor], opset: int = OPSET
) -> tuple[bytes, bytes, GeneratorSignature]:
    """The encoder graph and the decoder-step graph of a generation model (see the module docstring)."""
    if not isinstance(model, Seq2SeqModel):
        raise ExportError(f"{type(model).__name__} is not a generation model")
    model = model.eval()
    inputs = signature_of(processors)
    gsig = GeneratorSignature(inputs, len(model.head.layers))
    example = placeholder_batch(processors)
    enc_axes = inputs.dynamic_axes(example)
    del enc_axes[inputs.output]
    enc_out = ["keep", *gsig.memory_names]
    enc_axes["keep"] = {0: "batch", 1: "memory"}
    enc_axes.update({n: {0: "batch", 2: "memory"} for n in gsig.memory_names})
    encoder = _export(EncoderGraph(model, inputs), inputs.tensors(example), inputs.names, enc_out, enc_axes, opset)

    # the step is traced with a 2-token prefix and 3 hypotheses, so that neither freezes into the graph
    with torch.no_grad():
        keep, *memory = EncoderGraph(model, inputs).eval()(*inputs.tensors(placeholder_batch(processors, 3)))
    heads = cast(DecoderLayer, model.head.layers[0]).heads
    dh = model.head.dim // heads
    past = [torch.randn(3, heads, 2, dh) for _ in gsig.past_names]
    args = (torch.tensor([1, 2, 3]), torch.tensor(2), keep, *memory, *past)
    step_in = ["tokens", "position", "keep", *gsig.memory_names, *gsig.past_names]
    step_out = ["logprobs", *gsig.present_names]
    axes: dict[str, dict[int, str]] = {"tokens": {0: "hyps"}, "keep": {0: "hyps", 1: "memory"}, "logprobs": {0: "hyps"}}
    axes.update({n: {0: "hyps", 2: "memory"} for n in gsig.memory_names})
    axes.update({n: {0: "hyps", 2: "prefix"} for n in gsig.past_names})
    axes.update({n: {0: "hyps", 2: "prefix_plus_1"} for n in gsig.present_names})
    step = _export(StepGraph(model).eval(), args, step_in, step_out, axes, opset)
    return encoder, step, gsig


class OnnxStepper:
    """The :class:`~polymodal.generation.decoding.Stepper` protocol over the step graph: the cache lives in NumPy."""

    device = torch.device("cpu")

    def __init__(self, sess: Any, gsig: GeneratorSignature, keep: np.ndarray, memory: list[np.ndarray]):
        self.sess, self.gsig = sess, gsig
        self.fixed = {"keep": keep, **dict(zip(gsig.memory_names, memory))}
        n, heads, _, dh = memory[0].shape
        self.past = [np.zeros((n, heads, 0, dh), np.float32) for _ in gsig.past_names]
        self.t = 0

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        feed = {
            "tokens": tokens.reshape(-1).cpu().numpy().astype(np.int64),
            "position": np.asarray(self.t, np.int64),
            **self.fixed,
            **dict(zip(self.gsig.past_names, self.past)),
        }
        logp, *self.past = self.sess.run(None, feed)
        self.t += 1
        return torch.from_numpy(logp)

    def reorder(self, index: torch.Tensor) -> None:
        idx = index.cpu().numpy()
        self.past = [p[idx] for p in self.past]


class OnnxGenerator:
    """Greedy / beam-search decoding of collated batches over the two graphs (ONNX Runtime, CPU), with the eager
    model's decoding functions: the same token choices, given the same log-probabilities."""

    def __init__(
        self,
        encoder: bytes | Path,
        step: bytes | Path,
        gsig: GeneratorSignature,
        specials: Specials,
        max_positions: int,
        threads: int | None = None,
    ):
        self.encoder, self.step, self.gsig = session(encoder, threads), session(step, threads), gsig
        self.specials, self.max_positions = specials, max_positions
        self._enc_inputs = {i.name for i in self.encoder.get_inputs()}

    @classmethod
    def for_model(
        cls, model: nn.Module, processors: dict[str, Processor], threads: int | None = None
    ) -> "OnnxGenerator":
        """Export ``model`` in memory and open it (what a backend does for a run directory without the files)."""
        encoder, step, gsig = to_onnx_generator(model, processors)
        head = cast(Seq2SeqModel, model).head
        return cls(encoder, step, gsig, head.specials, head.max_positions, threads)

    def generate(self, batch: Batch, decoding: "DecodingConfig", max_length: int) -> Decoded:
        """What :meth:`Seq2SeqModel.generate` returns for ``batch``, computed by ONNX Runtime."""
        limit = decoding.max_length or max_length
        if limit > self.max_positions:
            raise ConfigError(
                f"decoding.max_length {limit} is more than this model can generate ({self.max_positions} tokens, set "
                "by generation.max_target_tokens at fit time); lower it"
            )
        feed = {k: v for k, v in self.gsig.inputs.feed(batch).items() if k in self._enc_inputs}
        keep, *memory = self.encoder.run(None, feed)
        sp = self.specials
        n = len(keep)
        if decoding.method == "greedy" or decoding.beam_width == 1:
            return greedy(OnnxStepper(self.step, self.gsig, keep, memory), n, sp, limit, decoding.no_repeat_ngram)
        k = decoding.beam_width
        stepper = OnnxStepper(self.step, self.gsig, np.repeat(keep, k, 0), [np.repeat(m, k, 0) for m in memory])
        return beam_search(stepper, n, k, sp, limit, decoding.length_penalty, decoding.no_repeat_ngram)


@dataclass
class TextParity:
    """How the ONNX generator's output compares with the eager model's on the same rows, per decoding method."""

    method: str
    rows: int
    same_text: float  # share of rows whose generated token ids are identical
    max_score_diff: float  # largest difference of the sequence log-probabilities


def generator_parity(
    model: Seq2SeqModel, generator: OnnxGenerator, batches: list[Batch], max_length: int
) -> list[TextParity]:
    """Greedy and beam search (the model's fitted beam width) on ``batches``, eager vs ONNX Runtime."""
    from ..config import DecodingConfig

    out = []
    for method in ("greedy", "beam"):
        decoding = DecodingConfig(method=method)
        same, rows, diff = 0, 0, 0.0
        for b in batches:
            with torch.inference_mode():
                e = model.generate(b.inputs, b.masks, decoding, max_length)
            o = generator.generate(b, decoding, max_length)
            width = max(e.ids.shape[1], o.ids.shape[1])
            pad = model.head.specials.pad
            ei = nn.functional.pad(e.ids, (0, width - e.ids.shape[1]), value=pad)
            oi = nn.functional.pad(o.ids, (0, width - o.ids.shape[1]), value=pad)
            same += int((ei == oi).all(1).sum())
            rows += len(ei)
            diff = max(diff, float((e.scores.float() - o.scores.float()).abs().max()))
        out.append(TextParity(method, rows, same / max(rows, 1), diff))
    return out
