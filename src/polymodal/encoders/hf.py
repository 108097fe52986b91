"""Pretrained encoders on Hugging Face ``transformers`` backbones: ``hf_text``, ``hf_image``, ``hf_audio``,
``clip_text`` and ``clip_image``.

Each wraps one backbone (BERT/MiniLM/RoBERTa…, ViT/ResNet/ConvNeXt…, Wav2Vec2/HuBERT/Whisper's encoder…, the two
towers of CLIP) loaded from a local folder or a hub id, pools its token sequence (``cls``, ``mean``, learned
``attention``, or the model's own ``pooler`` output) and projects to ``dim``; the token sequence, projected too, is
exposed for cross-modal fusions.

Modes:
  frozen    (default) the backbone is not trained; its outputs are computed once per input and kept in the
            frozen-feature cache (memory + disk, see :mod:`polymodal.features.cache`), so later epochs, runs and
            ``compare`` variants skip the backbone.
  finetune  every backbone weight is trained, at ``backbone_lr`` × the learning rate, with layer-wise decay
            (``layer_decay`` per block below the top, as in BEiT/ELECTRA).
  last_n    only the top ``last_n`` blocks (and what sits above them) are trained, with the same learning rates.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, cast

import torch
from torch import nn

from ..errors import ConfigError
from ..features.cache import FeatureCache, get_cache
from ..params.encoders import (
    CLIPImageConfig,
    CLIPTextConfig,
    HFAudioConfig,
    HFConfig,
    HFImageConfig,
    HFTextConfig,
)
from ..registry import ENCODERS, register
from ..schema import Modality
from . import hf_processors  # noqa: F401  (registers the hf_* processors)
from .base import Encoded, Encoder, EncoderConfig, masked_mean, zero_absent
from .hf_hub import fingerprint, layer_depths, layer_stack, modality_part

log = logging.getLogger("polymodal")


def _hidden_size(cfg: Any) -> int:
    sizes = getattr(cfg, "hidden_sizes", None)
    if sizes:
        return int(sizes[-1])
    for attr in ("hidden_size", "d_model", "embed_dim"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    raise ConfigError(
        f"cannot tell the output width of pretrained model type '{getattr(cfg, 'model_type', '?')}' "
        "(no hidden_size / hidden_sizes / d_model in its config)"
    )


class AttentionPool(nn.Module):
    """Learned attention pooling: one score per token, softmax over the real tokens, weighted sum."""

    def __init__(self, width: int):
        super().__init__()
        self.score = nn.Linear(width, 1)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        s = self.score(tokens).squeeze(-1)
        if mask is not None:
            # a row with no real token (absent) must not softmax over nothing (not in place: ONNX has no |=)
            safe = torch.cat([mask[:, :1] | ~mask.any(1, keepdim=True), mask[:, 1:]], dim=1)
            s = s.masked_fill(~safe, float("-inf"))
        return (torch.softmax(s, dim=1).unsqueeze(-1) * tokens).sum(1)


class HFEncoder(Encoder):
    """Base of the pretrained encoders; subclasses set ``kinds``, ``processor`` and ``Config``."""

    Config: ClassVar[type[EncoderConfig]] = HFConfig
    processor: ClassVar[str] = ""
    joint_space: ClassVar[bool] = False  # clip_*: pool with the model's projection into its joint space
    config: HFConfig

    def __init__(self, modality: Modality, processor: Any, config: HFConfig):
        super().__init__(modality, processor, config)
        self.proc = processor
        model = processor.backbone()
        backbone, projection = modality_part(model, modality.kind)
        if self.joint_space and projection is None:
            raise ConfigError(
                f"encoder '{self.registry_name}' needs a dual-encoder model with a "
                f"{modality.kind} projection (CLIP and its kin); '{processor.source}' is a "
                f"{type(model).__name__}: use hf_{modality.kind} for it"
            )
        self.backbone = backbone
        self.projection = projection if self.joint_space else None
        self.width = _hidden_size(backbone.config)
        pooling = config.pooling
        if pooling == "auto":
            pooling = "pooler" if self.joint_space else "mean"
        self.pooling = pooling
        pooled_width = self.width
        if pooling == "pooler" and self.projection is not None:
            # (torch types a submodule's attributes as Tensor | Module)
            pooled_width = int(self.projection.out_features)  # type: ignore[arg-type]
        self.attention = AttentionPool(self.width) if pooling == "attention" else None
        self.drop = nn.Dropout(config.dropout)
        self.proj = nn.Linear(pooled_width, config.dim)
        self.token_proj = nn.Linear(self.width, config.dim)
        self._set_trainable()
        self._fingerprint: str | None = None
        # Loading other weights (Predictor.load) changes what the backbone computes: fingerprint it again.
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_fingerprint", None))

    # --- modes ----------------------------------------------------------------------------------------------
    @property
    def frozen(self) -> bool:
        return self.config.mode == "frozen"

    def _backbone_modules(self) -> list[nn.Module]:
        return [m for m in (self.backbone, self.projection) if m is not None]

    def _set_trainable(self) -> None:
        mode = self.config.mode
        for m in self._backbone_modules():
            m.requires_grad_(mode == "finetune")
        if mode != "last_n":
            return
        found = layer_stack(self.backbone)
        depths = layer_depths(self.backbone)
        if found is None or depths is None:
            raise ConfigError(
                f"mode last_n needs the block stack of the backbone, which polymodal cannot find in "
                f"{type(self.backbone).__name__}; use mode 'finetune' or 'frozen'"
            )
        by_name, n = depths
        first = max(1, n - self.config.last_n + 1)
        for name, p in self.backbone.named_parameters():
            p.requires_grad_(by_name[name] >= first)
        if self.projection is not None:
            self.projection.requires_grad_(True)

    def train(self, mode: bool = True) -> "HFEncoder":
        super().train(mode)
        if self.frozen:
            # A frozen backbone always computes inference features (no dropout, fixed batch-norm statistics):
            # the same ones that are cached and that prediction sees.
            for m in self._backbone_modules():
                m.eval()
        return self

    def lr_scales(self) -> dict[str, float]:
        """Learning-rate multipliers of the trainable backbone parameters (names relative to this encoder):
        ``backbone_lr`` at the top, times ``layer_decay`` per block below it. Empty in frozen mode."""
        if self.frozen:
            return {}
        c = self.config
        depths = layer_depths(self.backbone)
        if depths is None and c.layer_decay < 1:
            log.warning(
                "%s: no block stack found in %s; layer-wise learning-rate decay is not applied",
                self.modality.name,
                type(self.backbone).__name__,
            )
        out = {}
        for name, p in self.backbone.named_parameters():
            if p.requires_grad:
                decay = 1.0 if depths is None else c.layer_decay ** (depths[1] + 1 - depths[0][name])
                out[f"backbone.{name}"] = c.backbone_lr * decay
        if self.projection is not None:
            out.update({f"projection.{n}": c.backbone_lr for n, _ in self.projection.named_parameters()})
        return out

    # --- the backbone -------------------------------------------------------------------------------------
    def backbone_inputs(self, inputs: dict[str, torch.Tensor], rows: torch.Tensor | None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def run_backbone(
        self, inputs: dict[str, torch.Tensor], rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(tokens [R, T, H], token mask [R, T] or None, pooled [R, P] or None) for the given rows."""
        kw = self.backbone_inputs(inputs, rows)
        out = self.backbone(**kw)
        tokens = out.last_hidden_state
        if tokens.dim() == 4:  # a CNN's feature map [R, C, h, w]: one token per cell
            tokens = tokens.flatten(2).transpose(1, 2)
        pooled = getattr(out, "pooler_output", None)
        if pooled is not None:
            pooled = pooled.flatten(1)
            if self.projection is not None:
                pooled = self.projection(pooled)
        tmask = kw["attention_mask"].bool() if "attention_mask" in kw else None
        return tokens, tmask, pooled

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            import transformers

            self._fingerprint = fingerprint(
                self._backbone_modules(),
                {"encoder": type(self).__name__, "kind": self.modality.kind, "transformers": transformers.__version__},
            )
        return self._fingerprint

    def feature_cache(self) -> FeatureCache:
        return get_cache(on_disk=self.config.cache)

    def _cached(
        self, inputs: dict[str, torch.Tensor], rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Frozen mode: the backbone outputs of ``rows``, from the cache where present, computed (and stored)
        for the rest."""
        cache, model = self.feature_cache(), self.fingerprint()
        keys = inputs[f"{self.modality.name}.key"][rows].cpu().numpy()
        names = [k.tobytes().hex() for k in keys]
        entries = [cache.get(model, k) for k in names]
        todo = [j for j, e in enumerate(entries) if e is None]
        if todo:
            with torch.no_grad():
                tokens, tmask, pooled = self.run_backbone(inputs, rows[todo])
            meta = {"source": self.proc.source, "encoder": self.registry_name, "backbone": type(self.backbone).__name__}
            for i, j in enumerate(todo):
                t = tokens[i] if tmask is None else tokens[i][tmask[i]]
                entry = {"tokens": t.detach().cpu().clone()}
                if pooled is not None:
                    entry["pooled"] = pooled[i].detach().cpu().clone()
                cache.put(model, names[j], entry, meta)
                entries[j] = entry
        device = self.proj.weight.device
        filled = cast("list[dict[str, torch.Tensor]]", entries)  # every entry is filled by now
        lengths = [len(e["tokens"]) for e in filled]
        width = max(lengths)
        tokens = torch.nn.utils.rnn.pad_sequence([e["tokens"] for e in filled], batch_first=True).to(device)
        variable = self.modality.kind == "text" or len(set(lengths)) > 1
        tmask = (
            torch.arange(width, device=device)[None] < torch.tensor(lengths, device=device)[:, None]
            if variable
            else None
        )
        pooled = torch.stack([e["pooled"] for e in filled]).to(device) if all("pooled" in e for e in filled) else None
        return tokens, tmask, pooled

    # --- encode -------------------------------------------------------------------------------------------
    def encode(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> Encoded:
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return self._encode_traceable(inputs, mask)
        rows = torch.nonzero(mask, as_tuple=False).flatten()
        b, device = len(mask), self.proj.weight.device
        if len(rows) == 0:
            tokens_r = torch.zeros(0, 1, self.width, device=device)
            tmask_r, pooled_r = None, None
        elif self.frozen and not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            # (an exported graph cannot look features up by key: it runs the backbone itself)
            tokens_r, tmask_r, pooled_r = self._cached(inputs, rows)
        else:
            tokens_r, tmask_r, pooled_r = self.run_backbone(inputs, rows)
        # Scatter the present rows back into the batch; absent rows stay zero (and have no real token).
        tokens = tokens_r.new_zeros(b, tokens_r.shape[1], self.width)
        tokens[rows] = tokens_r
        tmask = None
        if tmask_r is not None or self.modality.kind == "text":
            tmask = torch.zeros(b, tokens.shape[1], dtype=torch.bool, device=tokens.device)
            tmask[rows] = True if tmask_r is None else tmask_r
        pooled = self._pool(tokens, tmask, pooled_r, rows, b)
        out_tokens = self.drop(self.token_proj(tokens))  # dropout on the narrow side: cheaper, same regularising
        return Encoded(zero_absent(self.proj(self.drop(pooled)), mask), zero_absent(out_tokens, mask), mask, tmask)

    def _encode_traceable(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> Encoded:
        """``encode`` for export: the backbone runs on every row and absent rows are masked afterwards.

        The eager path gathers the present rows and scatters them back, which a trace freezes to the example's
        row count (and a graph fed zero present rows would reshape empty tensors); computing absent rows and
        discarding them gives the same outputs for any batch. No cache either: a graph cannot look features up."""
        kw = self.backbone_inputs(inputs, None)
        if "attention_mask" in kw:
            # an absent row has no real token; give it one so that no attention row is entirely masked (NaN)
            attn = kw["attention_mask"]
            first = torch.maximum(attn[:, :1], (~mask)[:, None].to(attn.dtype))
            kw["attention_mask"] = torch.cat([first, attn[:, 1:]], 1)
        out = self.backbone(**kw)
        tokens = out.last_hidden_state
        if tokens.dim() == 4:
            tokens = tokens.flatten(2).transpose(1, 2)
        present = mask[:, None, None]
        tokens = torch.where(present, tokens, torch.zeros_like(tokens))
        tmask = None
        if "attention_mask" in kw:
            tmask = attn.bool() & mask[:, None]
        elif self.modality.kind == "text":
            tmask = mask[:, None].expand(-1, tokens.shape[1])
        pooled_r = getattr(out, "pooler_output", None)
        if self.pooling == "pooler":
            if pooled_r is None:
                raise ConfigError(
                    f"{self.modality.name}: pooling 'pooler' needs a model with a pooled output; "
                    f"{type(self.backbone).__name__} has none — use pooling 'mean', 'cls' or 'attention'"
                )
            pooled_r = pooled_r.flatten(1)
            if self.projection is not None:
                pooled_r = self.projection(pooled_r)
            pooled = torch.where(mask[:, None], pooled_r, torch.zeros_like(pooled_r))
        else:
            pooled = self._pool(tokens, tmask, None, mask, len(mask))
        out_tokens = self.drop(self.token_proj(tokens))
        return Encoded(zero_absent(self.proj(self.drop(pooled)), mask), zero_absent(out_tokens, mask), mask, tmask)

    def _pool(
        self,
        tokens: torch.Tensor,
        tmask: torch.Tensor | None,
        pooled_r: torch.Tensor | None,
        rows: torch.Tensor,
        b: int,
    ) -> torch.Tensor:
        if self.pooling == "mean":
            return masked_mean(tokens, tmask)
        if self.pooling == "cls":
            return tokens[:, 0]
        if self.pooling == "attention":
            assert self.attention is not None, "pooling 'attention' builds an AttentionPool"
            return self.attention(tokens, tmask)
        if len(rows) and pooled_r is None:
            raise ConfigError(
                f"{self.modality.name}: pooling 'pooler' needs a model with a pooled output; "
                f"{type(self.backbone).__name__} has none — use pooling 'mean', 'cls' or 'attention'"
            )
        width = self.proj.in_features
        pooled = tokens.new_zeros(b, width)
        if pooled_r is not None:
            pooled[rows] = pooled_r
        return pooled


@register(ENCODERS, "hf_text")
class HFText(HFEncoder):
    Config = HFTextConfig
    kinds = ("text",)
    processor = "hf_text"

    def backbone_inputs(self, inputs: dict[str, torch.Tensor], rows: torch.Tensor | None) -> dict[str, torch.Tensor]:
        n = self.modality.name
        ids, attn = inputs[f"{n}.input_ids"], inputs[f"{n}.attention_mask"]
        if rows is None:  # export: every row, at the batch's own width (a Python width would be frozen)
            return {"input_ids": ids, "attention_mask": attn}
        ids, attn = ids[rows], attn[rows]
        width = int(attn.sum(1).max().item()) if len(rows) else 1
        return {"input_ids": ids[:, :width], "attention_mask": attn[:, :width]}


@register(ENCODERS, "hf_image")
class HFImage(HFEncoder):
    Config = HFImageConfig
    kinds = ("image",)
    processor = "hf_image"

    def backbone_inputs(self, inputs: dict[str, torch.Tensor], rows: torch.Tensor | None) -> dict[str, torch.Tensor]:
        x = inputs[f"{self.modality.name}.pixel_values"]
        return {"pixel_values": x if rows is None else x[rows]}


@register(ENCODERS, "hf_audio")
class HFAudio(HFEncoder):
    Config = HFAudioConfig
    kinds = ("audio",)
    processor = "hf_audio"

    def backbone_inputs(self, inputs: dict[str, torch.Tensor], rows: torch.Tensor | None) -> dict[str, torch.Tensor]:
        # The feature extractor runs here, not in collate: with a warm cache it is skipped altogether.
        wave = inputs[f"{self.modality.name}.waveform"]
        if rows is None:  # export: the feature extractor's maths in torch ops, traced into the graph
            return self.proc.traceable_backbone_inputs(wave)
        kw = self.proc.backbone_inputs(wave[rows])
        device = self.proj.weight.device
        return {k: v.to(device) for k, v in kw.items()}


@register(ENCODERS, "clip_text")
class CLIPText(HFText):
    Config = CLIPTextConfig
    joint_space = True


@register(ENCODERS, "clip_image")
class CLIPImage(HFImage):
    Config = CLIPImageConfig
    joint_space = True
