"""Encoders chosen per column: two text columns, each with its own encoder, trained, saved, loaded, reported."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from polymodal import Predictor
from polymodal.config import PolymodalConfig, encoder_choice
from polymodal.encoders.text import TextRNN, TextTransformer
from polymodal.errors import ConfigError
from polymodal.schema import Modality

CONFIG = {
    "encoders": {
        "title": {"name": "text_rnn", "hidden": 8, "embedding_dim": 8, "dim": 16},
        "body": {"name": "text_transformer", "layers": 1, "heads": 2, "dim": 16, "max_positions": 32},
        "text": {"name": "text_rnn", "hidden": 4, "embedding_dim": 4, "dim": 8},  # the kind's: no column uses it
    },
    "fusion": {"dim": 16},
    "training": {"max_epochs": 1, "batch_size": 16},
}


def two_text_table(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    words = ["red", "blue", "green", "cat", "dog", "big", "small", "fast", "slow", "old"]
    y = rng.integers(0, 2, n)
    title = [" ".join(rng.choice(words, 3)) + (" good" if v else " bad") for v in y]
    body = [" ".join(rng.choice(words, 8)) for _ in range(n)]
    return pd.DataFrame({"title": title, "body": body, "y": np.where(y == 1, "yes", "no")})


def test_resolver_column_entry_wins_over_kind():
    cfg = PolymodalConfig.from_any(CONFIG)
    assert encoder_choice(cfg, Modality("title", "text", ["title"])).name == "text_rnn"
    assert encoder_choice(cfg, Modality("body", "text", ["body"])).name == "text_transformer"
    assert encoder_choice(cfg, Modality("other", "text", ["other"])).params()["hidden"] == 4  # the kind's
    assert encoder_choice(cfg, Modality("tabular", "tabular", ["a"])).name == "tabular_mlp"  # default filled in


@pytest.fixture(scope="module")
def fitted():
    return Predictor("y", config=CONFIG, verbose=False, preset="fast").fit(two_text_table())


def test_two_text_columns_get_their_own_encoders(fitted, tmp_path):
    assert type(fitted.model.encoders["title"]) is TextRNN
    assert type(fitted.model.encoders["body"]) is TextTransformer
    assert fitted.model.encoders["title"].dim == 16 and fitted.model.encoders["title"].config.hidden == 8
    # the run directory keeps the per-column choice: the loaded model is the same
    fitted.save(tmp_path / "run")
    again = Predictor.load(tmp_path / "run", verbose=False)
    assert type(again.model.encoders["body"]) is TextTransformer
    frame = two_text_table(8, seed=1)
    np.testing.assert_allclose(
        again.predict_proba(frame).to_numpy(), fitted.predict_proba(frame).to_numpy(), rtol=1e-5, atol=1e-6
    )


def test_report_schema_shows_each_columns_encoder(fitted):
    from polymodal.reporting.context import summarise
    from polymodal.reporting.sections.run import SchemaSection

    ctx = SimpleNamespace(predictor=fitted, summary=summarise(fitted, None))
    table = SchemaSection().build(ctx).blocks[-1]
    encoder = {row[0]: row[3] for row in table.rows}
    assert encoder["title"].startswith("text_rnn (") and encoder["title"].endswith("[encoders.title]")
    assert encoder["body"].startswith("text_transformer (") and "layers=1" in encoder["body"]


def test_a_key_that_is_no_column_fails_before_decoding(tmp_path):
    frame = two_text_table(12)
    with pytest.raises(ConfigError, match=r"encoders\.titel: .*did you mean 'title'\?.*body, title"):
        Predictor("y", config={"encoders": {"titel": {"name": "text_rnn"}}}, verbose=False, preset="fast").fit(frame)
