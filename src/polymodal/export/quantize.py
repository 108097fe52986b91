"""int8 quantization of an exported ONNX graph with ONNX Runtime: dynamic (no data) or static (calibration rows).

Dynamic quantization stores int8 weights and quantizes activations on the fly: it needs no data and pays for
MatMul/Gemm-heavy models (text, tabular, fusion MLPs). Static quantization also fixes the activation ranges from
calibration rows, so convolutions run as int8 end to end (QDQ format, per-channel 7-bit weights, the residual Adds
and ReLUs of convolution stacks quantized too: :data:`DEFAULT_STATIC`): it pays for the CNN encoders of images and
audio; benchmarks/int8_profile.py measures where its time goes (docs/DEPLOYMENT.md). Both run ONNX Runtime's
pre-processing first (shape inference, graph optimisation that folds batch norms into convolutions).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ExportError

log = logging.getLogger("polymodal")
QuantMode = Literal["dynamic", "static"]


@dataclass(frozen=True)
class StaticRecipe:
    """How :func:`quantize` quantizes statically (ONNX Runtime's ``quantize_static`` options that matter here)."""

    # The operator types given int8 inputs: the heavy ones; never LayerNorm (per-channel quantization of its 1-D
    # weights is meaningless) nor Gather / Softmax / the GRU (see int8_gate).
    op_types: tuple[str, ...] = ("Conv", "MatMul", "Gemm")
    # Also quantized, but only inside convolution stacks (every non-constant input made by a Conv or another such
    # node): ORT then fuses a residual Add into QLinearAdd and a ReLU into the conv's output range, instead of
    # running them in float between a DequantizeLinear and a QuantizeLinear (benchmarks/int8_profile.py). Not in
    # transformers: a residual Add there feeds LayerNorm, whose input int8 would coarsen.
    conv_block_ops: tuple[str, ...] = ()
    quant_format: Literal["qdq", "qoperator"] = "qdq"
    per_channel: bool = True  # one weight scale per output channel
    # 7-bit weights. x86 CPUs without VNNI (AVX2, AVX-512 before VNNI) multiply u8 x s8 with an int16 accumulation
    # that saturates; on AV-digits that cost 23 accuracy points, with reduce_range none. It is kept on every
    # machine: a model exported on one CPU may run on another.
    reduce_range: bool = True
    # Keep a quantized ReLU as a node (ORT folds it into the QuantizeLinear at load time) rather than deleting it
    # from the file and renaming the conv's output to the ReLU's: the int8 graph then keeps the float graph's
    # tensor names, which the gate's per-layer error needs (int8_gate.node_errors).
    keep_activations: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_STATIC = StaticRecipe(conv_block_ops=("Add", "Relu"))


def outside_conv_blocks(model: bytes, ops: Iterable[str]) -> list[str]:
    """The nodes of types ``ops`` that are not inside a convolution stack: some non-constant input of theirs is not
    made by a Conv or by an ``ops`` node inside a stack (the graph's nodes are in topological order)."""
    import onnx

    kinds = set(ops)
    g = onnx.load_from_string(model).graph
    constant = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    in_stack: set[str] = set()  # tensors made by a Conv or by an ``ops`` node inside a stack
    outside = []
    for n in g.node:
        if n.op_type == "Conv":
            in_stack.update(n.output)
        elif n.op_type in kinds:
            inputs = [i for i in n.input if i and i not in constant]
            if inputs and all(i in in_stack for i in inputs):
                in_stack.update(n.output)
            else:
                outside.append(n.name)
    return outside


def _preprocess(src: Path, dst: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        return dst
    except Exception as e:  # pre-processing is an optimisation; quantization works without it
        log.info("ONNX Runtime quantization pre-processing skipped (%s: %s)", type(e).__name__, e)
        return src


class _Feeds:
    """ONNX Runtime's CalibrationDataReader protocol over a list of input dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]], names: set[str]):
        self._it = iter([{k: v for k, v in f.items() if k in names} for f in feeds])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def quantize(
    model: bytes,
    mode: QuantMode = "dynamic",
    calibration: Iterable[dict[str, np.ndarray]] | None = None,
    exclude: Iterable[str] = (),
    recipe: StaticRecipe = DEFAULT_STATIC,
) -> bytes:
    """int8 weights (and, for ``static``, int8 activations calibrated on ``calibration`` feeds, quantized as
    ``recipe`` says); the nodes named in ``exclude`` stay float32."""
    return quantize_with_reference(model, mode, calibration, exclude, recipe)[0]


def preprocessed(model: bytes) -> bytes:
    """The graph after ONNX Runtime's quantization pre-processing (what :func:`quantize` quantizes): its tensor
    names are the int8 graph's, so intermediate outputs of the two compare one to one."""
    with tempfile.TemporaryDirectory(prefix="polymodal-quant-") as tmp:
        src = Path(tmp) / "fp32.onnx"
        src.write_bytes(model)
        return _preprocess(src, Path(tmp) / "pre.onnx").read_bytes()


def quantize_with_reference(
    model: bytes,
    mode: QuantMode = "dynamic",
    calibration: Iterable[dict[str, np.ndarray]] | None = None,
    exclude: Iterable[str] = (),
    recipe: StaticRecipe = DEFAULT_STATIC,
) -> tuple[bytes, bytes]:
    """The int8 graph and the pre-processed float32 graph it was quantized from."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    with tempfile.TemporaryDirectory(prefix="polymodal-quant-") as tmp:
        src, out = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(model)
        pre = _preprocess(src, Path(tmp) / "pre.onnx")
        try:
            if mode == "dynamic":
                quantize_dynamic(
                    str(pre),
                    str(out),
                    weight_type=QuantType.QInt8,
                    per_channel=False,
                    nodes_to_exclude=list(exclude),
                )
            elif mode == "static":
                feeds = list(calibration or [])
                if not feeds:
                    raise ExportError("static quantization needs calibration rows: pass --calibration TABLE")
                names = {
                    i.name for i in ort.InferenceSession(str(pre), providers=["CPUExecutionProvider"]).get_inputs()
                }
                formats = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
                if recipe.quant_format not in formats:
                    raise ExportError(f"unknown int8 format '{recipe.quant_format}'; choose 'qdq' or 'qoperator'")
                quantize_static(
                    str(pre),
                    str(out),
                    _Feeds(feeds, names),
                    quant_format=formats[recipe.quant_format],
                    op_types_to_quantize=[*recipe.op_types, *recipe.conv_block_ops],
                    per_channel=recipe.per_channel,
                    reduce_range=recipe.reduce_range,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    nodes_to_exclude=[*exclude, *outside_conv_blocks(pre.read_bytes(), recipe.conv_block_ops)],
                    extra_options={"QDQKeepRemovableActivations": recipe.keep_activations},
                )
            else:
                raise ExportError(f"unknown quantization mode '{mode}'; choose 'dynamic' or 'static'")
        except ExportError:
            raise
        except Exception as e:
            raise ExportError(f"int8 quantization ({mode}) failed: {type(e).__name__}: {e}") from None
        return out.read_bytes(), pre.read_bytes()
