"""The "autoencoder" architecture: encoders → fusion → bottleneck → a decoder per modality → per-row errors.

The bottleneck is narrow (``task.reconstruction.latent_dim``), so the modalities of a row share one code: a row
whose modalities disagree (the image shows one digit, the audio says another) has no code that reconstructs both,
and its errors are higher. In training each modality of a row is hidden from the encoders with probability
``task.reconstruction.modality_dropout`` while it is still reconstructed, which teaches the network to predict
every modality from the others.

Reconstruction errors barely notice a row whose modalities are each perfectly normal but disagree with each other;
the agreement term (``task.reconstruction.agreement``, :class:`Agreement`) does: each modality's encoding is
projected into a shared space and trained to match its row's other modalities (symmetric InfoNCE over the batch),
and a row's disagreement (1 - cosine of its modalities' projections) is its cross-modal anomaly score.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from ..config import PolymodalConfig
from ..data.processors import Processor
from ..encoders import Encoded, Encoder
from ..errors import ConfigError
from ..fusion import Fusion, FusionInput, build_fusion
from ..model import MultimodalModel
from ..registry import ARCHITECTURES, FUSIONS, register
from .decoders import Decoder, build_decoder

if TYPE_CHECKING:
    from ..tasks import Task
    from ..tasks.reconstruction import ReconstructionTask


class Bottleneck(nn.Module):
    """fused vector → code (``latent`` wide); variational: a mean and a log-variance, the code sampled from them in
    training (the mean at prediction), with the KL divergence to N(0, 1) per row (averaged over the code's units)."""

    def __init__(self, dim: int, latent: int, variational: bool):
        super().__init__()
        self.latent, self.variational = latent, variational
        self.proj = nn.Linear(dim, 2 * latent if variational else latent)

    def forward(self, fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.proj(fused)
        if not self.variational:
            return h, torch.zeros(len(h), device=h.device, dtype=h.dtype)
        mu, logvar = h[:, : self.latent], h[:, self.latent :].clamp(-10, 10)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).mean(1)
        code = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return code, kl


class Agreement(nn.Module):
    """Per-modality projections of the encoders' pooled vectors into one shared, ``width``-wide space (before
    fusion), and per row: the agreement loss and the disagreement of its present modalities.

    The loss is the symmetric InfoNCE of every pair of modalities: a row's projection of one modality must pick its
    own row's projection of the other among the batch's rows (``temperature`` scales the cosines); the rows'
    losses are returned separately (their mean is the batch's loss). The disagreement is 1 - the cosine of the
    pair, averaged over the row's pairs; it depends on the row alone, so it is the score."""

    def __init__(self, dims: dict[str, int], width: int, temperature: float):
        super().__init__()
        self.temperature = temperature
        self.proj = nn.ModuleDict(
            {name: nn.Sequential(nn.Linear(d, width), nn.GELU(), nn.Linear(width, width)) for name, d in dims.items()}
        )

    def forward(
        self, encoded: dict[str, Encoded], masks: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B]`` each: the row's agreement loss, its disagreement, and whether it has both (1/0: two present
        modalities; the loss also needs another such row in the batch)."""
        names = list(self.proj)
        z = {n: nn.functional.normalize(self.proj[n](encoded[n].pooled.float()), dim=-1) for n in names}
        first = z[names[0]]
        loss = torch.zeros(len(first), device=first.device, dtype=first.dtype)
        gap = torch.zeros_like(loss)
        pairs = torch.zeros_like(loss)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                both = masks[a] & masks[b]
                cos = (z[a] * z[b]).sum(-1)
                gap = gap + torch.where(both, 1 - cos, torch.zeros_like(cos))
                pairs = pairs + both.float()
                rows = both.nonzero().squeeze(1)
                if len(rows) < 2:
                    continue
                logits = z[a][rows] @ z[b][rows].T / self.temperature
                target = torch.arange(len(rows), device=logits.device)
                ce = nn.functional.cross_entropy
                row_loss = 0.5 * (ce(logits, target, reduction="none") + ce(logits.T, target, reduction="none"))
                loss = loss.index_add(0, rows, row_loss)
        has = pairs > 0
        scale = pairs.clamp(min=1)
        return loss / scale, torch.where(has, gap / scale, torch.zeros_like(gap)), has.float()


class Reconstruction(nn.Module):
    """The head of the autoencoder: the bottleneck, the decoders (modality name → decoder) and, when on, the
    cross-modal agreement projections."""

    def __init__(self, bottleneck: Bottleneck, decoders: dict[str, Decoder], agreement: Agreement | None = None):
        super().__init__()
        self.bottleneck = bottleneck
        self.decoders = nn.ModuleDict(decoders)
        self.agreement = agreement


def hide_modalities(masks: dict[str, torch.Tensor], rate: float) -> dict[str, torch.Tensor]:
    """Mark each present modality of each row absent with probability ``rate``; a row keeps at least one (the
    first of its present ones)."""
    names = list(masks)
    present = torch.stack([masks[n] for n in names], dim=1)
    keep = present & (torch.rand(present.shape, device=present.device) >= rate)
    emptied = ~keep.any(1) & present.any(1)
    first = torch.nn.functional.one_hot(present.float().argmax(1), len(names)).bool()
    keep |= first & emptied.unsqueeze(1)
    return {n: keep[:, i] for i, n in enumerate(names)}


class AutoencoderModel(MultimodalModel):
    """``forward(inputs, masks) → [B, 4M + 1 (+ 3)]`` for the ``M`` scored modalities: their joint errors (every
    present modality encoded), their cross errors (the modality hidden from the encoders, reconstructed from the
    others), whether each joint and each cross error exists (1/0), the bottleneck's KL term and, with an agreement
    head, the row's agreement loss, disagreement and whether it has them (:meth:`Agreement.forward`).
    :class:`~polymodal.tasks.reconstruction.ReconstructionTask` turns them into the loss and the anomaly scores.

    Training computes the joint errors only (the cross columns are 0): the loss is theirs, and the hidden
    modalities of ``hide`` already train the cross reconstructions."""

    head: Reconstruction

    def __init__(self, encoders: dict[str, nn.Module], fusion: Fusion, head: Reconstruction, hide: float):
        super().__init__(encoders, fusion, head)
        self.hide = hide

    def reconstruct(
        self, encoded: dict[str, Encoded], inputs: dict[str, torch.Tensor], only: str | None = None
    ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """Each decoder's (error, has) from the code of the ``encoded`` modalities (``only``: that decoder alone),
        and the KL term."""
        code, kl = self.head.bottleneck(self.fusion(encoded))
        out = {
            name: decoder(code, inputs) for name, decoder in self.head.decoders.items() if only is None or name == only
        }
        return out, kl

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        several = len(masks) > 1
        seen = hide_modalities(masks, self.hide) if self.training and self.hide > 0 and several else masks
        encoded = self.encode(inputs, seen)
        joint, kl = self.reconstruct(encoded, inputs)
        errors, present, cross, cross_present = [], [], [], []
        for name, (err, has) in joint.items():
            has = has & masks[name]
            errors.append(torch.where(has, err, torch.zeros_like(err)))
            present.append(has.to(err.dtype))
            c_err, c_has = torch.zeros_like(err), torch.zeros_like(has)
            if not self.training and several:
                # the others' encodings as they are; this modality's as an absent one's
                hidden = {**encoded, name: self.encoders[name](inputs, torch.zeros_like(masks[name]))}
                others = torch.stack([m for n, m in masks.items() if n != name], 1).any(1)
                parts, _ = self.reconstruct(hidden, inputs, only=name)
                c_err = parts[name][0]
                c_has = has & others
                c_err = torch.where(c_has, c_err, torch.zeros_like(c_err))
            cross.append(c_err)
            cross_present.append(c_has.to(err.dtype))
        columns = [errors, cross, present, cross_present]
        dtype = errors[0].dtype
        extra = [kl.unsqueeze(1).to(dtype)]
        if self.head.agreement is not None:
            # the modalities the encoders saw: a hidden one is no evidence of (dis)agreement
            extra.extend(t.unsqueeze(1).to(dtype) for t in self.head.agreement(encoded, seen))
        return torch.cat([*(torch.stack(c, 1) for c in columns), *extra], 1)


@register(ARCHITECTURES, "autoencoder")
def build_autoencoder(
    config: PolymodalConfig, encoders: dict[str, nn.Module], task: Task, processors: dict[str, Processor]
) -> AutoencoderModel:
    """Encoders → fusion (a feature-level one) → bottleneck → a decoder per modality that has one; the scored
    modalities are told to the task (:meth:`ReconstructionTask.set_modalities`)."""
    settings = config.task.reconstruction
    if FUSIONS.get(config.fusion.name).decides:
        raise ConfigError(
            f"fusion '{config.fusion.name}' combines per-modality predictions; a reconstruction model needs a fused "
            "vector: choose a feature-level fusion (concat, attention, transformer, ...)"
        )
    decoders: dict[str, Decoder] = {}
    kinds: list[str] = []
    for name, proc in processors.items():
        dec = build_decoder(name, proc, settings.latent_dim, settings.hidden, settings.text)
        if dec is not None:
            decoders[name] = dec
            kinds.append(proc.kind)
    if not decoders:
        described = ", ".join(f"{n} ({p.kind}, {type(p).__name__})" for n, p in processors.items())
        raise ConfigError(
            f"a reconstruction model needs at least one modality it can reconstruct, and this table has none: "
            f"{described}. Reconstructed: image, audio, numeric/category, time-series and text columns with "
            "polymodal's own encoders (not pretrained models' preprocessing, not video)"
        )
    dims = {name: cast(Encoder, enc).dim for name, enc in encoders.items()}
    rtask = cast("ReconstructionTask", task)
    # a loaded run has the network it was saved with (runs saved before the agreement term have none)
    wanted = settings.agreement > 0 and len(dims) > 1 if rtask.saved_crossmodal is None else rtask.saved_crossmodal
    agreement = Agreement(dims, settings.latent_dim, settings.agreement_temperature) if wanted else None
    rtask.set_modalities(list(decoders), kinds, crossmodal=agreement is not None)
    inputs = [FusionInput(name, dim) for name, dim in dims.items()]
    fusion = build_fusion(config.fusion.name, inputs, config.fusion.dim, config.fusion.dropout, config.fusion.params())
    bottleneck = Bottleneck(config.fusion.dim, settings.latent_dim, settings.variational)
    head = Reconstruction(bottleneck, decoders, agreement)
    return AutoencoderModel(encoders, fusion, head, settings.modality_dropout)


#: the builder is called with the processors too (the decoders are shaped by them)
build_autoencoder.needs_processors = True  # type: ignore[attr-defined]
