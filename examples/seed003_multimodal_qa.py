"""Seed 003: multimodal question answering over an image and a question given as text or as speech.

Two ways, on ``polymodal.datasets.scenes.make_qa`` (three questions per training scene: "what colour is the square?",
"what shape is at the top left?", "how many shapes are there?", "is there a green triangle?", "where is the red
circle?"):

1. Answer classification (VQA-style): the answer is a class from the training answers; the question is just one
   more input column. The ``vqa`` recipe (``polymodal.recipes``): FiLM fusion lets the question pick out image
   cells, which carry their row and column.
2. Free-form answer generation: ``problem_type: generation``; the decoder writes the answer token by token.

The question is the ``question`` text column or, when espeak-ng is installed, the ``question_audio`` column (the
same question spoken at a random speed and pitch); a run ignores the other one.

    python examples/seed003_multimodal_qa.py                 # three fits, roughly 20 minutes on 2 CPU cores
    python examples/seed003_multimodal_qa.py --tiny          # CI: tiny models, 23 s for all three on 2 idle cores
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from polymodal import Predictor
from polymodal.datasets.scenes import make_qa
from polymodal.recipes import recipe

TINY = {
    "encoders": {
        "image": {"name": "image_cnn", "width": 8, "dim": 16, "stages": 2},
        "audio": {"name": "audio_cnn", "width": 8, "dim": 16, "stages": 2},
        "text": {"name": "text_rnn", "hidden": 16, "embedding_dim": 16, "dim": 16},
    },
    "fusion": {"name": "film", "dim": 32, "heads": 2, "layers": 1},  # the vqa recipe's fusion, made tiny
    "task": {"generation": {"layers": 1, "dim": 32, "heads": 2}},
    "training": {"batch_size": 16},
}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--rows", type=int, default=None, help="training scenes (test: a quarter as many; default 2000, --tiny 200)"
    )
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument(
        "--speech",
        choices=["auto", "yes", "no"],
        default="auto",
        help="also answer spoken questions (needs espeak-ng; auto: when it is installed)",
    )
    ap.add_argument("--tiny", action="store_true", help="tiny models (for CI)")
    ap.add_argument("--out", type=Path, default=Path("seed003-run"), help="folder for the data and the runs")
    a = ap.parse_args(argv)
    # --tiny shows the mechanics in seconds: a small model on few scenes for few epochs, unless told otherwise
    a.rows = a.rows or (200 if a.tiny else 2000)
    a.epochs = a.epochs or (3 if a.tiny else None)

    speech = {"auto": None, "yes": True, "no": False}[a.speech]
    paths = make_qa(a.out / "data", n_train=a.rows, n_test=max(a.rows // 4, 8), speech=speech, questions_per_scene=3)
    base = {k: dict(v) for k, v in TINY.items()} if a.tiny else {}
    if a.epochs:
        base.setdefault("training", {})["max_epochs"] = a.epochs
    runs = [
        ("text question, answer classification", "question", None),
        ("text question, answer generation", "question", "generation"),
    ]
    if paths.speech:
        runs.insert(1, ("spoken question, answer classification", "question_audio", None))
    results: dict[str, dict[str, float]] = {}
    for name, question, problem in runs:
        ignore = [
            c for c in ("question", "question_audio") if c != question and (c != "question_audio" or paths.speech)
        ]
        start = time.perf_counter()
        config = base if problem == "generation" else recipe("vqa", base)
        p = Predictor("answer", problem_type=problem, config=config, ignore=ignore, verbose=False).fit(paths.train)
        run = p.save(a.out / "runs" / name.replace(" ", "_").replace(",", ""), overwrite=True)
        m = Predictor.load(run, verbose=False).evaluate(paths.test)
        score = ("accuracy", m["accuracy"]) if problem is None else ("exact match", m["exact_match"])
        print(
            f"{name}: {score[0]} {score[1]:.3f} on {int(m['rows'])} unseen scenes ({time.perf_counter() - start:.0f} s)"
        )
        results[name] = m
    return results


if __name__ == "__main__":
    main()
