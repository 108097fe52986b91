"""Per-example attributions on the tensors the model receives: occlusion and integrated gradients.

Both explain one number per row (:mod:`polymodal.explain.targets`): for classification occlusion explains the
log-odds of the predicted class (``log p − log(1 − p)``, which does not saturate on confident rows as the probability
does) and integrated gradients its logit; for regression both explain the predicted value. Both work on the processed inputs (normalised image, normalised log-mel spectrogram, token ids,
standardised numbers and category indices) and map the result back to what a person sees:

occlusion
    a part of the input is replaced by "nothing" and the drop of the explained number is that part's attribution:
    image patches and spectrogram time × frequency blocks set to the training mean (0 after normalisation), a text
    token removed, a tabular value set to missing. A column's share of the row comes from taking the whole column
    away (the modality's presence mask off; a tabular value missing), so shares do not depend on patch sizes.
integrated gradients (Sundararajan et al. 2017)
    gradients of the explained number averaged along the straight path from a baseline to the input, times
    (input − baseline). Baselines: the training-mean image / spectrogram (0), numbers at their training mean, and
    for token ids and categories (which cannot be interpolated) the embedding of padding / of the missing category:
    the path runs over the embedding layer's output (a forward hook on the encoder's :meth:`lookup_tables`). All
    modalities move along one path together, so the attributions of a row add up to the number at the input
    minus the number at the all-baseline input (``Explanation.score - Explanation.baseline_score``). For
    classification they explain the predicted class's logit, which does not saturate as a probability does.

Attributors are registered by processor name; a modality whose processor has none (a pretrained model's) gets a
single whole-column occlusion score, and integrated gradients refuses it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from ..data.dataset import Collator
from ..data.loaders import is_empty
from ..data.processors import (
    MISSING_CATEGORY,
    AudioProcessor,
    ImageProcessor,
    Processor,
    TabularProcessor,
    TextProcessor,
)
from ..data.progress import Progress
from ..data.timeseries import TimeSeriesProcessor
from ..data.video_processing import VideoProcessor
from ..errors import ConfigError, ExplainError, row_label
from ..pipeline import PipelineSource, as_pipeline
from ..registry import Registry
from .attention import fusion_weights
from .targets import ExplainTarget, as_numpy, explain_target, explainable_task, prepare_rows

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ..model import MultimodalModel


Inputs = dict[str, torch.Tensor]


@dataclass
class ModalityAttribution:
    """The attribution of one input column in one row.

    ``scores``: image H×W (the processed image's frame; ``background`` the processed pixels, H×W×3 in [0, 1]);
    video one per sampled frame (``background`` the frames, N×H×W×3 in [0, 1]);
    audio F×T on the log-mel spectrogram the processor produced (``background``); text one per token (``tokens``);
    a numeric or category column a single number (shape ``()``). Positive = supports the explained number.
    """

    column: str
    kind: str  # image | audio | video | text | numeric | category
    share: float  # fraction of the row's total |attribution| (the shares of a row sum to 1, or all are 0)
    scores: np.ndarray
    background: np.ndarray | None = None
    tokens: list[str] | None = None
    total: float = 0.0  # signed: occlusion, the drop with the whole column taken away; IG, the scores' sum
    present: bool = True  # False: the column is empty in this row (nothing to attribute)
    value: Any = None  # numeric/category: the cell as given


@dataclass
class Explanation:
    """One row explained: the prediction, what each column contributed, and the fusion's own modality weights."""

    index: Any  # the row's index label in the input table
    prediction: Any
    probability: float | None  # classification: the predicted class's probability
    target: Any | None  # the true label when the table has the label column
    attributions: dict[str, ModalityAttribution]
    fusion_weights: dict[str, float] | None  # over modalities, for fusions that weigh them (attention, gates, …)
    method: str = "occlusion"
    explained: str = ""  # what the attributions are attributions of ("log-odds of the predicted class", …)
    score: float = math.nan  # the explained number for the intact row
    baseline_score: float | None = None  # integrated gradients: the number at the all-baseline input

    def plot(self) -> "Figure":
        """This explanation drawn as a matplotlib ``Figure`` (no pyplot): a notebook displays it."""
        from .plots import plot_explanation

        return plot_explanation(self)

    @property
    def shares(self) -> dict[str, float]:
        return {c: a.share for c, a in self.attributions.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: shares, totals, per-token and per-feature scores (image/audio maps are in the PNGs)."""

        def num(x: Any) -> Any:
            if x is None:
                return None
            x = float(x)
            return None if math.isnan(x) else x

        cols = {}
        for c, a in self.attributions.items():
            d: dict[str, Any] = {"kind": a.kind, "share": num(a.share), "total": num(a.total), "present": a.present}
            if a.tokens is not None:
                d["tokens"] = [{"token": t, "score": num(s)} for t, s in zip(a.tokens, a.scores.tolist())]
            elif a.scores.ndim == 0:
                d["value"] = _jsonable(a.value)
            else:
                d["shape"] = list(a.scores.shape)
                d["max_abs"] = num(np.abs(a.scores).max()) if a.scores.size else 0.0
            cols[c] = d
        return {
            "index": _jsonable(self.index),
            "prediction": _jsonable(self.prediction),
            "probability": num(self.probability),
            "target": _jsonable(self.target),
            "method": self.method,
            "explained": self.explained,
            "score": num(self.score),
            "baseline_score": num(self.baseline_score),
            "fusion_weights": self.fusion_weights,
            "columns": cols,
        }


def _jsonable(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    v = row_label(v)
    return v if isinstance(v, (str, int, float, bool)) else str(v)


# ------------------------------------------------------------------------------------------------ attributors
@dataclass
class Variant:
    """An occluded copy of one row: replaced input tensors (batch of 1) and which modalities are switched off."""

    inputs: Inputs
    absent: tuple[str, ...] = ()


@dataclass
class PathPart:
    """A continuous input tensor that integrated gradients moves from ``baseline`` to ``x`` (both batch 1)."""

    key: str
    x: torch.Tensor
    baseline: torch.Tensor


class Attributor:
    """Attributions of one modality's processed tensors; one subclass per processor, registered by its name."""

    def __init__(self, modality: str, processor: Processor, encoder: nn.Module):
        self.modality, self.processor, self.encoder = modality, processor, encoder

    def columns(self) -> list[tuple[str, str]]:
        """(column, kind) pairs this modality reports."""
        p = self.processor
        return [(p.columns[0] if len(p.columns) == 1 else self.modality, p.kind)]

    def occlusion(self, inputs: Inputs) -> tuple[list[Variant], Callable[[np.ndarray], dict[str, tuple]]]:
        """The variants to score, and a function from their drops to ``{column: (scores, total)}``."""

        def assemble(drops: np.ndarray) -> dict[str, tuple]:
            return {self.columns()[0][0]: (np.asarray(drops[0]), float(drops[0]))}

        return [Variant({}, (self.modality,))], assemble

    def path(self, inputs: Inputs) -> list[PathPart]:
        """Integrated gradients' continuous inputs of this modality."""
        raise ExplainError(
            f"integrated gradients does not support modality '{self.modality}' (processor "
            f"'{getattr(type(self.processor), 'registry_name', type(self.processor).__name__)}'); "
            "use method='occlusion'"
        )

    def tables(self) -> dict[str, nn.Embedding]:
        """Integrated gradients' embedding tables of this modality (name → table), interpolated at their output."""
        return {}

    def ig_scores(
        self, parts: dict[str, torch.Tensor], tables: dict[str, torch.Tensor], inputs: Inputs
    ) -> dict[str, np.ndarray]:
        """``{column: scores}`` from the attributions of :meth:`path`'s parts (by key) and :meth:`tables`' outputs
        (by name; [1, ..., E] summed over E)."""
        raise NotImplementedError

    def display(self, inputs: Inputs, raw: dict[Any, Any]) -> dict[str, dict[str, Any]]:
        """What a person sees per column: ``background``, ``tokens`` and/or ``value``."""
        return {c: {} for c, _ in self.columns()}

    def empty_scores(self) -> dict[str, np.ndarray]:
        """Scores of a row where the modality is absent."""
        return {c: np.zeros(()) for c, _ in self.columns()}


ATTRIBUTORS: Registry[Attributor] = Registry("attributor")


def _windows(size: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, max(size - patch, 0) + 1, stride))
    if starts[-1] + patch < size:  # cover the last rows/columns too
        starts.append(size - patch)
    return starts


class _GridAttributor(Attributor):
    """A 2-D input (image [C, H, W], spectrogram [1, F, T]) occluded in rectangles set to 0 (the training mean)."""

    def grid(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(patch height, patch width, stride y, stride x)."""
        raise NotImplementedError

    def occlusion(self, inputs: Inputs) -> tuple[list[Variant], Callable[[np.ndarray], dict[str, tuple]]]:
        key = self.processor.key()
        x = inputs[key]
        h, w = x.shape[-2:]
        ph, pw, sy, sx = self.grid(h, w)
        boxes = [(y, xx) for y in _windows(h, ph, sy) for xx in _windows(w, pw, sx)]
        variants = [Variant({}, (self.modality,))]
        for y, xx in boxes:
            v = x.clone()
            v[..., y : y + ph, xx : xx + pw] = 0.0
            variants.append(Variant({key: v}))

        def assemble(drops: np.ndarray) -> dict[str, tuple]:
            total, cover = np.zeros((h, w)), np.zeros((h, w))
            for d, (y, xx) in zip(drops[1:], boxes):
                total[y : y + ph, xx : xx + pw] += d
                cover[y : y + ph, xx : xx + pw] += 1
            return {self.columns()[0][0]: (total / np.maximum(cover, 1), float(drops[0]))}

        return variants, assemble

    def path(self, inputs: Inputs) -> list[PathPart]:
        x = inputs[self.processor.key()]
        return [PathPart(self.processor.key(), x, torch.zeros_like(x))]


@ATTRIBUTORS.register("image")
class ImageAttributor(_GridAttributor):
    processor: ImageProcessor

    def grid(self, h: int, w: int) -> tuple[int, int, int, int]:
        # Patches a quarter of the side, moved an eighth: big enough to hide a part of an object, and overlapping
        # so that the map is smooth (each pixel gets the mean drop of the patches that cover it).
        return max(2, h // 4), max(2, w // 4), max(1, h // 8), max(1, w // 8)

    def ig_scores(
        self, parts: dict[str, torch.Tensor], tables: dict[str, torch.Tensor], inputs: Inputs
    ) -> dict[str, np.ndarray]:
        return {self.columns()[0][0]: as_numpy(parts[self.processor.key()][0].sum(0))}  # channels summed

    def display(self, inputs: Inputs, raw: dict[Any, Any]) -> dict[str, dict[str, Any]]:
        p = self.processor
        x = inputs[p.key()][0]
        pixels = x * torch.tensor(p.std).view(-1, 1, 1) + torch.tensor(p.mean).view(-1, 1, 1)
        img = as_numpy(pixels.clamp(0, 1)).transpose(1, 2, 0)
        if img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        return {self.columns()[0][0]: {"background": img}}

    def empty_scores(self) -> dict[str, np.ndarray]:
        return {self.columns()[0][0]: np.zeros((self.processor.size, self.processor.size))}


@ATTRIBUTORS.register("audio")
class AudioAttributor(_GridAttributor):
    processor: AudioProcessor

    def grid(self, h: int, w: int) -> tuple[int, int, int, int]:
        ph, pw = max(1, h // 8), max(1, w // 8)  # an 8 × 8 grid of frequency × time blocks
        return ph, pw, ph, pw

    def ig_scores(
        self, parts: dict[str, torch.Tensor], tables: dict[str, torch.Tensor], inputs: Inputs
    ) -> dict[str, np.ndarray]:
        return {self.columns()[0][0]: as_numpy(parts[self.processor.key()][0, 0])}

    def display(self, inputs: Inputs, raw: dict[Any, Any]) -> dict[str, dict[str, Any]]:
        p = self.processor
        return {self.columns()[0][0]: {"background": as_numpy(inputs[p.key()][0, 0] * p.std + p.mean)}}

    def empty_scores(self) -> dict[str, np.ndarray]:
        p = self.processor
        return {self.columns()[0][0]: np.zeros((p.n_mels, p.n_frames))}


@ATTRIBUTORS.register("timeseries")
class TimeSeriesAttributor(Attributor):
    """Scores over channel x time [C, L] on the processed series (the missing-share input channel is not shown).
    Occlusion sets one channel's window of 1/16 of the length to 0 (the training mean) at a time."""

    processor: TimeSeriesProcessor

    def _shape(self) -> tuple[int, int]:
        return int(self.processor.channels or 1), int(self.processor.length)

    def occlusion(self, inputs: Inputs) -> tuple[list[Variant], Callable[[np.ndarray], dict[str, tuple]]]:
        key = self.processor.key()
        x = inputs[key]
        c, length = self._shape()
        width = max(1, length // 16)
        boxes = [(ch, t) for ch in range(c) for t in _windows(length, width, width)]
        variants = [Variant({}, (self.modality,))]
        for ch, t in boxes:
            v = x.clone()
            v[:, ch, t : t + width] = 0.0
            variants.append(Variant({key: v}))

        def assemble(drops: np.ndarray) -> dict[str, tuple]:
            total, cover = np.zeros((c, length)), np.zeros((c, length))
            for d, (ch, t) in zip(drops[1:], boxes):
                total[ch, t : t + width] += d
                cover[ch, t : t + width] += 1
            return {self.columns()[0][0]: (total / np.maximum(cover, 1), float(drops[0]))}

        return variants, assemble

    def path(self, inputs: Inputs) -> list[PathPart]:
        x = inputs[self.processor.key()]
        return [PathPart(self.processor.key(), x, torch.zeros_like(x))]

    def ig_scores(
        self, parts: dict[str, torch.Tensor], tables: dict[str, torch.Tensor], inputs: Inputs
    ) -> dict[str, np.ndarray]:
        c, _ = self._shape()
        return {self.columns()[0][0]: as_numpy(parts[self.processor.key()][0, :c])}

    def display(self, inputs: Inputs, raw: dict[Any, Any]) -> dict[str, dict[str, Any]]:
        p = self.processor
        c, _ = self._shape()
        x = inputs[p.key()][0, :c] * torch.tensor(p.std).view(-1, 1) + torch.tensor(p.mean).view(-1, 1)
        x = x.masked_fill(~inputs[p.key("mask")][0].view(1, -1), float("nan"))  # padding is not part of the series
        return {self.columns()[0][0]: {"background": as_numpy(x)}}

    def empty_scores(self) -> dict[str, np.ndarray]:
        return {self.columns()[0][0]: np.zeros(self._shape())}


@ATTRIBUTORS.register("video")
class VideoAttributor(Attributor):
    """One score per sampled frame: occlusion sets one frame at a time to the training mean (the frame stays in the
    sequence, its content is gone); integrated gradients moves every pixel from the mean and sums per frame."""

    processor: VideoProcessor

    def _frames(self, inputs: Inputs) -> int:
        return int(inputs[self.processor.key("frames")][0].sum())

    def occlusion(self, inputs: Inputs) -> tuple[list[Variant], Callable[[np.ndarray], dict[str, tuple]]]:
        key = self.processor.key()
        x = inputs[key]
        variants = [Variant({}, (self.modality,))]
        for f in range(self._frames(inputs)):
            v = x.clone()
            v[:, f] = 0.0
            variants.append(Variant({key: v}))

        def assemble(drops: np.ndarray) -> dict[str, tuple]:
            return {self.columns()[0][0]: (np.asarray(drops[1:], dtype=np.float64), float(drops[0]))}

        return variants, assemble

    def path(self, inputs: Inputs) -> list[PathPart]:
        x = inputs[self.processor.key()]
        return [PathPart(self.processor.key(), x, torch.zeros_like(x))]

    def ig_scores(
        self, parts: dict[str, torch.Tensor], tables: dict[str, torch.Tensor], inputs: Inputs
    ) -> dict[str, np.ndarray]:
        n = self._frames(inputs)
        return {self.columns()[0][0]: as_numpy(parts[self.processor.key()][0, :n].sum((1, 2, 3)))}

    def display(self, inputs: Inputs, raw: dict[Any, Any]) -> dict[str, dict[str, Any]]:
        p = self.processor
        x = inputs[p.key()][0, : self._frames(inputs)]
        pixels = x * torch.tensor(p.std).view(1, -1, 1, 1) + torch.tensor(p.mean).view(1, -1, 1, 1)
        return {self.columns()[0][0]: {"background": as_numpy(pixels.clamp(0, 1)).transpose(0, 2, 3, 1)}}

    def empty_scores(self) -> dict[str, np.ndarray]:
        return {self.columns()[0][0]: np.zeros(0)}


@ATTRIBUTORS.register("text")
class TextAttributor(Attributor):
    """Token ids: occlusion removes one token at a time; integrated gradients runs over the token embeddings."""

    processor: TextProcessor

    def _ids(self, inputs: Inputs) -> torch.Tensor:
        ids = inputs[self.processor.key()][0]
        return ids[: int((ids != 0).sum())]

    def occlusion(self, inputs: Inputs) -> tuple[list[Variant], Callable[[np.ndarray], dict[str, tuple]]]:
        key = self.processor.key()
        full = inputs[key]
        ids = self._ids(inputs)
        variants = [Variant({}, (self.modality,))]
        for t in range(len(ids)):
            kept = torch.cat([ids[:t], ids[t + 1 :]])
            if len(kept) == 0:
                kept = ids.new_tensor([1])  # the processor's decoding of an empty text: one unknown token
            v = torch.zeros_like(full)
            v[0, : len(kept)] = kept
            variants.append(Variant({key: v}))

        def assemble(drops: np.ndarray) -> dict[str, tuple]:
            return {self.columns()[0][0]: (np.asarray(drops[1:], dtype=np.float64), float(drops[0]))}

        return variants, assemble

    def path(self, inputs: Inputs) -> list[PathPart]:
        if not self.tables():
            return super().path(inputs)
        return []

    def tables(self) -> dict[str, nn.Embedding]:
        lookup = getattr(self.encoder, "lookup_tables", None)
        tables = lookup() if lookup is not None else {}
        return {self.modality: tables[self.modality]} if self.modality in tables else {}

    def ig_scores(
        self, parts: dict[str, torch.Tensor], tables: dict[str, torch.Tensor], inputs: Inputs
    ) -> dict[str, np.ndarray]:
        n = len(self._ids(inputs))
        return {self.columns()[0][0]: as_numpy(tables[self.modality][0, :n].sum(-1))}

    def display(self, inputs: Inputs, raw: dict[Any, Any]) -> dict[str, dict[str, Any]]:
        col = self.columns()[0][0]
        ids = self._ids(inputs).tolist()
        words = self.processor.tokens(str(raw.get(col, "")))[: len(ids)]
        vocab = self.processor.vocab
        # The words as written; where the text was empty, what the model saw.
        tokens = words if len(words) == len(ids) else [vocab[i] for i in ids]
        return {col: {"tokens": tokens}}

    def empty_scores(self) -> dict[str, np.ndarray]:
        return {self.columns()[0][0]: np.zeros(0)}


@ATTRIBUTORS.register("tabular")
class TabularAttributor(Attributor):
    """One score per column: occlusion sets the value missing; integrated gradients moves numbers from their
    training mean and categories from the "missing" embedding."""

    processor: TabularProcessor

    def columns(self) -> list[tuple[str, str]]:
        p = self.processor
        return [(c, "numeric") for c in p.numeric] + [(c, "category") for c in p.categorical]

    def occlusion(self, inputs: Inputs) -> tuple[list[Variant], Callable[[np.ndarray], dict[str, tuple]]]:
        p = self.processor
        num, cat = inputs[p.key("numeric")], inputs[p.key("category")]
        variants = []
        for j in range(len(p.numeric)):
            v = num.clone()
            v[0, 2 * j], v[0, 2 * j + 1] = 0.0, 1.0
            variants.append(self._variant(v, cat))
        for j in range(len(p.categorical)):
            v = cat.clone()
            v[0, j] = MISSING_CATEGORY
            variants.append(self._variant(num, v))

        def assemble(drops: np.ndarray) -> dict[str, tuple]:
            return {c: (np.asarray(d), float(d)) for (c, _), d in zip(self.columns(), drops)}

        return variants, assemble

    def _variant(self, num: torch.Tensor, cat: torch.Tensor) -> Variant:
        p = self.processor
        # Every value missing: the processor would have decoded the row as the modality absent.
        all_missing = bool((num[0, 1::2] == 1).all()) and bool((cat == MISSING_CATEGORY).all())
        return Variant({p.key("numeric"): num, p.key("category"): cat}, (self.modality,) if all_missing else ())

    def path(self, inputs: Inputs) -> list[PathPart]:
        if self.processor.categorical and len(self.tables()) < len(self.processor.categorical):
            return super().path(inputs)
        key = self.processor.key("numeric")
        x = inputs[key]
        base = x.clone()
        base[:, 0::2] = 0.0  # numbers at their training mean; the missing flags stay as they are
        return [PathPart(key, x, base)]

    def tables(self) -> dict[str, nn.Embedding]:
        lookup = getattr(self.encoder, "lookup_tables", None)
        tables = lookup() if lookup is not None else {}
        return {c: tables[c] for c in self.processor.categorical if c in tables}

    def ig_scores(
        self, parts: dict[str, torch.Tensor], tables: dict[str, torch.Tensor], inputs: Inputs
    ) -> dict[str, np.ndarray]:
        num = parts[self.processor.key("numeric")][0]
        out = {c: np.asarray(float(num[2 * j])) for j, c in enumerate(self.processor.numeric)}
        out.update({c: np.asarray(float(tables[c].sum())) for c in self.processor.categorical})
        return out

    def display(self, inputs: Inputs, raw: dict[Any, Any]) -> dict[str, dict[str, Any]]:
        return {c: {"value": raw.get(c)} for c, _ in self.columns()}


def _attributor(modality: str, proc: Processor, encoder: nn.Module) -> Attributor:
    name = getattr(type(proc), "registry_name", "")
    cls = ATTRIBUTORS.get(name) if name in ATTRIBUTORS else Attributor
    return cls(modality, proc, encoder)


# ---------------------------------------------------------------------------------------------------- methods
class Method:
    """An attribution method: ``{column: (scores, total)}`` for one collated row."""

    gradients = False  # explains ExplainTarget.gradient_score (logits) rather than .score (log-odds or probabilities)

    def attribute(
        self,
        model: nn.Module,
        attributors: list[Attributor],
        inputs: Inputs,
        masks: Inputs,
        target: ExplainTarget,
        ref: int,
    ) -> tuple[dict[str, tuple], float | None]:
        raise NotImplementedError


METHODS: Registry[Method] = Registry("explanation method")


def _repeat(t: torch.Tensor, n: int) -> torch.Tensor:
    return t.expand(n, *t.shape[1:]).clone() if t.shape[0] == 1 else t.repeat(n, *([1] * (t.dim() - 1)))


@METHODS.register("occlusion")
class Occlusion(Method):
    """Drop of the explained number when a part of the input is replaced by "nothing"."""

    chunk = 128

    @torch.no_grad()
    def attribute(
        self,
        model: nn.Module,
        attributors: list[Attributor],
        inputs: Inputs,
        masks: Inputs,
        target: ExplainTarget,
        ref: int,
    ) -> tuple[dict[str, tuple], float | None]:
        p0 = float(target.score(model(inputs, masks), ref)[0])
        plans = [(a, *a.occlusion(inputs)) for a in attributors if bool(masks[a.modality][0])]
        variants = [v for _, vs, _ in plans for v in vs]
        scores = []
        for start in range(0, len(variants), self.chunk):
            part = variants[start : start + self.chunk]
            batch = {k: torch.cat([v.inputs.get(k, t) for v in part]) for k, t in inputs.items()}
            bmasks = {
                m: torch.tensor([bool(t[0]) and m not in v.absent for v in part], device=t.device)
                for m, t in masks.items()
            }
            scores.append(as_numpy(target.score(model(batch, bmasks), ref)))
        drops = p0 - np.concatenate(scores) if scores else np.zeros(0)
        out, at = {}, 0
        for _, vs, assemble in plans:
            out.update(assemble(drops[at : at + len(vs)]))
            at += len(vs)
        return out, None


@METHODS.register("integrated_gradients")
class IntegratedGradients(Method):
    """Path-integrated gradients from a baseline input (midpoint Riemann sum over ``steps`` points)."""

    steps = 32
    gradients = True

    def attribute(
        self,
        model: nn.Module,
        attributors: list[Attributor],
        inputs: Inputs,
        masks: Inputs,
        target: ExplainTarget,
        ref: int,
    ) -> tuple[dict[str, tuple], float | None]:
        n = self.steps
        present = [a for a in attributors if bool(masks[a.modality][0])]
        parts = {p.key: p for a in present for p in a.path(inputs)}
        device = next(iter(inputs.values())).device
        alpha = (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n
        batch = {k: _repeat(t, n) for k, t in inputs.items()}
        bmasks = {m: _repeat(t, n) for m, t in masks.items()}
        moved = {}
        for key, p in parts.items():
            w = alpha.view(-1, *([1] * (p.x.dim() - 1)))
            moved[key] = (p.baseline + w * (p.x - p.baseline)).requires_grad_(True)
            batch[key] = moved[key]
        hooked: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # name → (output, base, moved)
        handles = []

        def hook_for(name: str) -> Callable:
            def hook(module: nn.Embedding, args: tuple, output: torch.Tensor) -> torch.Tensor:
                base = module.weight[0].detach()  # padding / the missing category
                a = alpha.view(-1, *([1] * (output.dim() - 1))).to(output.dtype)
                moved_out = (base + a * (output.detach() - base)).requires_grad_(True)
                hooked[name] = (output.detach(), base, moved_out)
                return moved_out

            return hook

        for a in present:
            for name, table in a.tables().items():
                handles.append(table.register_forward_hook(hook_for(name)))
        try:
            # cuDNN's RNN has no backward pass in eval mode; the native kernels do.
            with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
                scores = target.gradient_score(model(batch, bmasks), ref)
                leaves = list(moved.values()) + [m for _, _, m in hooked.values()]
                grads = list(torch.autograd.grad(scores.sum(), leaves, allow_unused=True)) if leaves else []
        finally:
            for h in handles:
                h.remove()
        grads = [torch.zeros_like(t) if g is None else g for t, g in zip(leaves, grads)]
        part_attr = {
            key: ((p.x - p.baseline) * g.mean(0, keepdim=True)).detach()
            for (key, p), g in zip(parts.items(), grads[: len(moved)])
        }
        # Every row of a hooked output is the same input's embedding; the attribution sums over its last axis later.
        table_attr = {
            name: ((o[:1] - base) * g.mean(0, keepdim=True)).detach()
            for (name, (o, base, _)), g in zip(hooked.items(), grads[len(moved) :])
        }
        with torch.no_grad():
            base_batch = {k: (parts[k].baseline if k in parts else t) for k, t in inputs.items()}
            base_score = _baseline_score(model, base_batch, masks, target, ref, present)
        out = {}
        for a in present:
            for col, s in a.ig_scores(part_attr, table_attr, inputs).items():
                out[col] = (s, float(np.sum(s)))
        return out, base_score


def _baseline_score(
    model: nn.Module, inputs: Inputs, masks: Inputs, target: ExplainTarget, ref: int, present: list[Attributor]
) -> float:
    """The explained number with every continuous part at its baseline and every hooked table at its base row."""
    handles = []
    for a in present:
        for table in a.tables().values():
            handles.append(
                table.register_forward_hook(
                    lambda module, args, output: module.weight[0].detach().expand_as(output).clone()
                )
            )
    try:
        return float(target.gradient_score(model(inputs, masks), ref)[0])
    finally:
        for h in handles:
            h.remove()


# -------------------------------------------------------------------------------------------------- explain
def _shares(totals: dict[str, float]) -> dict[str, float]:
    s = sum(totals.values())
    return {c: (v / s if s > 0 else 0.0) for c, v in totals.items()}


def explain(
    predictor: PipelineSource,
    rows: Any,
    *,
    method: str = "occlusion",
    data_root: str | Path | None = None,
    on_error: str | None = None,
    progress: bool = False,
    target: str | None = None,
) -> list[Explanation]:
    """Explain each row of ``rows`` (a path, DataFrame or Table) for a fitted classification/regression predictor.

    Args:
        method: "occlusion" or "integrated_gradients" (see the module docstring).
        target: classification, what occlusion explains: "log_odds" of the predicted class (None: the default) or
            its "probability" (saturates near 1: on confident rows most drops are ~0). Integrated gradients explains
            the logit either way; regression explains the predicted value (only None is accepted).
        data_root: folder the table's relative file paths resolve against.

    Returns one :class:`Explanation` per usable row, in table order. Each holds the prediction, a
    :class:`ModalityAttribution` per input column (image/audio maps, per-token and per-feature scores, the
    column's share of the row's attribution) and the fusion's modality weights where it has them.
    """
    predictor = as_pipeline(predictor)
    task = explainable_task(predictor, "explanations")
    if method not in METHODS:
        raise ConfigError(f"unknown explanation method '{method}'; choose one of: {', '.join(METHODS.names())}")
    runner = METHODS.build(method)
    explained = explain_target(task, target)
    frame, prepared = prepare_rows(predictor, rows, data_root, on_error, labelled=False)
    model = cast("MultimodalModel", predictor.model)  # explainable_task refuses generation: the model is fused
    model.eval()
    device = next(model.parameters()).device
    encoders = getattr(model, "encoders", None)
    if encoders is None and method == "integrated_gradients":
        raise ExplainError("integrated gradients needs one network; use occlusion for ensembles")
    # occlusion only runs the model: an ensemble (no encoders of its own) gets attributors without an encoder
    attributors = [
        _attributor(m, p, encoders[m] if encoders is not None else nn.Identity())
        for m, p in predictor.processors.items()
    ]
    if method == "integrated_gradients":  # refuse unsupported modalities before any work
        for a in attributors:
            if type(a) is Attributor:
                a.path({})
    collate = Collator(prepared, predictor.processors, False, torch.long)
    has_label = predictor.single_label in frame.columns
    out = []
    bar = Progress(len(prepared), "explaining", "rows", enabled=progress, min_bar=0)
    for i in range(len(prepared)):
        batch = collate([i]).to(device)
        pos = int(prepared.rows[i])
        raw = frame.iloc[pos].to_dict()
        with torch.no_grad():
            outputs = model(batch.inputs, batch.masks)
        ref = explained.reference(outputs)
        found, base_score = runner.attribute(model, attributors, batch.inputs, batch.masks, explained, ref)
        weights = fusion_weights(model, batch.inputs, batch.masks)
        attributions: dict[str, ModalityAttribution] = {}
        for a in attributors:
            present = bool(batch.masks[a.modality][0])
            shown = a.display(batch.inputs, raw) if present else {c: {} for c, _ in a.columns()}
            empty = a.empty_scores()
            for col, kind in a.columns():
                scores, total = found.get(col, (empty[col], 0.0))
                info = shown.get(col, {})
                value = info.get("value", raw.get(col) if kind in ("numeric", "category") else None)
                attributions[col] = ModalityAttribution(
                    col,
                    kind,
                    0.0,
                    np.asarray(scores, dtype=np.float64),
                    info.get("background"),
                    info.get("tokens"),
                    float(total),
                    present and not (kind in ("numeric", "category") and is_empty(value)),
                    value,
                )
        mass = {
            c: (abs(a.total) if method == "occlusion" else float(np.abs(a.scores).sum()))
            for c, a in attributions.items()
        }
        for c, s in _shares(mass).items():
            attributions[c].share = s
        truth = raw.get(predictor.single_label) if has_label else None
        out.append(
            Explanation(
                frame.index[pos],
                row_label(task.postprocess(as_numpy(outputs))[0]),
                explained.probability(outputs),
                None if truth is None or is_empty(truth) else row_label(truth),
                attributions,
                weights[0] if weights is not None else None,
                method,
                explained.gradient_unit if runner.gradients else explained.unit,
                float((explained.gradient_score if runner.gradients else explained.score)(outputs, ref)[0]),
                base_score,
            )
        )
        bar.advance()
    bar.close()
    return out
