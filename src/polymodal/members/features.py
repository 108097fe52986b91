"""Features for classical members, computed in torch from a batch (so training and prediction share one code path,
and the features trace into an exported graph with the rest of the member).

Two blocks, each over one modality:

- :class:`TabularBlock`: the tabular modality's columns. For trees (``mode="tree"``): one feature per column, the
  standardised numeric value or the category index, NaN where the value is missing (trees learn where missing rows
  go). For linear models (``mode="linear"``): the standardised value and its missing flag per numeric column, and
  a one-hot vector per category column (missing and unknown categories get their own slots).
- :class:`TfidfBlock`: a text modality as TF-IDF over the processor's token ids, as scikit-learn's
  ``TfidfVectorizer`` computes it (raw counts × smooth idf ``ln((1 + n) / (1 + df)) + 1``, each row L2-normalised).
  The kept ids and the idf are learned on the training rows; padding is never a feature, ids outside the kept set
  are dropped.

A :class:`FeatureSet` concatenates the blocks of a member's modalities into one ``[batch, features]`` matrix and
knows which input column each feature comes from (for feature importance).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..data.dataset import Prepared, make_loader
from ..data.processors import PAD, Processor, TabularProcessor, TextProcessor

if TYPE_CHECKING:
    from ..schema import Modality

#: the modality kinds classical members read features from
FEATURE_KINDS = ("tabular", "text")


class TabularBlock(nn.Module):
    """The tabular modality's columns (see the module docstring for the two modes)."""

    _offsets: torch.Tensor
    _cardinalities: torch.Tensor

    def __init__(
        self, modality: str, numeric: list[str], categorical: list[str], cardinalities: list[int], mode: str
    ) -> None:
        super().__init__()
        if mode not in ("tree", "linear"):
            raise ValueError(f"mode must be 'tree' or 'linear', not {mode!r}")
        self.modality, self.numeric, self.categorical = modality, list(numeric), list(categorical)
        self.cardinalities, self.mode = list(cardinalities), mode
        self.register_buffer(
            "_offsets", torch.tensor(np.cumsum([0, *self.cardinalities[:-1]]), dtype=torch.long), persistent=False
        )
        self.register_buffer("_cardinalities", torch.tensor(self.cardinalities, dtype=torch.long), persistent=False)

    @property
    def columns(self) -> list[str]:
        """The input column of each output feature, in order."""
        if self.mode == "tree":
            return self.numeric + self.categorical
        num = [c for c in self.numeric for _ in range(2)]
        return num + [c for c, k in zip(self.categorical, self.cardinalities) for _ in range(k)]

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        present = masks[self.modality].unsqueeze(1)
        parts = []
        if self.numeric:
            num = inputs[f"{self.modality}.numeric"].float()
            value, flag = num[:, 0::2], num[:, 1::2]
            if self.mode == "tree":
                missing = (flag > 0.5) | ~present
                parts.append(torch.where(missing, torch.full_like(value, math.nan), value))
            else:
                value = torch.where(present, value, torch.zeros_like(value))
                flag = torch.where(present, flag, torch.ones_like(flag))
                parts.append(torch.stack([value, flag], dim=2).flatten(1))
        if self.categorical:
            cat = inputs[f"{self.modality}.category"].long()
            cat = torch.where(present, cat, torch.zeros_like(cat))  # an absent modality: every category missing
            if self.mode == "tree":
                idx = cat.float()
                parts.append(torch.where(cat == 0, torch.full_like(idx, math.nan), idx))
            else:
                total = int(sum(self.cardinalities))
                # one scatter over the concatenated one-hot slots: traceable with any batch size
                cat = torch.where(cat < self._cardinalities, cat, torch.ones_like(cat))  # out of range: unknown
                slots = cat.clamp(min=0) + self._offsets
                onehot = torch.zeros(cat.shape[0], total, dtype=torch.float32, device=cat.device)
                parts.append(onehot.scatter(1, slots, torch.ones_like(slots, dtype=torch.float32)))
        return torch.cat(parts, dim=1)

    def spec(self) -> dict[str, Any]:
        return {
            "block": "tabular",
            "modality": self.modality,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "cardinalities": self.cardinalities,
            "mode": self.mode,
        }

    @classmethod
    def fitted(cls, modality: Modality, processor: Processor, mode: str) -> TabularBlock:
        if not isinstance(processor, TabularProcessor):
            raise TypeError(f"modality '{modality.name}' is tabular but its processor is {type(processor).__name__}")
        return cls(modality.name, processor.numeric, processor.categorical, processor.cardinalities(), mode)


