"""Text generation: the target column is text (a caption, a free-form answer); the model writes it token by token.

Targets are token ids from a :class:`~polymodal.generation.tokenizer.TargetTokenizer` fitted on the training
targets, padded into one [N, max_target_tokens] array (the end token included; longer targets are truncated, with
a warning). The network is a :class:`~polymodal.generation.model.Seq2SeqModel` whose head is a Transformer decoder
over the encoders' token sequences; training uses teacher forcing and label-smoothed cross-entropy.

At predict/evaluate time rows are decoded with ``task.generation.decoding`` (beam search by default); validation
during ``fit`` decodes greedily. Metrics: BLEU-1..4, ROUGE-L, CIDEr-D and exact match
(:mod:`polymodal.metrics.text`); early stopping follows BLEU-4, or exact match when the training targets
are short answers (a median of at most 3 words).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..config import ENCODER_KINDS, DecodingConfig, PolymodalConfig, TaskConfig
from ..data.loaders import is_empty
from ..errors import ConfigError, DataError
from ..generation import model as _seq2seq  # noqa: F401  (registers the "seq2seq" architecture)
from ..generation.decoding import Specials
from ..generation.model import Seq2SeqModel, TransformerDecoderHead
from ..generation.tokenizer import TargetTokenizer
from ..metrics.text import text_metrics, words
from ..registry import TASKS, register
from .base import Task

log = logging.getLogger("polymodal")

PRETRAINED_TEXT_ENCODERS = ("hf_text", "clip_text")
MAX_AUTO_TARGET_TOKENS = 128
SHORT_ANSWER_WORDS = 3


@dataclass
class Generated:
    """Decoded rows: ``ids`` [N, L] (padded), ``scores`` [N] sequence log-probabilities (end token included),
    ``lengths`` [N] tokens generated."""

    ids: np.ndarray
    scores: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def _pretrained_text_model(config: PolymodalConfig, kinds: set[str]) -> Any:
    """The model of the first pretrained text encoder chosen: a column's own entry (those encoders only encode
    text, so such a key is a text column) before the ``text`` kind's; None when there is none."""
    keys = sorted(k for k in config.encoders if k not in ENCODER_KINDS)
    if "text" in kinds:
        keys.append("text")
    for key in keys:
        choice = config.encoders[key]
        if choice.name in PRETRAINED_TEXT_ENCODERS:
            return choice.params().get("model")
    return None


