"""The encoders' parameters, registered in :data:`ENCODER_PARAMS` by the encoder's name.

Each registered class is that encoder's ``Config``: its fields are the keys of ``encoders.<key>`` besides ``name``,
its ``kinds`` the column kinds the encoder encodes, its docstring the encoder's description in the config schema.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..registry import Registry, register


class EncoderConfig(BaseModel):
    """Parameters every encoder has; each encoder's ``Config`` adds its own."""

    model_config = ConfigDict(extra="forbid")
    # the column kinds the encoder encodes ("image", "audio", "text", "tabular"); not a parameter
    kinds: ClassVar[tuple[str, ...]] = ()
    dim: int = Field(128, description="width of the encoder's output")


ENCODER_PARAMS: Registry[EncoderConfig] = Registry("encoder")


# ---------------------------------------------------------------------------------------------- from scratch
class ConvConfig(EncoderConfig):
    width: int = 32
    stages: int = 3
    blocks: int = Field(
        1,
        ge=1,
        le=8,
        description="residual blocks per stage; stages=4, blocks=2, width=64 is ResNet-18's layout (He et al. 2016, "
        "its CIFAR form: a 3x3 stem)",
    )
    stem_stride: int | None = Field(None, ge=1, le=4, description="None = chosen from the input size")
    dropout: float = 0.1
    coords: bool = Field(
        False,
        description="append x/y coordinate channels to the input (CoordConv, Liu et al. "
        "2018): convolutions alone are blind to where something is, which questions about "
        "positions need",
    )
    positions: bool = Field(
        False,
        description="add a fixed 2-D sine-cosine code of each token's row and column to "
        "the tokens (as ViT/MAE do), so that fusions reading tokens know where each one is",
    )


@register(ENCODER_PARAMS, "image_cnn")
class ImageCNNConfig(ConvConfig):
    """ResNet-style CNN; pooled = global average; tokens = the final feature map's cells."""

    kinds = ("image",)


@register(ENCODER_PARAMS, "audio_cnn")
class AudioCNNConfig(ConvConfig):
    """Pooled = mean over frequency then mean+max over time; tokens = one per remaining time step."""

    kinds = ("audio",)


@register(ENCODER_PARAMS, "video_cnn")
class VideoCNNConfig(ConvConfig):
    """The image CNN applied to every frame (weights shared across frames), then a temporal model over the frame
    tokens: a small Transformer with learned frame positions (sees order, hence motion) or a mean (order-blind).
    Pooled = masked mean of the frame tokens; tokens = one per frame."""

    kinds = ("video",)
    coords: bool = Field(
        True,
        description="append x/y coordinate channels to every frame (CoordConv): where a shape is, hence where it "
        "moves, survives the frame CNN's global pooling",
    )
    temporal: Literal["transformer", "mean"] = Field(
        "transformer",
        description="transformer: frames attend to each other in order (motion, direction); mean: frame features "
        "averaged, blind to their order (appearance only)",
    )
    motion: Literal["diff", "none"] = Field(
        "diff",
        description="diff: every frame enters the frame CNN with its difference from the previous frame as 3 extra "
        "channels (TSN's RGB difference, Wang et al. 2016), so where and which way things move is seen at full "
        "resolution, before pooling; none: appearance only",
    )
    temporal_layers: int = Field(2, ge=1, le=12, description="Transformer layers over the frame tokens")
    heads: int = Field(4, ge=1, description="attention heads of the temporal Transformer (must divide dim)")
    max_frames: int = Field(256, ge=1, description="longest frame sequence the learned positions cover")

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> "VideoCNNConfig":
        if self.temporal == "transformer" and self.dim % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide dim ({self.dim})")
        return self


@register(ENCODER_PARAMS, "text_rnn")
class TextRNNConfig(EncoderConfig):
    """Embedding + bidirectional GRU (or LSTM, seed 004); pooled = masked mean and max of the states."""

    kinds = ("text",)
    embedding_dim: int = 128
    hidden: int = 128
    layers: int = 1
    cell: Literal["gru", "lstm"] = "gru"
    dropout: float = 0.1


@register(ENCODER_PARAMS, "text_transformer")
class TextTransformerConfig(EncoderConfig):
    """A small Transformer encoder (Vaswani et al. 2017) with learned positions; pooled = masked mean."""

    kinds = ("text",)
    layers: int = 2
    heads: int = 4
    max_positions: int = 512
    dropout: float = 0.1


@register(ENCODER_PARAMS, "tabular_mlp")
class TabularMLPConfig(EncoderConfig):
    """Category embedding sizes follow the fast.ai rule min(max_dim, 1.6 * n^0.56)."""

    kinds = ("tabular",)
    hidden: int = 128
    layers: int = 2
    max_embedding_dim: int = 16
    dropout: float = 0.1


# ------------------------------------------------------------------------------------------------ pretrained
Mode = Literal["frozen", "finetune", "last_n"]
Pooling = Literal["auto", "cls", "mean", "attention", "pooler"]


class HFConfig(EncoderConfig):
    """Parameters shared by every pretrained encoder."""

    model: str = Field(..., description="a local folder (as written by save_pretrained) or a Hugging Face hub id")
    mode: Mode = "frozen"
    last_n: int = Field(2, ge=1, description="mode last_n: how many top blocks to train")
    backbone_lr: float = Field(
        0.1, gt=0, le=1, description="backbone learning rate as a share of training.learning_rate (finetune/last_n)"
    )
    layer_decay: float = Field(
        0.8, gt=0, le=1, description="learning-rate factor per block below the top (1 = no layer-wise decay)"
    )
    pooling: Pooling = Field("auto", description="auto = mean (the model's pooler for clip_*)")
    dropout: float = Field(0.1, ge=0, lt=1)
    cache: bool = Field(True, description="frozen mode: keep features on disk for later runs (memory only if off)")


@register(ENCODER_PARAMS, "hf_text")
class HFTextConfig(HFConfig):
    """A pretrained text model (BERT, MiniLM, RoBERTa, …) with its own tokenizer."""

    kinds = ("text",)
    max_length: int | None = Field(None, ge=2, description="tokens per text; None = 95th percentile of training")


@register(ENCODER_PARAMS, "hf_image")
class HFImageConfig(HFConfig):
    """A pretrained image model (ViT, ResNet, ConvNeXt, DINOv2, …) with its own image processor."""

    kinds = ("image",)


@register(ENCODER_PARAMS, "hf_audio")
class HFAudioConfig(HFConfig):
    """A pretrained speech/audio model (Wav2Vec2, HuBERT, Whisper's encoder, …) with its own feature extractor."""

    kinds = ("audio",)
    seconds: float | None = Field(None, gt=0, description="clip length; None = 95th percentile of training files")
    max_seconds: float = Field(10.0, gt=0, description="upper bound of the learned clip length")


@register(ENCODER_PARAMS, "hf_video")
class HFVideoConfig(HFConfig):
    """A pretrained video model (VideoMAE, TimeSformer, ViViT, …): the clip's frames, sampled uniformly and resized
    to the model's image size, normalised with its image processor's mean/std; tokens = its space-time patches."""

    kinds = ("video",)


@register(ENCODER_PARAMS, "clip_text")
class CLIPTextConfig(HFTextConfig):
    """The text tower of a CLIP-style dual encoder; pooled = its projection into the joint image-text space."""


@register(ENCODER_PARAMS, "clip_image")
class CLIPImageConfig(HFImageConfig):
    """The image tower of a CLIP-style dual encoder; pooled = its projection into the joint image-text space."""
