"""The autoencoder network of ``problem_type: reconstruction``: encoders → fusion → a bottleneck → one decoder per
modality (:mod:`.decoders`), registered as the "autoencoder" architecture (:mod:`.model`)."""

from .decoders import DECODERS, Decoder, build_decoder
from .model import AutoencoderModel, build_autoencoder

__all__ = ["DECODERS", "AutoencoderModel", "Decoder", "build_autoencoder", "build_decoder"]