@register(TASKS, "generation")
class GenerationTask(Task):
    problem_type = "generation"
    target_dtype = torch.long
    architecture = "seq2seq"
    monitor = ("bleu4", "max")

    def __init__(self, config: TaskConfig):
        super().__init__(config)
        self.generation = config.generation
        self.decoding: DecodingConfig = config.generation.decoding
        self.tokenizer: TargetTokenizer | None = None
        self.max_target_tokens = 0

    # --- configuration that depends on the rest of the config -------------------------------------------------
    def resolve(self, config: PolymodalConfig, kinds: set[str]) -> None:
        """``tokenizer: auto`` → the pretrained text model's tokenizer when one is chosen, else a BPE."""
        gen = config.task.generation
        text_model = _pretrained_text_model(config, kinds)
        if gen.tokenizer == "auto":
            gen.tokenizer = "pretrained" if (gen.pretrained_tokenizer or text_model) else "bpe"
        if gen.tokenizer == "pretrained" and gen.pretrained_tokenizer is None:
            if text_model is None:
                raise ConfigError(
                    "task.generation.tokenizer is 'pretrained' but no pretrained_tokenizer is given and "
                    "the text encoder is not a pretrained model; name a tokenizer folder or use 'bpe'"
                )
            gen.pretrained_tokenizer = str(text_model)
        self.generation = gen

    # --- targets --------------------------------------------------------------------------------------------
    def _texts(self, y: pd.Series) -> list[str]:
        return ["" if is_empty(v) else str(v).strip() for v in y.tolist()]

    def fit_target(self, y: pd.Series) -> None:
        gen = self.generation
        texts = [t for t in self._texts(y) if t]
        if not texts:
            raise DataError("the label column has no text to learn to generate")
        if gen.tokenizer == "pretrained":
            if gen.pretrained_tokenizer is None:
                raise ConfigError("task.generation.pretrained_tokenizer is not set")
            self.tokenizer = TargetTokenizer.from_pretrained(gen.pretrained_tokenizer)
        else:
            self.tokenizer = TargetTokenizer.train_bpe(texts, gen.vocab_size)
        longest = max(len(ids) for ids in self.tokenizer.encode_batch(texts)) + 1  # + the end token
        self.max_target_tokens = int(gen.max_target_tokens or min(longest, MAX_AUTO_TARGET_TOKENS))
        short = float(np.median([len(words(t)) for t in texts])) <= SHORT_ANSWER_WORDS
        self.monitor = ("exact_match", "max") if short else ("bleu4", "max")

    def encode_target(self, y: pd.Series) -> np.ndarray:
        """[N, max_target_tokens] token ids: the text's tokens, the end token, then padding. A longer text is cut
        to max_target_tokens - 1 tokens (then the end token); an empty one is the end token alone."""
        tok = self._tok()
        n = self.max_target_tokens
        out = np.full((len(y), n), tok.pad_id, dtype=np.int64)
        cut = 0
        for i, ids in enumerate(tok.encode_batch(self._texts(y))):
            if len(ids) > n - 1:
                ids, cut = ids[: n - 1], cut + 1
            out[i, : len(ids)] = ids
            out[i, len(ids)] = tok.eos_id
        if cut:
            log.warning(
                "%d target texts are longer than %d tokens and were truncated for training (raise "
                "task.generation.max_target_tokens to keep them whole)",
                cut,
                n - 1,
            )
        return out

    def _tok(self) -> TargetTokenizer:
        if self.tokenizer is None:
            raise ConfigError("the generation task has no tokenizer yet (fit or load the predictor first)")
        return self.tokenizer

    @property
    def n_outputs(self) -> int:
        return self._tok().vocab_size

    @property
    def specials(self) -> Specials:
        tok = self._tok()
        return Specials(tok.pad_id, tok.bos_id, tok.eos_id)

    def head(self, dim: int) -> nn.Module:
        """The decoder (its width is ``task.generation.dim``; ``dim`` is the same number)."""
        return TransformerDecoderHead(self.n_outputs, self.generation, self.max_target_tokens, self.specials)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Label-smoothed cross-entropy of the teacher-forced logits [B, T, V] against the target ids; padding
        is ignored."""
        t, v = outputs.shape[1], outputs.shape[2]
        return torch.nn.functional.cross_entropy(
            outputs.float().reshape(-1, v),
            target[:, :t].reshape(-1),
            ignore_index=self.specials.pad,
            label_smoothing=self.generation.label_smoothing,
        )

    # --- decoding -------------------------------------------------------------------------------------------
    def _decode(self, model: nn.Module, batch: Any, decoding: DecodingConfig) -> Generated:
        d = cast(Seq2SeqModel, model).generate(batch.inputs, batch.masks, decoding, self.max_target_tokens)
        return Generated(d.ids.cpu().numpy(), d.scores.float().cpu().numpy(), d.lengths.cpu().numpy())

    def predict_batch(self, model: nn.Module, batch: Any) -> Generated:
        return self._decode(model, batch, self.decoding)

    def validation_outputs(self, model: nn.Module, batch: Any, outputs: torch.Tensor) -> Generated:
        greedy = self.decoding.model_copy(update={"method": "greedy"})
        return self._decode(model, batch, greedy)

    def select_outputs(self, outputs: Generated, rows: np.ndarray) -> Generated:
        return Generated(outputs.ids[rows], outputs.scores[rows], outputs.lengths[rows])

    def collect_outputs(self, parts: list[Generated]) -> Generated:
        width = max([p.ids.shape[1] for p in parts] + [1])
        pad = self.specials.pad
        ids = [np.pad(p.ids, ((0, 0), (0, width - p.ids.shape[1])), constant_values=pad) for p in parts]
        return Generated(
            np.concatenate(ids) if ids else np.zeros((0, width), np.int64),
            np.concatenate([p.scores for p in parts]) if parts else np.zeros(0, np.float32),
            np.concatenate([p.lengths for p in parts]) if parts else np.zeros(0, np.int64),
        )

    def postprocess(self, outputs: Generated) -> np.ndarray:
        return np.asarray(self._tok().decode_batch(outputs.ids), dtype=object)

    def metrics(self, y_true: pd.Series, outputs: Generated) -> dict[str, float]:
        return text_metrics(list(self.postprocess(outputs)), self._texts(y_true))

    # --- persistence ----------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "tokenizer": self._tok().state(),
            "max_target_tokens": self.max_target_tokens,
            "monitor": list(self.monitor),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.tokenizer = TargetTokenizer.from_state(state["tokenizer"])
        self.max_target_tokens = int(state["max_target_tokens"])
        self.monitor = cast("tuple[str, str]", tuple(state["monitor"]))  # as state() wrote it
