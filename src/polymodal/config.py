"""Typed configuration. One pydantic model per section; YAML/JSON in and out.

``None`` means "choose automatically at fit time"; the run directory stores the *resolved* config, so a run
can be repeated exactly from its ``config.yaml``.
"""

from __future__ import annotations

import difflib
import json
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .errors import ConfigError
from .registry import ENCODERS

ColumnKindName = Literal["image", "audio", "video", "text", "timeseries", "numeric", "category", "ignore"]
ProblemType = Literal[
    "binary",
    "multiclass",
    "multilabel",
    "regression",
    "generation",
    "multitask",
    "retrieval",
    "reconstruction",
    "pretrain",
]
PROBLEM_TYPES: tuple[str, ...] = get_args(ProblemType)
OnError = Literal["fail", "skip", "missing"]
# Lightning's accelerator names (its registry: cpu, cuda, mps, tpu; plus auto and gpu) and precision values, listed
# here so that the config check imports no Lightning; tests/test_hostile_values.py compares them with Lightning's.
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu"]
#: Lightning's strategy names (its StrategyRegistry) that a polymodal fit can use; "auto": one device, or DDP on several
Strategy = Literal[
    "auto",
    "ddp",
    "ddp_spawn",
    "ddp_fork",
    "ddp_notebook",
    "ddp_find_unused_parameters_true",
    "ddp_spawn_find_unused_parameters_true",
    "fsdp",
    "fsdp_cpu_offload",
    "deepspeed",
    "deepspeed_stage_1",
    "deepspeed_stage_2",
    "deepspeed_stage_2_offload",
    "deepspeed_stage_3",
    "deepspeed_stage_3_offload",
    "single_device",
]
Precision = Literal[
    "16-mixed",
    "bf16-mixed",
    "32-true",
    "16-true",
    "bf16-true",
    "64-true",
    "transformer-engine",
    "transformer-engine-float16",
    "16",
    "32",
    "64",
    "bf16",
]
#: The largest seed: numpy, torch and Lightning's seed_everything all take 0 .. 2**32 - 1 (Lightning replaces a seed
#: outside it by a random one, which would silently break reproducibility).
SEED_MAX = 2**32 - 1


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode reads true as 1 and false as 0: `max_epochs: true` would train one epoch.
        if isinstance(v, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if not _admits_bool(annotation):
                raise PydanticCustomError("number_type", "expected {expected}", {"expected": _type_name(annotation)})
        return v


class LimitsConfig(_Section):
    """Safety limits applied while decoding user files."""

    max_image_pixels: int = Field(40_000_000, gt=0, description="larger images are refused (decompression bombs)")
    max_audio_seconds: float = Field(600.0, gt=0, description="longer audio files are refused")
    max_video_seconds: float = Field(600.0, gt=0, description="longer videos are refused (read from the header)")
    max_video_frames: int = Field(
        20_000, gt=0, description="videos with more frames are refused (by the header, or while decoding)"
    )
    max_video_pixels: int = Field(
        36_000_000, gt=0, description="videos with larger frames are refused (decompression bombs; 8K is 33 M)"
    )
    max_text_chars: int = Field(20_000, gt=0, description="longer texts are truncated to this many characters")
    max_file_bytes: int = Field(200_000_000, gt=0, description="larger image/audio/video/time-series files are refused")
    max_series_steps: int = Field(1_000_000, gt=0, description="time series with more steps (rows) are refused")
    max_series_channels: int = Field(1_000, gt=0, description="time series with more channels (columns) are refused")
    confine_to_root: bool = Field(
        False,
        description="refuse file paths that resolve outside the data root (absolute or '../' paths elsewhere); "
        "turn on for tables from untrusted sources (the server never opens client paths at all)",
    )


class ProcessingConfig(_Section):
    """How raw values become tensors. ``None`` = learned from the training split."""

    image_size: int | None = Field(None, ge=8, le=1024, description="images are resized to this square size")
    image_channels: Literal[1, 3] | None = Field(None, description="1 = grayscale, 3 = colour")
    image_augment: bool = Field(True, description="random shifts and flips of training images")
    sample_rate: int | None = Field(None, ge=1000, le=48_000, description="audio is resampled to this rate (Hz)")
    audio_seconds: float | None = Field(None, gt=0, description="clips are cropped/padded to this length")
    n_mels: int = Field(40, ge=8, le=256, description="mel bands of the spectrograms")
    audio_augment: bool = Field(True, description="random gain and time shifts of training audio")
    video_frames: int = Field(8, ge=1, le=256, description="frames sampled uniformly from each video")
    video_size: int | None = Field(
        None, ge=8, le=512, description="video frames are resized to this square size; None = from the training files"
    )
    video_augment: bool = Field(
        True, description="random temporal jitter (which frame of each segment) and shifts of training videos"
    )
    text_max_tokens: int | None = Field(None, ge=1, le=4096, description="tokens kept per text")
    vocab_size: int = Field(20_000, ge=10, description="largest word vocabulary of the from-scratch text encoders")
    text_min_freq: int = Field(1, ge=1, description="words seen fewer times in training are unknown")
    text_segmentation: Literal["regex", "char", "char_bigram", "word"] = Field(
        "char_bigram",
        description="how the from-scratch text encoders split Chinese/Japanese text (Latin words stay words): "
        "char = one token per character, char_bigram = characters and adjacent pairs, word = jieba words "
        "(pip install 'polymodal[cjk]'), regex = a whole clause as one token",
    )
    series_length: int | None = Field(
        None,
        ge=2,
        le=100_000,
        description="time series are cropped/padded (or resampled) to this many steps; None = "
        "the 95th percentile of the training lengths, at most series_max_length",
    )
    series_max_length: int = Field(512, ge=2, le=100_000, description="upper bound of the learned series_length")
    series_fit: Literal["crop", "resample"] = Field(
        "crop",
        description="how a series gets series_length steps: crop (longer ones cut: a random window in training, "
        "the first steps otherwise; shorter ones padded and masked) or resample (every series linearly "
        "interpolated to exactly series_length steps)",
    )
    series_augment: bool = Field(
        True, description="jitter, per-channel scaling, window crops and time warps of training time series"
    )


class EncoderChoice(_Section):
    """An encoder by registry name plus its own parameters.

    The parameters are open here (this foundation module does not know the encoders);
    :func:`polymodal.components.check_config` validates them against that encoder's ``Config`` when the config is
    read.
    """

    model_config = ConfigDict(extra="allow")
    name: str = Field(..., description="a registered encoder (polymodal config schema lists them)")

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


# The modality kinds an ``encoders`` key may name; any other key names one modality (a column, or "tabular").
ENCODER_KINDS: tuple[str, ...] = ("image", "audio", "video", "text", "timeseries", "tabular")


def _default_encoders() -> dict[str, EncoderChoice]:
    return {
        "image": EncoderChoice(name="image_cnn"),
        "audio": EncoderChoice(name="audio_cnn"),
        "video": EncoderChoice(name="video_cnn"),
        "text": EncoderChoice(name="text_rnn"),
        "timeseries": EncoderChoice(name="ts_cnn"),
        "tabular": EncoderChoice(name="tabular_mlp"),
    }


class FusionConfig(_Section):
    """The fusion by registry name, its width and dropout, plus its own parameters (validated by that fusion's
    ``Params`` class in :func:`polymodal.components.check_config`)."""

    model_config = ConfigDict(extra="allow")
    name: str = Field("concat", description="a registered fusion method (polymodal config schema lists them)")
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
    length_penalty: float = Field(
        1.0,
        ge=0,
        description="beam hypotheses are ranked by log-probability / "
        "length ** length_penalty (0: raw log-probability, favours short outputs)",
    )
    max_length: int | None = Field(
        None,
        ge=1,
        description="tokens generated at most (end token included); "
        "None = the longest training target (generation.max_target_tokens)",
    )
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
        "auto",
        description="bpe: a byte-level BPE trained on the training targets; pretrained: the tokenizer of "
        "pretrained_tokenizer; auto: pretrained when the text encoder is a pretrained model, else bpe",
    )
    pretrained_tokenizer: str | None = Field(None, description="folder or cached hub id of a pretrained tokenizer")
    vocab_size: int = Field(4000, ge=16, description="largest BPE vocabulary (smaller when the targets need fewer)")
    max_target_tokens: int | None = Field(
        None,
        ge=2,
        le=1024,
        description="target tokens kept, end token "
        "included; longer targets are truncated. None = the longest training "
        "target (at most 128)",
    )
    max_memory_tokens: int = Field(
        256, ge=1, description="tokens kept per input modality for cross-attention (the first ones)"
    )
    decoding: DecodingConfig = Field(default_factory=DecodingConfig)


