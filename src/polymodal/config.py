"""Typed configuration. One pydantic model per section; YAML/JSON in and out.

``None`` means "choose automatically at fit time"; the run directory stores the *resolved* config, so a run
can be repeated exactly from its ``config.yaml``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError

ColumnKindName = Literal["image", "audio", "text", "numeric", "category", "ignore"]
OnError = Literal["fail", "skip", "missing"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LimitsConfig(_Section):
    """Safety limits applied while decoding user files."""

    max_image_pixels: int = Field(40_000_000, gt=0, description="larger images are refused (decompression bombs)")
    max_audio_seconds: float = Field(600.0, gt=0, description="longer audio files are refused")
    max_text_chars: int = Field(20_000, gt=0, description="longer texts are truncated to this many characters")
    max_file_bytes: int = Field(200_000_000, gt=0, description="larger image/audio files are refused")


class ProcessingConfig(_Section):
    """How raw values become tensors. ``None`` = learned from the training split."""

    image_size: int | None = Field(None, ge=8, le=1024)
    image_channels: Literal[1, 3] | None = None
    image_augment: bool = True
    sample_rate: int | None = Field(None, ge=1000, le=48_000)
    audio_seconds: float | None = Field(None, gt=0, description="clips are cropped/padded to this length")
    n_mels: int = Field(40, ge=8, le=256)
    audio_augment: bool = True
    text_max_tokens: int | None = Field(None, ge=1, le=4096)
    vocab_size: int = Field(20_000, ge=10)
    text_min_freq: int = Field(1, ge=1)


class EncoderChoice(_Section):
    """An encoder by registry name plus its own parameters (validated by that encoder's config class)."""

    model_config = ConfigDict(extra="allow")
    name: str

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _default_encoders() -> dict[str, EncoderChoice]:
    return {
        "image": EncoderChoice(name="image_cnn"),
        "audio": EncoderChoice(name="audio_cnn"),
        "text": EncoderChoice(name="text_rnn"),
        "tabular": EncoderChoice(name="tabular_mlp"),
    }


class FusionConfig(_Section):
    model_config = ConfigDict(extra="allow")
    name: str = "concat"
    dim: int = Field(256, ge=4, description="width of the fused representation")
    dropout: float = Field(0.1, ge=0, lt=1)

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class DecodingConfig(_Section):
    """How a generation model turns its next-token probabilities into text (``predict`` / ``evaluate``).

    Validation during ``fit`` (early stopping) always decodes greedily, which is cheaper.
    """

    method: Literal["greedy", "beam"] = "beam"
    beam_width: int = Field(4, ge=1, le=64, description="hypotheses kept per row (beam search)")
    length_penalty: float = Field(1.0, ge=0, description="beam hypotheses are ranked by log-probability / "
                                  "length ** length_penalty (0: raw log-probability, favours short outputs)")
    max_length: int | None = Field(None, ge=1, description="tokens generated at most (end token included); "
                                   "None = the longest training target (generation.max_target_tokens)")
    no_repeat_ngram: int = Field(0, ge=0, description="never repeat an n-gram of this size (0 = off)")


class GenerationConfig(_Section):
    """The text decoder of ``problem_type: generation`` (captioning, free-form answers) and its tokenizer."""

    layers: int = Field(2, ge=1, le=12, description="Transformer decoder layers")
    dim: int = Field(128, ge=8, description="decoder width")
    heads: int = Field(4, ge=1, description="attention heads (must divide dim)")
    feedforward: int | None = Field(None, ge=8, description="feed-forward width (None = 2 x dim)")
    dropout: float = Field(0.1, ge=0, lt=1)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    tokenizer: Literal["auto", "bpe", "pretrained"] = Field(
        "auto", description="bpe: a byte-level BPE trained on the training targets; pretrained: the tokenizer of "
        "pretrained_tokenizer; auto: pretrained when the text encoder is a pretrained model, else bpe")
    pretrained_tokenizer: str | None = Field(None, description="folder or cached hub id of a pretrained tokenizer")
    vocab_size: int = Field(4000, ge=16, description="largest BPE vocabulary (smaller when the targets need fewer)")
    max_target_tokens: int | None = Field(None, ge=2, le=1024, description="target tokens kept, end token "
                                          "included; longer targets are truncated. None = the longest training "
                                          "target (at most 128)")
    max_memory_tokens: int = Field(256, ge=1, description="tokens kept per input modality for cross-attention "
                                   "(the first ones)")
    decoding: DecodingConfig = Field(default_factory=DecodingConfig)


class TaskConfig(_Section):
    problem_type: Literal["binary", "multiclass", "regression", "generation"] | None = None
    class_weights: Literal["none", "balanced"] = "none"
    generation: GenerationConfig = Field(default_factory=GenerationConfig)


class TrainingConfig(_Section):
    max_epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    learning_rate: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    patience: int = Field(4, ge=1, description="epochs without validation improvement before stopping")
    validation_fraction: float = Field(0.15, gt=0, lt=0.9)
    group_column: str | None = Field(None, description="rows sharing a value of this column (a patient, a user, a "
                                     "recording session) stay on one side of the train/validation split; the "
                                     "column is not an input")
    seed: int = 0
    time_limit: float | None = Field(None, gt=0, description="seconds of training; at the first step past it the "
                                     "partial epoch is validated and the best epoch so far is kept")
    modality_dropout: float = Field(0.0, ge=0, lt=1, description="probability of hiding each modality of a "
                                    "training row (a row always keeps one), for robustness to missing modalities")
    num_workers: int = Field(0, ge=0)
    gradient_clip: float | None = 1.0
    accelerator: str = "auto"
    precision: str | None = None


class PolymodalConfig(_Section):
    """Everything that defines a run, apart from the data and the label."""

    columns: dict[str, ColumnKindName] = Field(default_factory=dict, description="column kind overrides")
    ignore: list[str] = Field(default_factory=list)
    data_root: str | None = None
    on_error: OnError = "fail"
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    processing: ProcessingConfig = Field(default_factory=ProcessingConfig)
    encoders: dict[str, EncoderChoice] = Field(default_factory=_default_encoders)
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @field_validator("encoders", mode="after")
    @classmethod
    def _fill_encoder_defaults(cls, v: dict[str, EncoderChoice]) -> dict[str, EncoderChoice]:
        merged = _default_encoders()
        unknown = set(v) - set(merged)
        if unknown:
            raise ValueError(f"encoders are chosen per modality kind {sorted(merged)}, not {sorted(unknown)}")
        merged.update(v)
        return merged

    # --- I/O -----------------------------------------------------------------------------------------------
    @classmethod
    def from_any(cls, value: "PolymodalConfig | dict[str, Any] | str | Path | None") -> "PolymodalConfig":
        """Build from a config object, a dict, or a YAML/JSON file path."""
        if value is None:
            return cls()
        if isinstance(value, PolymodalConfig):
            return value.model_copy(deep=True)
        if isinstance(value, (str, Path)):
            value = read_config_file(value)
        try:
            return cls.model_validate(value)
        except ValidationError as e:
            raise ConfigError(f"invalid config:\n{e}") from None

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML/JSON config file, as written (nothing filled in or validated yet)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        value = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid YAML/JSON: {e}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return value
