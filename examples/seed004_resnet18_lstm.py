"""Seed 004: a ResNet-18 image encoder and a 2-layer LSTM text encoder, concatenated, then a linear classifier.

The seed's system (on CIFAR-100 there): ``ResNet18`` image features and ``nn.LSTM(100, 256, 2)`` text features,
concatenated, one fully connected layer. Here, from scratch on generated data (seed 000's task: an image of a circle
or a square and a good or bad review, four classes, both columns needed):

    image_cnn, stages=4, blocks=2, width=64 (ResNet-18's layout, CIFAR form) ─┐
                                                                               ├─ concat ─ linear classifier
    text_rnn, cell=lstm, layers=2, hidden=256                                 ─┘

Nothing is downloaded: the networks start from random weights, as the seed's do.

    python examples/seed004_resnet18_lstm.py            # 600 rows, 8 epochs
    python examples/seed004_resnet18_lstm.py --tiny     # CI: ResNet-18's layout at width 8, 2 epochs
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from polymodal import Predictor
from polymodal.datasets.synthetic import generate_image_text


def config(epochs: int, tiny: bool) -> dict[str, object]:
    """The polymodal config of seed 004's system (docs/SEEDS.md); --tiny keeps the layout, narrows the widths."""
    cfg: dict[str, object] = {
        "encoders": {
            "image": {"name": "image_cnn", "stages": 4, "blocks": 2, "width": 64},
            "text": {"name": "text_rnn", "cell": "lstm", "layers": 2, "hidden": 256, "embedding_dim": 100},
        },
        "fusion": {"name": "concat"},
        "training": {"max_epochs": epochs},
    }
    if tiny:
        cfg["encoders"] = {
            "image": {"name": "image_cnn", "stages": 4, "blocks": 2, "width": 8},
            "text": {"name": "text_rnn", "cell": "lstm", "layers": 2, "hidden": 16, "embedding_dim": 16},
        }
    return cfg


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="few rows, narrow layers, 2 epochs (for CI)")
    ap.add_argument("--rows", type=int, default=None, help="training rows (test rows: half as many; default 600)")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default 8, --tiny 2)")
    ap.add_argument("--out", type=Path, default=Path("seed004-run"), help="folder for the data and the run")
    a = ap.parse_args(argv)
    a.rows = a.rows or (80 if a.tiny else 600)
    a.epochs = a.epochs or (2 if a.tiny else 8)

    data = a.out / "data"
    generate_image_text(data, a.rows, seed=0, prefix="train_").to_csv(data / "train.csv", index=False)
    generate_image_text(data, a.rows // 2, seed=1, prefix="test_").to_csv(data / "test.csv", index=False)

    start = time.perf_counter()
    p = Predictor("label", config=config(a.epochs, a.tiny), verbose=False).fit(data / "train.csv")
    run = p.save(a.out / "run")
    loaded = Predictor.load(run, verbose=False)  # reads only the run directory
    metrics = loaded.evaluate(data / "test.csv")
    print(
        f"test accuracy {metrics['accuracy']:.3f} on {int(metrics['rows'])} rows; "
        f"{time.perf_counter() - start:.0f} s; run directory: {run}"
    )
    return metrics


if __name__ == "__main__":
    main()
