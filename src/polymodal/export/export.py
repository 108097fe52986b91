"""``polymodal export``: a run directory plus the whole model as one ONNX (or TorchScript) graph, checked for parity.

The export directory is a complete run directory (so ``Predictor.load(dir, backend="onnx")`` and ``polymodal serve``
use it as they are) with these files added:

    model.onnx        the model after preprocessing (encoders + fusion + head), dynamic batch size
    model.int8.onnx   with ``quantize="int8"``
    model.pt          with ``format="torchscript"`` (a traced module, for libtorch)
    export.json       the graph's input names, the files, and their measured difference from the eager model

It is written to a temporary sibling and renamed when complete: an interrupted export leaves nothing behind.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from ..data.dataset import Batch, make_loader, prepare
from ..data.processors import LoadContext, Processor
from ..data.readers import read_table
from ..errors import ExportError
from ..io import atomic_dir
from ..rundir import check_replaceable, verify, write_manifest
from ..version import __version__
from .graph import GraphSignature, placeholder_batch
from .int8_gate import Int8Gate, Int8GateError, describe_failure, gated_quantize
from .onnx_graph import OPSET, session, to_onnx, to_torchscript

if TYPE_CHECKING:
    from ..pipeline import FittedPipeline

log = logging.getLogger("polymodal")
EXPORT_FILES = (
    "model.onnx",
    "model.int8.onnx",
    "model.pt",
    "export.json",
    "generator.encoder.onnx",
    "generator.step.onnx",
)


class ExportConfig(BaseModel):
    """What ``polymodal export`` writes."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["onnx", "torchscript"] = "onnx"
    quantize: Literal["none", "int8"] = "none"
    quantize_mode: Literal["auto", "dynamic", "static"] = Field(
        "auto", description="auto: static when a calibration table is given, else dynamic"
    )
    calibration_rows: int = Field(256, ge=1, description="rows of the table used to calibrate static quantization")
    parity_rows: int = Field(64, ge=1, description="rows the exported outputs are compared with eager ones on")
    opset: int = Field(OPSET, ge=13, description="ONNX opset of the exported graph")
    min_agreement: float = Field(
        0.99,
        ge=0.0,
        le=1.0,
        description="int8: share of calibration rows on which the int8 graph must predict as the eager model does; "
        "below it no int8 file is written",
    )
    allow_degraded: bool = Field(
        False, description="int8: write the int8 graph even when it is below min_agreement (with a warning)"
    )
    int8_rounds: int = Field(
        4, ge=1, le=20, description="int8: quantization attempts, each keeping the worst layers of the last float32"
    )


@dataclass
class Parity:
    """How far a graph's outputs are from the eager model's on the same collated rows."""

    max_abs_diff: float
    rows: int
    agreement: float | None = None  # classification: share of rows with the same predicted class


@dataclass
class ExportResult:
    out: Path
    format: str
    files: dict[str, str]
    signature: GraphSignature
    parity: dict[str, Parity]
    parity_inputs: str  # "table rows" or "random inputs"
    quantization: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    int8_gate: Int8Gate | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "files": self.files,
            "signature": self.signature.to_dict(),
            "parity": {k: asdict(v) for k, v in self.parity.items()},
            "parity_inputs": self.parity_inputs,
            "quantization": self.quantization,
            "versions": self.versions,
            "int8_gate": None if self.int8_gate is None else self.int8_gate.to_dict(),
        }


def table_batches(
    predictor: "FittedPipeline",
    data: Any,
    rows: int,
    data_root: str | Path | None = None,
    batch_size: int = 32,
    seed: int = 0,
) -> list[Batch]:
    """Up to ``rows`` rows of a table (a random sample when it has more), decoded and collated as for prediction;
    rows with bad cells are skipped."""
    table = read_table(data, data_root if data_root is not None else predictor.config.data_root)
    frame = table.frame
    if len(frame) > rows:
        frame = frame.sample(rows, random_state=seed)
    prepared = prepare(
        frame,
        predictor.processors,
        LoadContext(table.root, predictor.config.limits),
        "skip",
        progress=False,
        quiet=True,
    )
    if len(prepared) == 0:
        raise ExportError("no usable rows in the calibration/parity table")
    return list(make_loader(prepared, predictor.processors, batch_size, False))