class RetrievalConfig(_Section):
    """``problem_type: retrieval``: two towers (query columns, target columns) trained with a symmetric InfoNCE loss
    so that a row's query embeds next to its own target (see docs/USER_GUIDE.md, "Retrieval")."""

    query: list[str] = Field(default_factory=list, description="the query tower's input columns (e.g. [title])")
    target: list[str] = Field(default_factory=list, description="the target tower's input columns (e.g. [image])")
    dim: int = Field(128, ge=4, le=4096, description="width of the shared embedding space (the projection heads)")
    temperature: float = Field(
        0.07, gt=0, le=1, description="initial softmax temperature (learned, as log 1/temperature)"
    )
    max_logit_scale: float = Field(
        100.0, gt=1, description="the learned 1/temperature is clamped to at most this (CLIP's bound)"
    )
    exact_max_rows: int = Field(
        50_000,
        ge=0,
        description="search: collections up to this many rows are searched exactly (batched matmul); larger ones "
        "through an approximate usearch index (pip install 'polymodal[retrieval]')",
    )
    hard_negatives: int = Field(
        0,
        ge=0,
        le=1024,
        description="hard-negative mining: from the second epoch on, each query also gets the k training targets "
        "most similar to it (not its own; mined after each epoch by an exact matmul over the training rows) as "
        "negatives; 0 = in-batch negatives only",
    )


