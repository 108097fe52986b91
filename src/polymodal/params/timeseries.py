"""Parameters of the from-scratch time-series encoders (registered in :data:`ENCODER_PARAMS`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..registry import register
from .encoders import ENCODER_PARAMS, EncoderConfig


class SeriesConfig(EncoderConfig):
    """Parameters every time-series encoder has."""

    dropout: float = Field(0.1, ge=0, lt=1, description="dropout before the output projection")
    max_tokens: int = Field(
        64, ge=1, le=4096, description="tokens given to fusions at most (longer token sequences are average-pooled)"
    )


@register(ENCODER_PARAMS, "ts_cnn")
class TSCNNConfig(SeriesConfig):
    """1-D convolutional ResNet with InceptionTime-style blocks (Wang et al. 2017; Ismail Fawaz et al. 2020):
    parallel kernels of several lengths per block; pooled = masked mean and max over time; tokens = time steps."""

    kinds = ("timeseries",)
    width: int = Field(32, ge=4, description="channels of the first stage (doubled at each later stage)")
    stages: int = Field(3, ge=1, le=6, description="residual stages; each after the first halves the time axis")
    kernels: list[int] = Field(
        default_factory=lambda: [9, 5, 3], min_length=1, description="kernel lengths of each block's parallel convs"
    )


@register(ENCODER_PARAMS, "ts_gru")
class TSGRUConfig(SeriesConfig):
    """Bidirectional GRU (or LSTM) over the steps; pooled = masked mean and max of the states; tokens = states."""

    kinds = ("timeseries",)
    hidden: int = Field(64, ge=4, description="hidden units per direction")
    layers: int = Field(1, ge=1, le=6, description="stacked recurrent layers")
    cell: Literal["gru", "lstm"] = Field("gru", description="recurrent cell")


@register(ENCODER_PARAMS, "ts_patchtst")
class TSPatchTSTConfig(SeriesConfig):
    """PatchTST-style Transformer (Nie et al. 2023): each channel cut into patches, embedded by one shared linear
    layer, a Transformer encoder over the patches of each channel; tokens = patches averaged over channels."""

    kinds = ("timeseries",)
    patch: int = Field(16, ge=2, description="steps per patch")
    stride: int | None = Field(None, ge=1, description="steps between patch starts; None = patch // 2")
    layers: int = Field(2, ge=1, le=12, description="Transformer encoder layers")
    heads: int = Field(4, ge=1, description="attention heads (must divide dim)")
    channel_independent: bool = Field(
        True, description="patch and encode each channel on its own (PatchTST); off: one patch holds every channel"
    )
