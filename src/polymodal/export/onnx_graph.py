"""Trace the fitted model into ONNX (or TorchScript) bytes, and open ONNX Runtime sessions on them."""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data.processors import Processor
from ..errors import ExportError
from ..threads import current_threads
from .graph import GraphModule, GraphSignature, placeholder_batch, signature_of

log = logging.getLogger("polymodal")
OPSET = 17


_MHA_FORWARD = nn.MultiheadAttention.forward


def _mha_forward(
    self: nn.MultiheadAttention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    need_weights: bool = True,
    attn_mask: torch.Tensor | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``nn.MultiheadAttention.forward`` in plain ops whose reshapes keep the sequence length symbolic.

    PyTorch's own implementation traces the sequence length into a constant ``Reshape`` (torch 2.13, TorchScript
    exporter), so a graph exported from it only accepts the example's length. The maths here is the same
    (parity is tested); variants it does not cover (bias_kv, zero_attn, separate key/value sizes) use the original.
    """
    if self.bias_k is not None or self.add_zero_attn or not self._qkv_same_embed_dim:
        return _MHA_FORWARD(
            self, query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights, is_causal
        )
    if not self.batch_first:
        query, key, value = (x.transpose(0, 1) for x in (query, key, value))
    e, h = self.embed_dim, self.num_heads
    d = e // h
    w, b = self.in_proj_weight, self.in_proj_bias
    q, k, v = (
        F.linear(x, w[i * e : (i + 1) * e], None if b is None else b[i * e : (i + 1) * e])
        for i, x in enumerate((query, key, value))
    )
    q, k, v = (x.reshape(x.shape[0], -1, h, d).transpose(1, 2) for x in (q, k, v))  # [B, H, T, D]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # [B, H, Tq, Tk]
    if attn_mask is None and is_causal:
        tq, tk = scores.shape[-2], scores.shape[-1]
        attn_mask = torch.ones(tq, tk, dtype=torch.bool, device=scores.device).triu(1)
    if attn_mask is not None:
        m = attn_mask if attn_mask.dim() == 2 else attn_mask.reshape(scores.shape)
        scores = scores.masked_fill(m, float("-inf")) if m.dtype == torch.bool else scores + m
    if key_padding_mask is not None:
        kpm = key_padding_mask[:, None, None, :]
        scores = scores.masked_fill(kpm, float("-inf")) if kpm.dtype == torch.bool else scores + kpm
    attn = torch.softmax(scores, dim=-1)
    if self.training and self.dropout > 0:
        attn = F.dropout(attn, self.dropout)
    out = self.out_proj((attn @ v).transpose(1, 2).reshape(query.shape[0], -1, e))
    if not self.batch_first:
        out = out.transpose(0, 1)
    weights = (attn.mean(1) if average_attn_weights else attn) if need_weights else None
    return out, weights


@contextlib.contextmanager
def traceable_attention() -> Iterator[None]:
    """Within this block every nn.MultiheadAttention runs :func:`_mha_forward` (for exporting only)."""
    nn.MultiheadAttention.forward = _mha_forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.MultiheadAttention.forward = _MHA_FORWARD  # type: ignore[method-assign]


def _traceable(model: nn.Module, processors: dict[str, Processor]) -> tuple[GraphModule, tuple, GraphSignature]:
    signature = signature_of(processors)
    return GraphModule(model, signature).eval(), signature.tensors(placeholder_batch(processors)), signature


def to_onnx(model: nn.Module, processors: dict[str, Processor], opset: int = OPSET) -> tuple[bytes, GraphSignature]:
    """The whole model (encoders + fusion + head) as one ONNX graph with a dynamic batch size."""
    graph, example, signature = _traceable(model, processors)
    buf = io.BytesIO()
    try:
        # The TorchScript-based exporter (dynamo=False): the dynamo one needs onnxscript and is slower to run;
        # this one round-trips every polymodal encoder and fusion through ONNX Runtime. Traced with grad enabled
        # so that nn.TransformerEncoder takes its exportable path, not the fused
        # inference kernel (aten::_transformer_encoder_layer_fwd), which has no ONNX form.
        with warnings.catch_warnings(), traceable_attention():
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python values
            # (torch annotates f as a path, but this exporter writes to a file object too)
            torch.onnx.export(
                graph,
                example,
                buf,  # type: ignore[arg-type]
                dynamo=False,
                input_names=signature.names,
                output_names=[signature.output],
                dynamic_axes=signature.dynamic_axes(placeholder_batch(processors)),
                opset_version=opset,
                do_constant_folding=True,
            )
    except Exception as e:  # the exporter raises many types; all mean "this model does not trace"
        raise ExportError(
            f"the model could not be exported to ONNX: {type(e).__name__}: "
            f"{str(e).splitlines()[0][:300]}\n{_hint(model)}"
        ) from None
    data = buf.getvalue()
    check_generalises(model, processors, data, signature)
    return data, signature


def check_generalises(
    model: nn.Module, processors: dict[str, Processor], data: bytes, signature: GraphSignature
) -> None:
    """Run the graph on a batch shaped unlike the traced example (another batch size, every modality present,
    longer sequences) and compare with eager: a trace silently bakes in any size or count a component computes in
    Python (``len(rows)``, ``.tolist()``), and such a graph must not be written or served."""
    example = placeholder_batch(processors, 5)
    g = torch.Generator().manual_seed(0)
    inputs = {}
    for k, t in example.inputs.items():
        if not t.is_floating_point() and t.dim() >= 2 and t.shape[1] == 3:
            t = torch.cat([t, t[:, :2]], dim=1)  # 5 positions where the trace saw 3
        # integer inputs become 1 (a real token, a known code): placeholder zeros would be all padding, which a
        # pretrained text encoder trims to nothing in eager mode
        inputs[k] = torch.randn(t.shape, generator=g) if t.is_floating_point() else torch.ones_like(t)
    batch = type(example)(inputs, {m: torch.ones(5, dtype=torch.bool) for m in example.masks})
    try:
        sess = session(data)
        names = {i.name for i in sess.get_inputs()}
        got = sess.run([signature.output], {k: v for k, v in signature.feed(batch).items() if k in names})[0]
        with torch.inference_mode():
            want = model(batch.inputs, batch.masks).float().numpy()
        diff = float(abs(got - want).max())
    except Exception as e:  # ONNX Runtime's shape errors
        diff, reason = float("inf"), f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
    else:
        reason = f"outputs differ from eager by up to {diff:.3g}"
    if not diff < 1e-3:
        raise ExportError(
            f"the exported graph only works for inputs shaped like the traced example ({reason}): a component "
            f"computes a size or row count in Python, which tracing freezes.\n{_hint(model)}"
        )


def _hint(model: nn.Module) -> str:
    kinds = sorted(
        {getattr(type(m), "registry_name", type(m).__name__) for m in getattr(model, "encoders", {}).values()}
    )
    return (
        f"Encoders in this model: {', '.join(kinds) or 'unknown'}. The from-scratch encoders, every fusion and the "
        "pretrained encoders (hf_text, hf_image, hf_video, clip_*, hf_audio with a Wav2Vec2 or Whisper feature extractor) "
        "export; a model that does not can be served with --backend torch. A custom component must be traceable "
        "(no Python control flow on tensor values or sizes)."
    )


def to_torchscript(model: nn.Module, processors: dict[str, Processor]) -> tuple[bytes, GraphSignature]:
    """The whole model as a traced TorchScript module (positional inputs in the signature's order)."""
    graph, example, signature = _traceable(model, processors)
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), traceable_attention():  # grad enabled, as in to_onnx
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(graph, example, check_trace=False)
            torch.jit.save(traced, buf)
    except Exception as e:
        raise ExportError(f"the model could not be traced to TorchScript: {type(e).__name__}: {e}") from None
    return buf.getvalue(), signature


def session(model: bytes | Path, threads: int | None = None):
    """An ONNX Runtime CPU session. ``threads``: its intra-op threads (None: polymodal's count, see
    :mod:`polymodal.threads`). Idle threads sleep instead of spinning (a busy machine's cores go to work)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: ORT warns about every unused initializer
    opts.intra_op_num_threads = threads or current_threads()
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    src = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ExportError(
            f"ONNX Runtime cannot open the model{f' {model}' if isinstance(model, Path) else ''}: "
            f"{e}\nExport it again with `polymodal export`."
        ) from None