class ReconstructionConfig(_Section):
    """``problem_type: reconstruction``: an autoencoder (encoders, fusion, a bottleneck, one decoder per modality)
    whose per-row reconstruction errors are anomaly scores (see docs/USER_GUIDE.md, "Anomaly detection")."""

    latent_dim: int = Field(
        16,
        ge=1,
        le=4096,
        description="width of the bottleneck; a narrow one makes the modalities share one code, so a row whose "
        "modalities disagree reconstructs worse",
    )
    variational: bool = Field(
        False, description="a variational bottleneck (mean and log-variance, sampled in training, KL term)"
    )
    kl_weight: float = Field(0.01, ge=0, description="weight of the KL term when variational (per latent unit)")
    hidden: int = Field(64, ge=8, le=4096, description="width of the decoders' first layer (channels for images)")
    modality_dropout: float = Field(
        0.25,
        ge=0,
        lt=1,
        description="in training, hide each modality of a row from the encoders with this probability while still "
        "reconstructing it, so that each modality is predicted from the others (cross-modal consistency)",
    )
    text: bool = Field(True, description="reconstruct text columns as a bag of words (false: encode, do not score)")
    agreement: float = Field(
        4.0,
        ge=0,
        description="weight of the cross-modal agreement loss: each encoded modality is projected into a shared "
        "space and a row's modalities are pulled together against the batch's other rows (symmetric InfoNCE), so "
        "that a row whose modalities disagree (the image shows one digit, the audio says another) scores high in "
        "anomaly_crossmodal; 0 = off (a model with one modality has no such term)",
    )
    agreement_temperature: float = Field(
        0.1, gt=0, le=1, description="softmax temperature of the agreement loss (cosine similarities / temperature)"
    )
    score: Literal["joint", "cross", "agreement", "joint+agreement", "cross+agreement"] = Field(
        "joint+agreement",
        description="the row's anomaly score: joint = the mean of the modalities' z-scored errors, each "
        "reconstructed from all of the row's modalities; cross = from the others alone (the modality hidden); "
        "agreement = the z-scored disagreement of the row's modality embeddings (1 - cosine), anomaly_crossmodal; "
        "joint+agreement / cross+agreement = the two added. Without an agreement term (agreement 0, one "
        "modality, or a row with one modality) the agreement part is left out; a row with one modality: joint",
    )
    weights: dict[str, float] = Field(
        default_factory=dict,
        description="modality name or kind (image, audio, tabular, timeseries, text) -> weight of its "
        "reconstruction loss (default 1; each loss is already scaled so that predicting the mean costs about 1)",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_score_without_agreement(cls, data: Any) -> Any:
        # agreement: 0 alone means "no agreement term": the default score then is joint (not an error)
        if isinstance(data, dict) and "score" not in data and data.get("agreement") is not None:
            try:
                off = float(data["agreement"]) == 0
            except (TypeError, ValueError):
                return data  # the field's own validation says what is wrong
            if off:
                return {**data, "score": "joint"}
        return data

    @model_validator(mode="after")
    def _agreement_scored(self) -> ReconstructionConfig:
        if "agreement" in self.score and self.agreement == 0:
            raise ValueError(
                f"score '{self.score}' uses the agreement term, which agreement: 0 turns off; set agreement above 0 "
                "or choose score joint or cross"
            )
        return self


class PretrainConfig(_Section):
    """``problem_type: pretrain`` (``polymodal pretrain``): self-supervised pre-training of every modality's encoder
    on unlabelled rows: cross-modal InfoNCE between the modalities of a row, plus predicting each (masked) modality's
    embedding from the others (see docs/USER_GUIDE.md, "Self-supervised pre-training")."""

    dim: int = Field(
        128, ge=4, le=4096, description="width of the shared embedding space (one projection per modality)"
    )
    temperature: float = Field(
        0.07, gt=0, le=1, description="initial softmax temperature (learned, as log 1/temperature)"
    )
    max_logit_scale: float = Field(
        100.0, gt=1, description="the learned 1/temperature is clamped to at most this (CLIP's bound)"
    )
    masked_weight: float = Field(
        1.0,
        ge=0,
        description="weight of the masked-modality loss (1 - cosine between a modality's embedding, gradient "
        "stopped, and its prediction from the row's other modalities); 0 = contrastive only",
    )


class TargetConfig(_Section):
    """One target of a multi-task model (a label given as several columns)."""

    problem_type: ProblemType | None = Field(
        None, description="binary, multiclass or regression; None = inferred from the column's values"
    )
    weight: float = Field(1.0, gt=0, description="this target's loss is multiplied by it in the summed loss")


class CostsConfig(_Section):
    """What each kind of mistake costs a binary classifier (``task.threshold: cost``); only their ratio matters."""

    false_positive: float = Field(1.0, ge=0, description="cost of predicting the positive class for a negative row")
    false_negative: float = Field(1.0, ge=0, description="cost of predicting the negative class for a positive row")

    @model_validator(mode="after")
    def _some_cost(self) -> CostsConfig:
        if self.false_positive == 0 and self.false_negative == 0:
            raise ValueError("at least one of false_positive and false_negative must be above 0")
        return self


class TaskConfig(_Section):
    """What is predicted and how it is learned; every task's options are typed here."""

    problem_type: ProblemType | None = Field(
        None, description="None = inferred from the label (multitask when the label is several columns)"
    )
    targets: dict[str, TargetConfig] = Field(
        default_factory=dict,
        description="multi-task only: target column → its problem type and loss weight (targets not listed: "
        "inferred type, weight 1)",
    )
    target_loss: Literal["log", "sum"] = Field(
        "log",
        description="multi-task only: how the targets' losses are combined: log = sum of weight x log(loss + "
        "0.001), so each target counts by its relative change (a well-learned regression is not drowned by a "
        "larger classification loss); sum = sum of weight x loss",
    )
    class_weights: Literal["none", "balanced"] = Field(
        "none", description="balanced: weigh the loss of each class by the inverse of its frequency"
    )
    tag_separator: str = Field(
        "|",
        min_length=1,
        description="multilabel: the separator of tags joined in one string ('a|b'); a JSON list ('[\"a\", "
        '"b"]\') is read as well',
    )
    loss: Literal["cross_entropy", "focal"] = Field(
        "cross_entropy",
        description="classification loss; focal (Lin et al. 2017) down-weighs rows the network already gets right, "
        "for imbalanced classes (combines with class_weights)",
    )
    focal_gamma: float = Field(2.0, ge=0, description="focal loss focusing parameter (0 = cross-entropy)")
    calibration: Literal["temperature", "vector", "none"] = Field(
        "temperature",
        description="classification: probabilities calibrated on the validation split after training; temperature "
        "(one scale for all logits, predictions unchanged), vector (a scale and a bias per class) or none",
    )
    threshold: Literal["argmax", "f1", "cost"] = Field(
        "argmax",
        description="binary classification: the most probable class (argmax), or a threshold on the positive "
        "class's probability chosen on validation to maximise F1 (f1) or minimise task.costs (cost)",
    )
    costs: CostsConfig = Field(default_factory=CostsConfig, description="mistake costs for threshold: cost")
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    reconstruction: ReconstructionConfig = Field(default_factory=ReconstructionConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)

    @field_validator("problem_type", mode="before")
    @classmethod
    def _multilabel_spellings(cls, v: Any) -> Any:
        # "multi-label" and "multi_label" are as common as "multilabel": all name the one problem type.
        if isinstance(v, str) and v.lower().replace("-", "").replace("_", "") == "multilabel":
            return "multilabel"
        return v


def cpu_distribution_problem(devices: Any, strategy: str) -> str | None:
    """What is wrong with these device settings for training on the CPU (Lightning refuses them there), with what
    to give instead; None when nothing is. Checked with the config when ``accelerator: cpu``, and at fit time
    where ``accelerator: auto`` has resolved to the CPU."""
    if isinstance(devices, list):
        return "devices: a list of device ids selects GPUs; on the CPU give a number of processes (devices: 2)"
    if strategy.startswith(("fsdp", "deepspeed")):
        return f"strategy {strategy} needs GPUs; on the CPU use ddp (or auto)"
    return None


class CorruptionAugmentationConfig(_Section):
    """Corruption augmentation: training rows damaged on the fly by the corruptions the robustness sweep uses."""

    probability: float = Field(
        0.0,
        ge=0,
        le=1,
        description="probability that a training row's modality is corrupted (each modality of each row drawn "
        "apart; 0 = off). Validation and test rows are never corrupted",
    )
    kinds: list[str] | None = Field(
        None,
        description="the corruptions to draw from (names of the robustness sweep's registry, e.g. gaussian_noise, "
        "occlusion, white_noise); None = every one that applies to the modality's kind",
    )
    max_severity: float = Field(
        1.0,
        gt=0,
        le=1,
        description="the most severe level drawn, as a share of each corruption's default levels (1 = up to its "
        "most severe default level, e.g. image noise std 0.5, audio at -5 dB SNR); the level is drawn uniformly "
        "among the levels kept",
    )


class TrainingConfig(_Section):
    """The training loop."""

    max_epochs: int | None = Field(None, ge=1, description="None = chosen from the number of rows")
    batch_size: int | None = Field(None, ge=1, description="None = chosen from the number of rows")
    learning_rate: float = Field(2e-3, gt=0, description="peak learning rate (AdamW)")
    weight_decay: float = Field(1e-2, ge=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1, description="share of the steps spent warming up the rate")
    patience: int | None = Field(
        None,
        ge=1,
        description="epochs without validation improvement before stopping; None = 4 for schedules of up to 30 "
        "epochs, the same share (epochs x 4 / 30) of longer ones (the many short epochs of a tiny table)",
    )
    validation_fraction: float = Field(
        0.15, gt=0, lt=0.9, description="share of the rows held out for validation (when no tuning table is given)"
    )
    group_column: str | None = Field(
        None,
        description="rows sharing a value of this column (a patient, a user, a "
        "recording session) stay on one side of the train/validation split; the "
        "column is not an input",
    )
    init: str | None = Field(
        None,
        description="a run directory of `polymodal pretrain` (or any run): the encoders of the columns it shares "
        "with this table (same column, kind and encoder settings) start from its weights, and their processors "
        "from its fitted state (vocabulary, normalisation); a column whose settings differ is refused",
    )
    init_lr_scale: float = Field(
        1.0,
        ge=0,
        le=1,
        description="learning-rate multiplier of the encoders started from training.init (1 = as the rest of the "
        "network; 0.1 = fine-tuned gently; 0 = frozen: only the fusion and the head learn)",
    )
    seed: int = Field(0, ge=0, le=SEED_MAX, description="the same seed and data give the same model (0 to 2**32 - 1)")
    deterministic: bool = Field(
        False,
        description="deterministic algorithms only (Lightning's deterministic=True): the same seed and data give "
        "identical weights, at some cost in speed on GPUs",
    )
    sampler: Literal["shuffle", "balanced"] = Field(
        "shuffle",
        description="order of the training rows: shuffle, or balanced (classification: rows drawn with replacement, "
        "each class equally often, for imbalanced classes)",
    )
    time_limit: float | None = Field(
        None,
        gt=0,
        description="seconds of training (its validation passes included; reading and decoding the table "
        "before it are not); checked after every training step: at the first step past it the "
        "partial epoch is validated and the best epoch so far is kept",
    )
    modality_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="probability of hiding each modality of a "
        "training row (a row always keeps one), for robustness to missing modalities",
    )
    corruption_augmentation: CorruptionAugmentationConfig = Field(
        default_factory=CorruptionAugmentationConfig,
        description="corrupt random training rows' modalities (random kind and level), for robustness to noisy "
        "or damaged inputs; used with modality_dropout for missing ones",
    )
    num_workers: int = Field(0, ge=0, description="data-loading worker processes")
    threads: int | None = Field(
        None,
        ge=1,
        description="threads for torch, decoding and ONNX Runtime (None = the POLYMODAL_THREADS environment "
        "variable, else the cores this process may use: CPU affinity and cgroup quota); --threads overrides it",
    )
    gradient_clip: float | None = Field(1.0, gt=0, description="largest gradient norm (None = no clipping)")
    accelerator: Accelerator = Field("auto", description="Lightning accelerator (auto: a GPU when there is one)")
    precision: Precision | None = Field(
        None,
        description="Lightning precision, e.g. 16-mixed or bf16-mixed (None = automatic: 16-mixed on a GPU, "
        "else 32-true; POLYMODAL_CPU_BF16=1 makes it bf16-mixed on a CPU with native bfloat16, AVX512-BF16/AMX)",
    )
    devices: int | list[int] | Literal["auto"] = Field(
        "auto",
        description="devices per machine (Lightning's devices): auto (every GPU, else 1 CPU process), a number "
        "(-1: all), or a list of device ids; above 1, training runs one process per device (see strategy)",
    )
    strategy: Strategy = Field(
        "auto",
        description="Lightning strategy: auto (DDP when devices or num_nodes is above 1), ddp (one process per "
        "device, launched by re-running the command), ddp_spawn / ddp_notebook (from a notebook), fsdp, deepspeed; "
        "ddp_find_unused_parameters_true when a step may leave parameters unused (modality dropout)",
    )
    num_nodes: int = Field(1, ge=1, description="machines taking part in the training (Lightning's num_nodes)")
    logger: Literal["none", "csv", "tensorboard", "mlflow"] = Field(
        "none",
        description="experiment tracking through Lightning's loggers: none, csv, tensorboard or mlflow (the resolved "
        "config as hyperparameters, per-epoch metrics; mlflow also stores the saved run directory as artifacts); "
        "tensorboard and mlflow need the tracking extra",
    )
    tracking_dir: str | None = Field(
        None,
        description="where tracked runs go: a folder (None = ./mlruns for mlflow, ./tensorboard, ./csv_logs), or for "
        "mlflow a tracking URI such as sqlite:///mlflow.db or http://host:5000",
    )
    experiment: str = Field(
        "polymodal",
        min_length=1,
        description="the experiment (MLflow) or folder (TensorBoard, CSV) runs are filed under",
    )
    run_name: str | None = Field(
        None, description="the tracked run's name (None = fit-<date>-<time>; compare and tune name one run per variant)"
    )

    @field_validator("seed", mode="before")
    @classmethod
    def _seed_in_range(cls, v: Any) -> Any:
        # a float such as 1e20 would otherwise get pydantic's "exceeded maximum size" message
        if isinstance(v, float) and not 0 <= v <= SEED_MAX:
            raise ValueError(f"must be an integer from 0 to {SEED_MAX}")
        return v

    @model_validator(mode="after")
    def _devices_fit_accelerator(self) -> "TrainingConfig":
        if self.accelerator == "cpu" and (problem := cpu_distribution_problem(self.devices, self.strategy)):
            raise ValueError(problem)
        return self

    @field_validator("devices", mode="after")
    @classmethod
    def _devices_valid(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool) and v < 1 and v != -1:
            raise ValueError("must be a number of devices (1 or more, -1 for all), a list of device ids or auto")
        if isinstance(v, list) and (not v or len(set(v)) != len(v) or min(v) < 0):
            raise ValueError("a device list names each device id (0 or more) once, e.g. [0, 1]")
        return v

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_number(cls, v: Any) -> Any:
        # Lightning takes 16, 32 and 64 as numbers too; YAML reads `precision: 16` as one
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class EnsembleMemberConfig(_Section):
    """One member of an ensemble, as saved in the run directory: enough to rebuild its modules (weights are in
    model.safetensors under ``members.<name>.``)."""

    name: str = Field(..., description="the member's name in the leaderboard and in the weights file")
    kind: str = Field(
        "network",
        description="'network' (a polymodal network over ``modalities``) or the name of a registered classical "
        "member (polymodal.members)",
    )
    modalities: list[str] = Field(
        default_factory=list, description="the modalities this member reads (empty: all of them)"
    )
    fusion: FusionConfig | None = Field(None, description="a network member's fusion (None: the config's)")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="the seed its initial weights and training order came from")
    spec: dict[str, Any] = Field(
        default_factory=dict, description="a classical member's own JSON spec (sizes, vocabularies, settings)"
    )


