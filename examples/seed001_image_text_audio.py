"""Seed 001: image + text + audio, a self-attention representation, weighted fusion, sigmoid (multi-label) output.

The seed's system: CNN image features, Transformer (self-attention) text features and audio CNN features, a
self-attention representation, a weighted sum of the modalities' features (alpha * h1 + (1 - alpha) * h2 ...) and a
sigmoid prediction. Here, from scratch on generated data (``polymodal.datasets.tagged``: a shape, a review and a
chirp per row, one tag decided by each):

    image_cnn (ResNet-style CNN)  ─┐
    text_transformer (self-attn)  ─┼─ weighted fusion (learned softmax weight per modality) ─ sigmoid per tag
    audio_cnn (log-mel CNN)       ─┘

The seed computes its self-attention over the concatenated features but then fuses the raw features; polymodal's
self-attention is in the text encoder (over the tokens). ``--fusion attention`` swaps the weighted sum for
self-attention over one token per modality (the other reading of the seed). The learned modality weights are
printed at the end.

    python examples/seed001_image_text_audio.py            # 600 rows, 10 epochs
    python examples/seed001_image_text_audio.py --tiny     # CI: 90 rows, 2 epochs (benchmarks/examples_tiny.py)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from polymodal import Predictor
from polymodal.datasets.tagged import generate_tagged


def config(epochs: int, fusion: str, tiny: bool) -> dict[str, object]:
    """The polymodal config of seed 001's system (docs/SEEDS.md); --tiny narrows the encoders."""
    cfg: dict[str, object] = {
        "encoders": {
            "image": {"name": "image_cnn"},
            "text": {"name": "text_transformer", "layers": 2, "heads": 4},
            "audio": {"name": "audio_cnn"},
        },
        "fusion": {"name": "weighted"},
        "task": {"problem_type": "multilabel", "tag_separator": "|"},
        "training": {"max_epochs": epochs},
    }
    if fusion == "attention":
        cfg["fusion"] = {"name": "attention", "heads": 4}
    if tiny:
        cfg["encoders"] = {
            "image": {"name": "image_cnn", "width": 8, "stages": 2, "dim": 32},
            "text": {"name": "text_transformer", "layers": 1, "heads": 4, "dim": 32},
            "audio": {"name": "audio_cnn", "width": 8, "stages": 2, "dim": 32},
        }
    return cfg


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="few rows, small encoders, 2 epochs (for CI)")
    ap.add_argument("--rows", type=int, default=None, help="training rows (test rows: half as many; default 600)")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default 10, --tiny 2)")
    ap.add_argument(
        "--fusion", choices=["weighted", "attention"], default="weighted", help="the fusion (default weighted)"
    )
    ap.add_argument("--out", type=Path, default=Path("seed001-run"), help="folder for the data and the run")
    a = ap.parse_args(argv)
    a.rows = a.rows or (90 if a.tiny else 600)
    a.epochs = a.epochs or (2 if a.tiny else 10)

    data = a.out / "data"
    generate_tagged(data, a.rows, seed=0, prefix="train_").to_csv(data / "train.csv", index=False)
    generate_tagged(data, a.rows // 2, seed=1, prefix="test_").to_csv(data / "test.csv", index=False)

    start = time.perf_counter()
    p = Predictor("tags", config=config(a.epochs, a.fusion, a.tiny), verbose=False).fit(data / "train.csv")
    run = p.save(a.out / "run")
    loaded = Predictor.load(run, verbose=False)  # reads only the run directory
    metrics = loaded.evaluate(data / "test.csv")
    print(
        f"test subset accuracy {metrics['subset_accuracy']:.3f}, hamming loss {metrics['hamming_loss']:.3f} on "
        f"{int(metrics['rows'])} rows; {time.perf_counter() - start:.0f} s; run directory: {run}"
    )
    return metrics


if __name__ == "__main__":
    main()
