"""Quality-aware (dynamic) decision-level fusion: each row trusts each modality as much as that modality looks reliable.

Concat fusion mixes a noisy modality's features into every decision, and late fusion's weights are one number per
modality for the whole table; neither can tell, row by row, that the image is noise and the audio clean. Here each
modality has its own head (as in late fusion) and a small *reliability gate* that reads only that modality: its
embedding and its head's confidence (negative energy ``logsumexp``, top probability, entropy; cf. Zhang et al.,
ICML 2023, "Provable Dynamic Fusion for Low-Quality Multimodal Data", whose weights come from such uncertainty
estimates). For classification each gate is also trained to predict the probability that its head gives the true
class, so a modality whose head would be wrong on this row gets a low weight. The rows' weights are a softmax over
the present modalities' gate scores; the fused logits are the weighted sum of the heads' log-probabilities times the
number of modalities (equal weights: a product of experts, which pools evidence; a weight near 0 silences a modality).

With ``joint: true`` one more expert joins: a head on all modalities' embeddings concatenated (as concat fusion),
with a gate of its own. It keeps the clean accuracy that heads which each see one modality lose (they cannot combine
evidence within a row), while the per-modality heads remain the fallback the gates turn to when the joint head's
input is damaged; it answers only for rows with every modality present (otherwise those heads are the fallback).
``modality_weights`` stays the per-modality weights (renormalised over the modalities' own experts).

With ``independent_experts: true`` each modality's encoder and head learn from that head's own loss only: the fused
loss sees the heads' outputs detached and the gates (and the joint head) read the embeddings detached. Joint training
otherwise leaves each modality's part weaker alone than a single-modality model (it only has to be right together
with the others), which is exactly the part a row falls back on when another modality fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..encoders.base import Encoded
from ..params.fusion import DynamicParams
from ..registry import FUSIONS, register
from .base import Fusion, FusionInput
from .early import _masked_softmax

if TYPE_CHECKING:
    from ..tasks import Task

_STATS = 3  # confidence features of a classification head fed to its gate: logsumexp, top probability, entropy


@register(FUSIONS, "dynamic")
class DynamicFusion(Fusion):
    Params = DynamicParams
    params: DynamicParams
    decides = True

    def __init__(self, inputs: list[FusionInput], dim: int, dropout: float, params: DynamicParams, task: "Task"):
        super().__init__(inputs, dim, dropout, params)
        from ..tasks.classification import ClassificationTask

        self.classify = isinstance(task, ClassificationTask)
        stats = _STATS if self.classify else 0
        self.heads = nn.ModuleDict(
            {
                f.name: nn.Sequential(
                    nn.LayerNorm(f.dim), nn.Linear(f.dim, dim), nn.GELU(), nn.Dropout(dropout), task.head(dim)
                )
                for f in inputs
            }
        )
        self.norms = nn.ModuleDict({f.name: nn.LayerNorm(f.dim) for f in inputs})
        self.gates = nn.ModuleDict(
            {
                f.name: nn.Sequential(
                    nn.Linear(f.dim + stats, params.gate_hidden), nn.GELU(), nn.Linear(params.gate_hidden, 1)
                )
                for f in inputs
            }
        )
        self.joint: nn.Sequential | None = None
        if params.joint and len(inputs) > 1:
            width = sum(f.dim for f in inputs)
            self.joint = nn.Sequential(
                nn.LayerNorm(width), nn.Linear(width, dim), nn.GELU(), nn.Dropout(dropout), task.head(dim)
            )
            self.joint_gate = nn.Sequential(
                nn.Linear(width + stats, params.gate_hidden), nn.GELU(), nn.Linear(params.gate_hidden, 1)
            )
            self.joint_norm = nn.LayerNorm(width)
        self.empty = nn.Parameter(torch.zeros(task.n_outputs))  # outputs of a row with no modality: a learned prior
        self._last: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def _expert(
        self, x: torch.Tensor, head: nn.Module, norm: nn.Module, gate: nn.Module
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(head outputs, gate score) of one expert on its input ``x``."""
        out = head(x)
        # independent experts: the gates read the embeddings detached, so nothing but a head's loss trains its encoder
        feats = [norm(x.detach() if self.params.independent_experts else x)]
        if self.classify:
            # The head's confidence, detached: the gate reads it, it does not train the head to look confident.
            logits = out.detach().float()
            logp = logits.log_softmax(-1)
            entropy = -(logp.exp() * logp).sum(-1, keepdim=True)
            stats = torch.cat(
                [logits.logsumexp(-1, keepdim=True), logp.max(-1, keepdim=True).values.exp(), entropy], -1
            )
            feats.append(stats.to(x.dtype))
        return out, gate(torch.cat(feats, -1)).squeeze(-1)

    def _parts(self, encoded: dict[str, Encoded]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(experts' outputs [B, E, K], gate scores [B, E], presence masks [B, E]): one expert per modality, then the
        joint expert when there is one (present when every modality is)."""
        heads, scores, xs = [], [], []
        for f in self.inputs:
            enc = encoded[f.name]
            # An absent modality's pooled vector may hold anything (even NaN): zero it so its head stays finite.
            x = torch.where(enc.mask.unsqueeze(1), enc.pooled, torch.zeros_like(enc.pooled))
            xs.append(x)
            out, score = self._expert(x, self.heads[f.name], self.norms[f.name], self.gates[f.name])
            heads.append(out)
            scores.append(score)
        masks = torch.stack([encoded[f.name].mask for f in self.inputs], dim=1)
        if self.joint is not None:
            x = torch.cat(xs, -1)
            if self.params.independent_experts:
                x = x.detach()
            out, score = self._expert(x, self.joint, self.joint_norm, self.joint_gate)
            heads.append(out)
            scores.append(score)
            # only for complete rows: with a modality absent the per-modality heads are the fallback
            masks = torch.cat([masks, masks.all(dim=1, keepdim=True)], 1)
        return torch.stack(heads, 1), torch.stack(scores, 1), masks

    def forward(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        heads, scores, masks = self._parts(encoded)
        if self.training:
            self._last = (heads, scores, masks)
        if self.params.independent_experts:  # the modalities' heads learn from their own losses only (see loss)
            m = len(self.inputs)
            heads = torch.cat([heads[:, :m].detach(), heads[:, m:]], 1)
        w = _masked_softmax(scores.float(), masks).unsqueeze(-1)  # [B, E, 1]
        if self.classify:
            out = (w * heads.float().log_softmax(-1)).sum(1) * heads.shape[1]
        else:
            out = (w * heads.float()).sum(1)
        out = out.to(heads.dtype)
        none = ~masks.any(dim=1, keepdim=True)
        return torch.where(none, self.empty.to(out.dtype).expand_as(out), out)

    def modality_weights(self, encoded: dict[str, Encoded]) -> torch.Tensor:
        """Each row's weights over the present modalities (its reliability estimates, softmaxed); 0 for absent."""
        _, scores, masks = self._parts(encoded)
        m = len(self.inputs)  # the joint expert, when there is one, comes last: not a modality
        return _masked_softmax(scores[:, :m].float(), masks[:, :m])

    def loss(self, outputs: torch.Tensor, target: torch.Tensor, task: "Task") -> torch.Tensor:
        fused = task.loss(outputs, target)
        if self._last is None:  # outputs not from a training-mode forward: only the combined loss is known
            return fused
        heads, scores, masks = self._last
        self._last = None
        per_head = [
            task.loss(heads[:, i][masks[:, i]], target[masks[:, i]]) for i in range(masks.shape[1]) if masks[:, i].any()
        ]
        loss = fused + self.params.head_loss_weight * (torch.stack(per_head).mean() if per_head else fused * 0)
        if self.classify and self.params.reliability_loss_weight > 0 and masks.any():
            # Each gate learns P(its head gives the true class | this row): high for clean rows, low for damaged ones.
            known = (target >= 0).unsqueeze(1) & masks
            if known.any():
                probs = heads.detach().float().softmax(-1)
                right = probs.gather(-1, target.clamp_min(0).view(-1, 1, 1).expand(-1, probs.shape[1], 1)).squeeze(-1)
                bce = nn.functional.binary_cross_entropy_with_logits(scores.float()[known], right[known])
                loss = loss + self.params.reliability_loss_weight * bce
        return loss