class EnsembleConfig(_Section):
    """A weighted ensemble (the ``quality`` preset builds one): the members' outputs are combined in the task's
    space, classification by the weighted mean of their probabilities, regression by the weighted mean of values."""

    members: list[EnsembleMemberConfig] = Field(..., min_length=1, description="every member, used or not")
    weights: list[float] = Field(
        ...,
        description="one weight per member (>= 0, summing to 1; members with weight 0 are kept for the leaderboard)",
    )

    @field_validator("weights", mode="after")
    @classmethod
    def _weights_valid(cls, v: list[float]) -> list[float]:
        if any(w < 0 for w in v) or not any(w > 0 for w in v):
            raise ValueError("ensemble weights must be >= 0 with at least one above 0")
        return v

    @model_validator(mode="after")
    def _one_weight_per_member(self) -> "EnsembleConfig":
        if len(self.weights) != len(self.members):
            raise ValueError(f"{len(self.members)} members but {len(self.weights)} weights: give one weight each")
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ValueError(f"member names must be unique, got {names}")
        return self


class PolymodalConfig(_Section):
    """Everything that defines a run, apart from the data and the label."""

    columns: dict[str, ColumnKindName] = Field(default_factory=dict, description="column kind overrides")
    ignore: list[str] = Field(default_factory=list, description="columns to leave out")
    data_root: str | None = Field(
        None, description="folder relative file paths resolve against (default: the table's own folder)"
    )
    on_error: OnError = Field("fail", description="bad rows: fail, skip them, or treat bad cells as missing")
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    processing: ProcessingConfig = Field(default_factory=ProcessingConfig)
    encoders: dict[str, EncoderChoice] = Field(
        default_factory=_default_encoders,
        description="the encoder of each modality kind (image, audio, text, "
        "tabular) or of one column (its name as key); a column's entry wins over its kind's",
    )
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    ensemble: EnsembleConfig | None = Field(
        None, description="set by the quality preset: the run is a weighted ensemble of these members"
    )

    @field_validator("encoders", mode="after")
    @classmethod
    def _fill_encoder_defaults(cls, v: dict[str, EncoderChoice]) -> dict[str, EncoderChoice]:
        # Keys other than the kinds name columns; whether those exist is only known with the table
        # (check_encoder_keys, before decoding).
        merged = _default_encoders()
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
        source = ""
        if isinstance(value, (str, Path)):
            source = f" {value}"
            value = read_config_file(value)
        try:
            return cls.model_validate(value)
        except ValidationError as e:
            raise config_error(e, cls, what=f"invalid config{source}") from None

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# Keys of the fusion section shared by every fusion (the rest are the chosen fusion's own parameters).
_FUSION_COMMON = ("name", "dim", "dropout")


