"""int8 quantization that never silently breaks a model: sensitive layers kept float32, and a gate on agreement.

1. Boundary layers stay float32 from the start: the first quantizable layer after each graph input (the first
   convolution reads raw pixels or the spectrogram, whose range one int8 scale fits badly) and the last ones before
   the output (the head: its error is the prediction's error). Gather, LayerNorm, Softmax and the GRU are never
   quantized (Conv, MatMul, Gemm and the Adds and ReLUs of conv stacks are, see quantize.py).
2. The int8 graph's predictions are compared with the eager model's on the calibration rows. Below
   ``min_agreement``, each quantized layer's *added* error is measured (the relative error of its output against
   the float32 graph's same tensor, minus that of its input: what this layer contributes), the worst ones are kept
   float32 too, and the graph is quantized again, for a few rounds.
3. Still below: :class:`Int8GateError` names the layers and their added error, and no int8 file is written
   (unless the caller allows a degraded graph).

Agreement: the share of rows with the same predicted class (classification); for regression, the share of rows
whose outputs are all within 5% of the eager outputs' standard deviation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import ExportError
from .quantize import QuantMode, quantize_with_reference

log = logging.getLogger("polymodal")
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
REGRESSION_TOLERANCE = 0.05  # of the eager outputs' standard deviation


class Int8GateError(ExportError):
    """The int8 graph agrees with the eager model on too few rows; no int8 file was written."""

    def __init__(self, message: str, gate: Int8Gate):
        super().__init__(message)
        self.gate = gate


@dataclass
class NodeError:
    """How far one quantized layer's output is from the float32 graph's (relative L2 error), and how much of it
    the layer adds to the error its input already had."""

    node: str
    op: str
    error: float
    added: float


@dataclass
class Int8Gate:
    """The outcome of a gated quantization."""

    agreement: float
    min_agreement: float
    rows: int
    passed: bool
    rounds: int
    kept_float: list[str] = field(default_factory=list)  # layers left float32 (boundaries + culprits)
    culprits: list[NodeError] = field(default_factory=list)  # the worst layers of the last int8 graph measured

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def agreement(eager: np.ndarray, other: np.ndarray, classification: bool) -> float:
    """Share of rows on which ``other`` predicts as ``eager`` does (see the module docstring)."""
    if classification and eager.ndim == 2 and eager.shape[1] > 1:
        return float((eager.argmax(1) == other.argmax(1)).mean())
    e, o = eager.reshape(len(eager), -1), other.reshape(len(other), -1)
    tol = REGRESSION_TOLERANCE * float(e.std()) + 1e-6
    return float((np.abs(e - o).max(1) <= tol).mean())


def _graph(model: bytes) -> Any:
    import onnx

    return onnx.load_from_string(model)


def quantizable(model: bytes) -> list[tuple[str, str]]:
    """``(name, op type)`` of the layers static/dynamic quantization may quantize, in graph order."""
    return [(n.name, n.op_type) for n in _graph(model).graph.node if n.op_type in QUANTIZED_OPS]


def boundary_layers(model: bytes) -> list[str]:
    """The quantizable layers that read a graph input, or write the output, through no other quantizable layer."""
    g = _graph(model).graph
    producers = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {i.name for i in g.initializer}

    def reach(starts: Iterable[Any], step: Callable[[Any], Iterable[Any]]) -> set[str]:
        found, seen, todo = set(), set(), list(starts)
        while todo:
            n = todo.pop()
            if n.name in seen:
                continue
            seen.add(n.name)
            if n.op_type in QUANTIZED_OPS:
                found.add(n.name)
                continue  # stop at the first quantizable layer on this path
            todo.extend(step(n))
        return found

    inputs = [c for i in g.input if i.name not in inits for c in consumers.get(i.name, [])]
    first = reach(inputs, lambda n: [c for o in n.output for c in consumers.get(o, [])])
    outputs = [producers[o.name] for o in g.output if o.name in producers]
    last = reach(outputs, lambda n: [producers[i] for i in n.input if i in producers])
    order = [name for name, _ in quantizable(model)]
    return [name for name in order if name in first | last]


def _with_outputs(model: bytes, names: list[str]) -> bytes:
    """The graph with extra outputs: intermediate tensors, to compare two graphs layer by layer."""
    import onnx

    m = onnx.load_from_string(model)
    present = {o.name for o in m.graph.output}
    for name in names:
        if name not in present:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
            present.add(name)
    return m.SerializeToString()


def node_errors(
    fp32: bytes, int8: bytes, feeds: list[dict[str, np.ndarray]], skip: Iterable[str] = ()
) -> list[NodeError]:
    """Each quantized layer's relative output error between ``fp32`` (the pre-processed graph) and ``int8`` on
    ``feeds``, worst added error first. The error is the mean over rows of each row's relative L2 error (a row with
    a large range would dominate one global norm, and it is rows that get predictions); it is accumulated batch by
    batch, so no activation is kept."""
    from .onnx_graph import session

    g = _graph(fp32).graph
    nodes = [n for n in g.node if n.op_type in QUANTIZED_OPS and n.name not in set(skip)]
    tensors = sorted({t for n in nodes for t in (n.input[0], n.output[0])})
    ref, q = session(_with_outputs(fp32, tensors)), session(_with_outputs(int8, tensors))
    wanted = {i.name for i in ref.get_inputs()}
    total = dict.fromkeys(tensors, 0.0)
    rows = 0
    for feed in feeds:
        f = {k: v for k, v in feed.items() if k in wanted}
        a, b = ref.run(tensors, f), q.run(tensors, f)
        for t, x, y in zip(tensors, a, b):
            x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
            x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
            d, n = np.linalg.norm(x - y, axis=1), np.linalg.norm(x, axis=1)
            total[t] += float(np.where(n > 0, d / np.maximum(n, 1e-30), np.minimum(d, 1.0)).sum())
        rows += len(next(iter(f.values()))) if f else 0
    rel = {t: total[t] / max(rows, 1) for t in tensors}
    out = [NodeError(n.name, n.op_type, rel[n.output[0]], rel[n.output[0]] - rel[n.input[0]]) for n in nodes]
    return sorted(out, key=lambda e: -e.added)


def gated_quantize(
    fp32: bytes,
    mode: QuantMode,
    calibration: list[dict[str, np.ndarray]] | None,
    gate_feeds: list[dict[str, np.ndarray]],
    run: Callable[[bytes, list[dict[str, np.ndarray]]], np.ndarray],
    eager: np.ndarray,
    classification: bool,
    min_agreement: float = 0.99,
    rounds: int = 4,
    per_round: int = 2,
) -> tuple[bytes, Int8Gate]:
    """Quantize ``fp32`` keeping boundary layers (then the worst culprits) float32 until the int8 graph agrees with
    ``eager`` (the eager outputs on ``gate_feeds``, in order) on at least ``min_agreement`` of the rows. Returns the
    last int8 graph and the gate; ``gate.passed`` says whether it met the threshold."""
    kept = boundary_layers(fp32)
    culprits: list[NodeError] = []
    for attempt in range(1, rounds + 1):
        int8, pre = quantize_with_reference(fp32, mode, calibration, exclude=kept)
        agree = agreement(eager, run(int8, gate_feeds), classification)
        log.info("int8 round %d: %.1f%% agreement with %d layers float32", attempt, 100 * agree, len(kept))
        errors = node_errors(pre, int8, gate_feeds[:2], skip=kept)
        culprits = [e for e in errors if e.added > 0][:5]
        if agree >= min_agreement or not culprits or attempt == rounds:
            gate = Int8Gate(agree, min_agreement, len(eager), agree >= min_agreement, attempt, kept, culprits)
            return int8, gate
        kept = kept + [e.node for e in culprits[:per_round]]
    raise AssertionError("unreachable: the last round returns")


def describe_failure(gate: Int8Gate) -> str:
    worst = "; ".join(f"{e.node} ({e.op}, adds {e.added:.1%} relative error)" for e in gate.culprits[:5])
    return (
        f"the int8 graph agrees with the eager model on {gate.agreement:.1%} of {gate.rows} rows checked, below "
        f"--min-agreement {gate.min_agreement:.1%}, after {gate.rounds} rounds keeping {len(gate.kept_float)} "
        f"layers float32; the layers adding the most error: {worst or 'none measured'}. Nothing was written: export "
        "without --quantize and serve the float32 model.onnx, or pass --allow-degraded to write the int8 graph anyway"
    )