def random_batches(processors: dict[str, Processor], rows: int, seed: int = 0) -> list[Batch]:
    """Stand-in inputs when no table is given: random floats and presence masks; integer inputs (token ids,
    category codes) stay 0/1, which are valid for every vocabulary (padding/unknown, missing/unknown)."""
    g = torch.Generator().manual_seed(seed)
    b = placeholder_batch(processors, rows)
    inputs = {
        k: torch.randn(t.shape, generator=g)
        if t.is_floating_point()
        else torch.randint(0, 2, t.shape, generator=g).to(t.dtype)
        for k, t in b.inputs.items()
    }
    masks = {m: torch.rand(rows, generator=g) < 0.8 for m in b.masks}
    return [Batch(inputs, masks)]


def parity(eager: list[np.ndarray], other: list[np.ndarray], classification: bool) -> Parity:
    e, o = np.concatenate(eager), np.concatenate(other)
    agree = float((e.argmax(1) == o.argmax(1)).mean()) if classification and e.shape[1] > 1 else None
    return Parity(float(np.abs(e - o).max()), len(e), agree)


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {
        "polymodal": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def export_run(
    run: str | Path,
    out: str | Path,
    config: ExportConfig | None = None,
    data: Any = None,
    data_root: str | Path | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Export the model of run directory ``run`` into the new directory ``out``.

    ``data`` (a table, optional) supplies real rows for the parity check and, with static int8 quantization, the
    calibration rows; without it parity is measured on random inputs and int8 quantization is dynamic.
    """
    from ..pipeline import FittedPipeline

    cfg = config or ExportConfig()
    run = Path(run)
    predictor = FittedPipeline.load(run, verbose=False)
    mode = None
    if cfg.quantize == "int8":
        if cfg.format != "onnx":
            raise ExportError("int8 quantization is done by ONNX Runtime: use --format onnx with --quantize int8")
        mode = cfg.quantize_mode if cfg.quantize_mode != "auto" else ("static" if data is not None else "dynamic")
        if mode == "static" and data is None:
            raise ExportError("static int8 quantization needs calibration rows: pass --calibration TABLE")
    rows = max(cfg.parity_rows, cfg.calibration_rows if mode is not None else 0)
    batches = (
        table_batches(predictor, data, rows, data_root)
        if data is not None
        else random_batches(predictor.processors, cfg.parity_rows)
    )
    parity_batches = _first_rows(batches, cfg.parity_rows)
    model = predictor.model.eval()
    if predictor.problem_type == "generation":
        return _export_generator(predictor, run, Path(out), cfg, parity_batches, data is not None, overwrite)
    with torch.inference_mode():
        eager = [model(b.inputs, b.masks).float().numpy() for b in parity_batches]
    classification = predictor.problem_type != "regression"

    # an export folder is a run directory too (a copy of the run plus the exported graphs), with its own manifest
    with atomic_dir(Path(out), overwrite=overwrite, replaceable=check_replaceable, finish=write_manifest) as tmp:
        shutil.copytree(run, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*EXPORT_FILES, ".*"))
        verify(tmp, EXPORT_FILES)  # the copy is one save's files (a save may replace the run while it is copied)
        files: dict[str, str] = {}
        checks: dict[str, Parity] = {}
        gate: Int8Gate | None = None
        if cfg.format == "onnx":
            fp32, signature = to_onnx(model, predictor.processors, cfg.opset)
            (tmp / "model.onnx").write_bytes(fp32)
            files["fp32"] = "model.onnx"
            checks["model.onnx"] = parity(eager, _run_onnx(fp32, signature, parity_batches), classification)
            if mode is not None:
                feeds = [signature.feed(b) for b in batches]
                with torch.inference_mode():
                    gate_eager = np.concatenate([model(b.inputs, b.masks).float().numpy() for b in batches])
                int8, gate = gated_quantize(
                    fp32,
                    mode,
                    feeds if mode == "static" else None,
                    feeds,
                    lambda graph, _: np.concatenate(_run_onnx(graph, signature, batches)),
                    gate_eager,
                    classification,
                    cfg.min_agreement,
                    rounds=cfg.int8_rounds,
                )
                if not gate.passed and not cfg.allow_degraded:
                    raise Int8GateError(describe_failure(gate), gate)
                if not gate.passed:
                    log.warning("writing a degraded int8 graph (--allow-degraded): %s", describe_failure(gate))
                (tmp / "model.int8.onnx").write_bytes(int8)
                files["int8"] = "model.int8.onnx"
                checks["model.int8.onnx"] = parity(eager, _run_onnx(int8, signature, parity_batches), classification)
        else:
            ts, signature = to_torchscript(model, predictor.processors)
            (tmp / "model.pt").write_bytes(ts)
            files["torchscript"] = "model.pt"
            module = torch.jit.load(io.BytesIO(ts))
            with torch.inference_mode():
                outs = [module(*signature.tensors(b)).float().numpy() for b in parity_batches]
            checks["model.pt"] = parity(eager, outs, classification)
        result = ExportResult(
            Path(out),
            cfg.format,
            files,
            signature,
            checks,
            "table rows" if data is not None else "random inputs",
            None if mode is None else f"int8 {mode}",
            _versions(),
            gate,
        )
        (tmp / "export.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    fp32_check = checks.get("model.onnx") or checks.get("model.pt")
    if fp32_check is not None and fp32_check.max_abs_diff > 1e-3:
        log.warning(
            "the exported graph differs from the eager model by up to %.2g on %d rows",
            fp32_check.max_abs_diff,
            fp32_check.rows,
        )
    return result


def _first_rows(batches: list[Batch], n: int) -> list[Batch]:
    out, seen = [], 0
    for b in batches:
        if seen >= n:
            break
        out.append(b)
        seen += len(b)
    return out


def _run_onnx(model: bytes, signature: GraphSignature, batches: list[Batch]) -> list[np.ndarray]:
    sess = session(model)
    names = {i.name for i in sess.get_inputs()}
    return [
        sess.run([signature.output], {k: v for k, v in signature.feed(b).items() if k in names})[0] for b in batches
    ]


def _export_generator(
    predictor: "FittedPipeline",
    run: Path,
    out: Path,
    cfg: ExportConfig,
    parity_batches: list[Batch],
    real_rows: bool,
    overwrite: bool,
) -> ExportResult:
    """A generation model: the encoder and decoder-step graphs (:mod:`polymodal.export.generation`), checked by
    generating with both decoding methods, eager and over ONNX Runtime, on the parity rows."""
    from ..generation.model import Seq2SeqModel
    from ..tasks.generation import GenerationTask
    from .generation import ENCODER_FILE, STEP_FILE, OnnxGenerator, generator_parity, to_onnx_generator

    if cfg.format != "onnx" or cfg.quantize != "none":
        raise ExportError(
            "a generation model exports to ONNX float32 only (encoder + decoder-step graphs): drop --format "
            "torchscript / --quantize int8"
        )
    model = cast(Seq2SeqModel, predictor.model.eval())
    task = cast(GenerationTask, predictor.task)
    encoder, step, gsig = to_onnx_generator(model, predictor.processors, cfg.opset)
    generator = OnnxGenerator(encoder, step, gsig, model.head.specials, model.head.max_positions)
    texts = generator_parity(model, generator, parity_batches, task.max_target_tokens)
    checks = {
        f"generator ({t.method})": Parity(t.max_score_diff, t.rows, t.same_text) for t in texts
    }  # agreement: the share of rows generating the same tokens
    with atomic_dir(out, overwrite=overwrite, replaceable=check_replaceable, finish=write_manifest) as tmp:
        shutil.copytree(run, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*EXPORT_FILES, ".*"))
        verify(tmp, EXPORT_FILES)
        (tmp / ENCODER_FILE).write_bytes(encoder)
        (tmp / STEP_FILE).write_bytes(step)
        files = {"generator_encoder": ENCODER_FILE, "generator_step": STEP_FILE}
        result = ExportResult(
            out, "onnx", files, gsig.inputs, checks, "table rows" if real_rows else "random inputs", None, _versions()
        )
        (tmp / "export.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    for t in texts:
        if t.same_text < 1.0:
            log.warning(
                "%s: the exported generator's text differs from the eager model's on %.1f%% of %d rows",
                t.method,
                100 * (1 - t.same_text),
                t.rows,
            )
    return result
