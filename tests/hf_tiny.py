"""Tiny Hugging Face models built from configs in-process and saved with save_pretrained, so that tests load them
through the same path a user's local checkpoint takes (AutoModel / AutoTokenizer / AutoImageProcessor /
AutoFeatureExtractor on a folder). Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

from polymodal.datasets.synthetic import CLOSERS, ITEMS, NEGATIVE, OPENERS, POSITIVE
from polymodal.encoders.hf_hub import quiet_transformers

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
KINDS = ("bert", "vit", "resnet", "clip", "wav2vec2", "whisper")


def _vocab() -> dict[str, int]:
    words = sorted(
        {w for phrase in OPENERS + ITEMS + POSITIVE + NEGATIVE + CLOSERS for w in phrase.split()} | {"the", "was"}
    )
    return {w: i for i, w in enumerate(SPECIAL + words)}


def _tokenizer():
    from transformers import BertTokenizer

    return BertTokenizer(vocab=_vocab(), model_max_length=64)


def _layers(n: int = 2) -> dict:
    return {"hidden_size": 16, "num_hidden_layers": n, "num_attention_heads": 2, "intermediate_size": 32}


def build(kind: str, folder: Path, seed: int = 0) -> Path:
    """Write tiny model ``kind`` (one of KINDS) with its preprocessing files into ``folder``; returns it."""
    with quiet_transformers():  # no torchvision-fallback notices or progress bars in test output
        return _build(kind, folder, seed)


def _build(kind: str, folder: Path, seed: int) -> Path:
    import transformers as tf

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "bert":
        model = tf.BertModel(tf.BertConfig(vocab_size=len(_vocab()), max_position_embeddings=64, **_layers()))
        pre = _tokenizer()
    elif kind == "vit":
        model = tf.ViTModel(tf.ViTConfig(image_size=32, patch_size=8, **_layers()))
        pre = tf.ViTImageProcessor(size={"height": 32, "width": 32})
    elif kind == "resnet":
        model = tf.ResNetModel(
            tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
        )
        pre = tf.ConvNextImageProcessor(size={"shortest_edge": 32})
    elif kind == "clip":
        vocab = _vocab()
        text = {
            **_layers(1),
            "vocab_size": len(vocab),
            "max_position_embeddings": 64,
            "bos_token_id": vocab["[CLS]"],
            "eos_token_id": vocab["[SEP]"],
            "pad_token_id": vocab["[PAD]"],
        }
        vision = {**_layers(1), "image_size": 32, "patch_size": 8}
        model = tf.CLIPModel(tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=8))
        _tokenizer().save_pretrained(str(folder))
        pre = tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    elif kind == "wav2vec2":
        model = tf.Wav2Vec2Model(
            tf.Wav2Vec2Config(
                **_layers(1),
                conv_dim=(8, 8),
                conv_stride=(5, 4),
                conv_kernel=(10, 8),
                num_conv_pos_embeddings=8,
                num_conv_pos_embedding_groups=2,
                vocab_size=8,
            )
        )
        pre = tf.Wav2Vec2FeatureExtractor(sampling_rate=8000)
    elif kind == "whisper":
        cfg = tf.WhisperConfig(
            d_model=16,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            num_mel_bins=16,
            max_source_positions=50,
            max_target_positions=16,
            vocab_size=64,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
        )
        model = tf.WhisperModel(cfg)
        pre = tf.WhisperFeatureExtractor(feature_size=16, sampling_rate=16000, chunk_length=1)
    else:
        raise ValueError(kind)
    model.save_pretrained(str(folder))
    pre.save_pretrained(str(folder))
    return folder
