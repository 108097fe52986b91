"""Seed 002: image captioning — a CNN image encoder and a Transformer decoder that attends to the image's feature
map, trained with teacher forcing, decoded with beam search.

The data: ``polymodal.datasets.scenes.make_captioning`` draws scenes of 1-3 coloured shapes with templated captions
("a red circle at the top left and a blue square at the centre"); the test scenes never occur in training.

    python examples/seed002_captioning.py             # the default model, ~10 minutes on 2 CPU cores
    python examples/seed002_captioning.py --tiny      # CI: a tiny model, 11 s on 2 idle cores (shows the mechanics)

Prints BLEU-1..4, ROUGE-L and CIDEr-D of beam search and of greedy decoding on the unseen scenes, and a few
generated captions. The run directory holds the target tokenizer (task.json) and everything else needed to caption
again: ``Predictor.load(run).predict(table)``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from polymodal import Predictor
from polymodal.datasets.scenes import make_captioning

TINY = {
    "task": {"generation": {"layers": 1, "dim": 32, "heads": 2}},
    "encoders": {"image": {"name": "image_cnn", "width": 8, "dim": 16, "stages": 2}},
    "training": {"batch_size": 16},
}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--rows", type=int, default=None, help="training scenes (test: a quarter as many; default 2000, --tiny 200)"
    )
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default: chosen from the data)")
    ap.add_argument("--tiny", action="store_true", help="a tiny model (for CI)")
    ap.add_argument("--out", type=Path, default=Path("seed002-run"), help="folder for the data and the run")
    a = ap.parse_args(argv)
    # --tiny shows the mechanics in seconds: a small model on few scenes for few epochs, unless told otherwise
    a.rows = a.rows or (200 if a.tiny else 2000)
    a.epochs = a.epochs or (3 if a.tiny else None)

    paths = make_captioning(a.out / "data", n_train=a.rows, n_test=max(a.rows // 4, 8))
    config = {k: dict(v) for k, v in TINY.items()} if a.tiny else {}
    if a.epochs:
        config.setdefault("training", {})["max_epochs"] = a.epochs
    start = time.perf_counter()
    p = Predictor("caption", problem_type="generation", config=config, verbose=not a.tiny).fit(paths.train)
    run = p.save(a.out / "run", overwrite=True)
    loaded = Predictor.load(run, verbose=False)  # reads only the run directory
    results = {method: loaded.evaluate(paths.test, decoding={"method": method}) for method in ("beam", "greedy")}
    for method, m in results.items():
        print(
            f"{method:>6}: BLEU-1 {m['bleu1']:.3f}  BLEU-4 {m['bleu4']:.3f}  ROUGE-L {m['rouge_l']:.3f}  "
            f"CIDEr-D {m['cider_d']:.3f}  ({int(m['rows'])} unseen scenes)"
        )
    sample = pd.read_csv(paths.test).head(3)
    for ref, gen in zip(sample["caption"], loaded.predict(sample, data_root=paths.root)):
        print(f"  reference: {ref}\n  generated: {gen}")
    print(f"{time.perf_counter() - start:.0f} s; run directory: {run}")
    return results


if __name__ == "__main__":
    main()
