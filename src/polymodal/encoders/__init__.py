"""Encoders: one per modality, ``inputs → Encoded(pooled, tokens, mask)``. Importing this package registers them."""

from . import audio, hf, hf_video, image, tabular, text, timeseries, video  # noqa: F401  (registration side effects)
from .base import Encoded, Encoder, build_encoder, encoder_lr_scales

__all__ = ["Encoded", "Encoder", "build_encoder", "encoder_lr_scales"]