def apply_choices(
    config: "PolymodalConfig | dict[str, Any] | str | Path | None",
    *,
    fusion: str | Mapping[str, Any] | None = None,
    encoders: Mapping[str, str | Mapping[str, Any]] | None = None,
    problem_type: str | None = None,
    time_limit: float | None = None,
) -> PolymodalConfig:
    """``config`` with the common choices of the Predictor's keyword arguments and the CLI's options applied, and
    validated once (a bad value is a :class:`ConfigError` with its path, never a raw pydantic error).

    ``fusion``: a fusion name (its own parameters from ``config`` are kept only when the name is unchanged: they
    belong to that fusion) or a whole fusion section (a mapping with ``name``). ``encoders``: kind or column →
    an encoder name or a mapping with ``name`` and that encoder's parameters; each entry replaces the config's
    entry under the same key. The registered names and parameters are checked by
    :func:`polymodal.components.check_config`, as for a config file.
    """
    data = PolymodalConfig.from_any(config).to_dict()
    if isinstance(fusion, str):
        same = fusion == data["fusion"]["name"]
        data["fusion"] = {k: v for k, v in data["fusion"].items() if same or k in _FUSION_COMMON} | {"name": fusion}
    elif fusion is not None:
        data["fusion"] = _mapping(fusion, "fusion", "a fusion name or a mapping with 'name'")
    for key, choice in (encoders or {}).items():
        hint = "an encoder name or a mapping with 'name' and the encoder's parameters"
        data["encoders"][str(key)] = (
            {"name": choice} if isinstance(choice, str) else _mapping(choice, f"encoders.{key}", hint)
        )
    if problem_type is not None:
        data["task"]["problem_type"] = problem_type
    if time_limit is not None:
        data["training"]["time_limit"] = time_limit
    return PolymodalConfig.from_any(data)