class TfidfBlock(nn.Module):
    """A text modality as L2-normalised TF-IDF over ``n_kept`` token ids (see the module docstring)."""

    remap: torch.Tensor
    idf: torch.Tensor

    def __init__(self, modality: str, column: str, key: str, pad_id: int, n_ids: int, n_kept: int) -> None:
        super().__init__()
        self.modality, self.column, self.key = modality, column, key
        self.pad_id, self.n_ids, self.n_kept = int(pad_id), int(n_ids), int(n_kept)
        # token id → kept feature index; n_kept (one past the features) = not a feature. Ids at or beyond n_ids
        # are clamped onto the last entry, which is never kept.
        self.register_buffer("remap", torch.full((self.n_ids,), self.n_kept, dtype=torch.long))
        self.register_buffer("idf", torch.zeros(self.n_kept, dtype=torch.float32))

    @property
    def columns(self) -> list[str]:
        return [self.column] * self.n_kept

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = inputs[self.key].long()
        slot = self.remap[ids.clamp(0, self.n_ids - 1)]
        slot = torch.where(ids == self.pad_id, torch.full_like(slot, self.n_kept), slot)
        counts = torch.zeros(ids.shape[0], self.n_kept + 1, dtype=torch.float32, device=ids.device)
        counts = counts.scatter_add(1, slot, torch.ones_like(slot, dtype=torch.float32))[:, : self.n_kept]
        tfidf = counts * self.idf
        norm = tfidf.pow(2).sum(dim=1, keepdim=True).sqrt()
        tfidf = tfidf / torch.where(norm > 0, norm, torch.ones_like(norm))
        return tfidf * masks[self.modality].unsqueeze(1).float()

    def spec(self) -> dict[str, Any]:
        return {
            "block": "tfidf",
            "modality": self.modality,
            "column": self.column,
            "key": self.key,
            "pad_id": self.pad_id,
            "n_ids": self.n_ids,
            "n_kept": self.n_kept,
        }

    @classmethod
    def fitted(cls, modality: Modality, processor: Processor, train: Prepared, max_features: int | None) -> TfidfBlock:
        """Learn the kept ids (the ``max_features`` most frequent by document frequency; all when None) and their
        idf from the training rows' decoded token ids."""
        key, pad = text_input(modality, processor)
        docs = [np.unique(it) for it in train.items[modality.name] if it is not None]
        ids = np.concatenate(docs) if docs else np.zeros(0, np.int64)
        ids = ids[ids != pad]
        df = np.bincount(ids, minlength=1) if len(ids) else np.zeros(1, np.int64)
        seen = np.flatnonzero(df)
        # most frequent first, ties by id: the same rows keep the same features
        order = seen[np.lexsort((seen, -df[seen]))]
        kept = np.sort(order if max_features is None else order[:max_features])
        block = cls(modality.name, modality.columns[0], key, pad, len(df) + 1, len(kept))
        n = len(train)
        block.remap[torch.from_numpy(kept)] = torch.arange(len(kept))
        block.idf.copy_(torch.from_numpy(np.log((1 + n) / (1 + df[kept])) + 1).float())
        return block


def text_input(modality: Modality, processor: Processor) -> tuple[str, int]:
    """The batch key holding a text modality's token ids, and its padding id (a word vocabulary or a tokenizer)."""
    if isinstance(processor, TextProcessor):
        return modality.name, PAD
    return f"{modality.name}.input_ids", int(getattr(processor, "pad_id", PAD))


Block = TabularBlock | TfidfBlock


def block_from_spec(spec: dict[str, Any]) -> Block:
    if spec["block"] == "tabular":
        return TabularBlock(spec["modality"], spec["numeric"], spec["categorical"], spec["cardinalities"], spec["mode"])
    return TfidfBlock(spec["modality"], spec["column"], spec["key"], spec["pad_id"], spec["n_ids"], spec["n_kept"])


class FeatureSet(nn.Module):
    """The blocks of a member's modalities, concatenated into one feature matrix."""

    def __init__(self, blocks: list[Block]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def _blocks(self) -> list[Block]:
        return cast("list[Block]", list(self.blocks))

    @property
    def modalities(self) -> list[str]:
        return [b.modality for b in self._blocks()]

    @property
    def columns(self) -> list[str]:
        """The input column of each feature."""
        return [c for b in self._blocks() for c in b.columns]

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([b(inputs, masks) for b in self.blocks], dim=1)

    def spec(self) -> list[dict[str, Any]]:
        return [b.spec() for b in self._blocks()]

    @classmethod
    def from_spec(cls, spec: list[dict[str, Any]]) -> FeatureSet:
        return cls([block_from_spec(s) for s in spec])

    @classmethod
    def fitted(
        cls,
        modalities: list[Modality],
        processors: dict[str, Processor],
        train: Prepared,
        mode: str,
        max_text_features: int | None,
    ) -> FeatureSet:
        """Blocks for the tabular and text modalities among ``modalities``, fitted on ``train``."""
        blocks: list[Block] = []
        for m in modalities:
            if m.kind == "tabular":
                blocks.append(TabularBlock.fitted(m, processors[m.name], mode))
            elif m.kind == "text":
                blocks.append(TfidfBlock.fitted(m, processors[m.name], train, max_text_features))
        return cls(blocks)

    @torch.no_grad()
    def matrix(
        self, rows: Prepared, processors: dict[str, Processor], batch_size: int = 512
    ) -> np.ndarray | sp.csr_matrix:
        """The features of every row of ``rows``, float32 values (a CSR matrix when wide and sparse)."""
        procs = {m: processors[m] for m in self.modalities}
        parts = [self(b.inputs, b.masks).numpy() for b in make_loader(rows, procs, batch_size, False)]
        width = len(self.columns)
        if not parts:
            return np.zeros((0, width), np.float32)
        if width > 256:
            return sp.vstack([sp.csr_matrix(p) for p in parts], format="csr")
        return np.concatenate(parts)


def select(modalities: list[Modality], kinds: tuple[str, ...]) -> list[Modality]:
    """The modalities of ``kinds`` (the order of the table kept)."""
    return [m for m in modalities if m.kind in kinds]


def column_importance(columns: list[str], per_feature: np.ndarray) -> dict[str, float]:
    """Per-feature importances summed per input column and normalised to sum to 1 (empty when all are zero)."""
    totals: dict[str, float] = {}
    for c, v in zip(columns, np.abs(np.asarray(per_feature, dtype=np.float64))):
        totals[c] = totals.get(c, 0.0) + float(v)
    s = sum(totals.values())
    return {c: v / s for c, v in totals.items()} if s > 0 else {}