def _mapping(value: Any, where: str, expected: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected {expected}, got {value!r}")
    return dict(value)


#: A config file larger than this is refused unread (a full config with every default is about 5 KB).
MAX_CONFIG_BYTES = 1_000_000
#: Values (mappings, lists and scalars) a config file may hold once its YAML aliases are expanded; a full config
#: holds a few hundred. Aliases may share settings, but a few nested ones ("billion laughs") would otherwise expand
#: to billions of values in memory.
MAX_CONFIG_VALUES = 100_000


def _expanded_size(root: yaml.Node) -> int:
    """The number of values under ``root`` once every alias is expanded (each shared node counted once per use,
    computed once per node); raises :class:`ConfigError` past :data:`MAX_CONFIG_VALUES` or for a recursive alias."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # entered, children not all sized yet: meeting one again below it is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative post-order: a deep file must not exhaust Python's recursion limit here
        node, children_sized = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[id(node)] = 1
            continue
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else node.value
        if not children_sized:
            if id(node) in open_nodes:
                raise ConfigError("it refers to itself through a YAML alias; write the values out")
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children)
            continue
        open_nodes.discard(id(node))
        sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
        if sizes[id(node)] > MAX_CONFIG_VALUES:
            raise ConfigError(
                f"it expands to more than {MAX_CONFIG_VALUES:,} values through its YAML aliases; write the values "
                "out or use fewer aliases"
            )
    return sizes[id(root)]


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a document whose aliases expand past :data:`MAX_CONFIG_VALUES` before any of
    it is built into Python objects."""

    def construct_document(self, node: yaml.Node) -> Any:
        _expanded_size(node)
        return super().construct_document(node)


def read_yaml_file(path: Path, what: str = "config file") -> Any:
    """The value in a user's YAML/JSON file (``what`` names it in messages), read safely (see :func:`parse_yaml`)."""
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what} {path} is {size:,} bytes; at most {MAX_CONFIG_BYTES:,} are read")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path} is not valid YAML/JSON: {e}") from None
    return parse_yaml(text, f"{what} {path}")


def parse_yaml(text: str, what: str) -> Any:
    """The value of YAML/JSON ``text`` (``what`` names it in messages), read safely: no Python tags; text over
    :data:`MAX_CONFIG_BYTES`, nested past Python's recursion limit or expanding past :data:`MAX_CONFIG_VALUES`
    values through YAML aliases is a :class:`ConfigError`, like invalid YAML."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what} holds {len(text):,} characters; at most {MAX_CONFIG_BYTES:,} are read")
    try:
        return yaml.load(text, Loader=_BoundedLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} is not valid YAML/JSON: {e}") from None
    except ConfigError as e:
        raise ConfigError(f"{what}: {e}") from None
    except RecursionError:
        raise ConfigError(f"{what} is nested too deeply to be read") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML/JSON config file, as written (nothing filled in or validated yet); read with
    :func:`read_yaml_file`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    value = read_yaml_file(path) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return value


# --------------------------------------------------------------------------------- which encoder each modality gets
class _ModalityLike(Protocol):
    name: str
    kind: str


def encoder_key(config: PolymodalConfig, modality: _ModalityLike) -> str:
    """The ``encoders`` key that chooses ``modality``'s encoder: its own name when the config has an entry for it,
    else its kind. Kind names always mean the kind, so a column named like a kind cannot have its own entry."""
    if modality.name in config.encoders and modality.name not in ENCODER_KINDS:
        return modality.name
    return modality.kind


def encoder_choice(config: PolymodalConfig, modality: _ModalityLike) -> EncoderChoice:
    """The encoder of ``modality`` (a :class:`polymodal.schema.Modality`): the column's entry wins over the
    kind's. Every reader of ``config.encoders`` goes through this."""
    return config.encoders[encoder_key(config, modality)]


def check_encoder_keys(config: PolymodalConfig, modalities: Iterable[_ModalityLike]) -> None:
    """Once the table's modalities are known (before any file is decoded): every ``encoders`` key is a kind or a
    modality of this table, and each modality's encoder encodes its kind."""
    modalities = list(modalities)
    names = {m.name for m in modalities}
    problems = []
    for key in config.encoders:
        if key not in ENCODER_KINDS and key not in names:
            valid = sorted(names - set(ENCODER_KINDS))
            hint = did_you_mean(key, [*ENCODER_KINDS, *valid]).removeprefix("; ")
            problems.append(
                f"encoders.{key}: this table has no column or modality '{key}'; "
                f"{hint + ' ' if hint else ''}"
                f"valid keys are the kinds {', '.join(ENCODER_KINDS)} and this table's modalities: "
                f"{', '.join(valid) or '(none)'}"
            )
    for m in modalities:
        key = encoder_key(config, m)
        name = config.encoders[key].name
        if name in ENCODERS:
            kinds = getattr(ENCODERS.get(name), "kinds", ())
            if m.kind not in kinds:
                article = "an" if m.kind[0] in "aeiou" else "a"
                problems.append(
                    f"encoders.{key}: '{name}' encodes {', '.join(kinds)} columns, but '{m.name}' "
                    f"is {article} {m.kind} modality"
                )
    if problems:
        raise ConfigError(format_problems("invalid encoders for this table", problems))


# ------------------------------------------------------------------------------ validation errors → short messages
def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or ``""`` when none is close."""
    close = difflib.get_close_matches(word, [str(c) for c in candidates], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def format_problems(what: str, problems: list[str]) -> str:
    """One problem on one line; several as a list under ``what``."""
    if len(problems) == 1:
        return f"{what}: {problems[0]}"
    return f"{what}:\n" + "\n".join(f"  - {p}" for p in problems)


def config_error(
    error: ValidationError,
    model: type[BaseModel] | None = None,
    prefix: tuple[str, ...] = (),
    extra_names: Iterable[str] = (),
    what: str = "invalid config",
) -> ConfigError:
    """A :class:`ConfigError` for a pydantic ``ValidationError`` of ``model``: one short line per problem, naming
    the full path (``prefix`` + the error's location), the expected type, and for an unknown key the closest valid
    one (``extra_names`` are valid keys beyond ``model``'s fields, e.g. an encoder's ``name``)."""
    return ConfigError(format_problems(what, validation_problems(error, model, prefix, extra_names)))


def validation_problems(
    error: ValidationError,
    model: type[BaseModel] | None = None,
    prefix: tuple[str, ...] = (),
    extra_names: Iterable[str] = (),
) -> list[str]:
    """The lines of :func:`config_error`."""
    out = []
    for e in error.errors():
        # pydantic adds union members ("int", "function-after[...]") to locations: they are not keys.
        loc = tuple(str(p) for p in e["loc"] if not _is_union_tag(model, e["loc"], p))
        path = ".".join((*prefix, *loc)) or "(top level)"
        kind, value = e["type"], e.get("input")
        if kind == "extra_forbidden":
            names = [*_field_names(_annotation_at(model, loc[:-1])), *(extra_names if len(loc) == 1 else ())]
            hint = did_you_mean(loc[-1], names) or (f"; valid keys: {', '.join(sorted(names))}" if names else "")
            out.append(f"{path}: unknown key{hint}")
        elif kind == "missing":
            out.append(f"{path}: required, but not given")
        elif kind == "literal_error":
            allowed = e.get("ctx", {}).get("expected", "")
            out.append(
                f"{path}: expected one of {allowed}, got {value!r}"
                f"{did_you_mean(str(value), _literal_values(_annotation_at(model, loc)))}"
            )
        elif kind.endswith("_type") or kind.endswith("_parsing") or kind == "model_attributes_type":
            expected = _type_name(_annotation_at(model, loc))
            out.append(f"{path}: expected {expected}, got {value!r}" if expected else f"{path}: {e['msg']}")
        else:  # a constraint (ge, lt, ...) or a validator's own message
            msg = e["msg"].removeprefix("Value error, ")
            out.append(f"{path}: {msg}" + (f", got {value!r}" if not isinstance(value, (dict, list)) else ""))
    return out


def _admits_bool(ann: Any) -> bool:
    """Whether a field of type ``ann`` takes true/false as such (bool, Any, or a union or Literal holding one)."""
    if ann is bool or ann is Any:
        return True
    if get_origin(ann) in (Union, types.UnionType):
        return any(_admits_bool(a) for a in get_args(ann))
    if get_origin(ann) is Literal:
        return any(isinstance(a, bool) for a in get_args(ann))
    return get_origin(ann) is None and not isinstance(ann, type)  # an unknown annotation: leave it to pydantic


def _strip_optional(ann: Any) -> Any:
    if get_origin(ann) in (Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        return args[0] if len(args) == 1 else ann
    return ann


def _annotation_at(model: Any, loc: tuple[str, ...]) -> Any:
    """The type annotation at ``loc`` inside ``model`` (None when it cannot be followed)."""
    ann = model
    for part in loc:
        ann = _strip_optional(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            field = ann.model_fields.get(part)
            if field is None:
                return None
            ann = field.annotation
        elif get_origin(ann) is dict:
            ann = get_args(ann)[1]
        elif get_origin(ann) is list:
            ann = get_args(ann)[0]
        else:
            return None
    return ann


def _is_union_tag(model: Any, loc: tuple[Any, ...], part: Any) -> bool:
    return (
        isinstance(part, str)
        and ("[" in part or part in {"int", "float", "str", "bool", "none"})
        and _annotation_at(model, tuple(str(p) for p in loc[: loc.index(part)])) is not dict
    )


def _field_names(ann: Any) -> list[str]:
    ann = _strip_optional(ann)
    return list(ann.model_fields) if isinstance(ann, type) and issubclass(ann, BaseModel) else []


def _literal_values(ann: Any) -> list[str]:
    ann = _strip_optional(ann)
    return [str(a) for a in get_args(ann)] if get_origin(ann) is Literal else []


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _type_name(ann: Any) -> str:
    """How a message names the type ``ann`` ("an integer", "a number or null", ...)."""
    if ann is None:
        return ""
    if get_origin(ann) in (Union, types.UnionType):
        parts = [_type_name(a) if a is not type(None) else "null" for a in get_args(ann)]
        return " or ".join(p for p in parts if p)
    if get_origin(ann) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(ann))
    if get_origin(ann) is dict or (isinstance(ann, type) and issubclass(ann, BaseModel)):
        return "a mapping"
    if get_origin(ann) is list:
        return "a list"
    return _TYPE_NAMES.get(ann, getattr(ann, "__name__", str(ann)))
