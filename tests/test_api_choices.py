"""The Predictor's keyword choices (fusion, encoders, preset, time_limit), ``--encoder``, leaderboard and
fit_summary (issue 18, "the first hour")."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import tiny_config

from polymodal import Predictor
from polymodal.errors import ConfigError


def test_keyword_choices_are_merged_into_the_config():
    p = Predictor(
        "label",
        fusion="late",
        encoders={"image": "image_cnn", "review": {"name": "text_transformer", "layers": 1}},
        preset="fast",
        time_limit=60,
    )
    cfg = p.config
    assert cfg.fusion.name == "late" and cfg.training.time_limit == 60
    assert cfg.encoders["review"].name == "text_transformer" and cfg.encoders["review"].params() == {"layers": 1}
    assert cfg.encoders["text"].name == "text_rnn"  # kinds not named keep their default


def test_keyword_choices_are_parameters():
    p = Predictor("label", fusion="late", encoders={"text": "text_transformer"})
    params = p.get_params()
    assert params["fusion"] == "late" and params["encoders"] == {"text": "text_transformer"}
    clone = p.clone()
    assert clone.get_params() == params and clone.config.fusion.name == "late"
    assert p.set_params(fusion="gated").config.fusion.name == "gated"


def test_a_fusion_keyword_wins_over_the_config_and_drops_the_old_fusions_own_parameters():
    p = Predictor("label", config={"fusion": {"name": "concat", "dim": 32}}, fusion="late")
    assert p.config.fusion.name == "late" and p.config.fusion.dim == 32


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fusion": "lat"},
        {"config": {"fusion": {"name": "lat"}}},
    ],
)
def test_a_misspelt_fusion_fails_at_construction(kwargs):
    with pytest.raises(ConfigError, match=r"fusion\.name: unknown fusion 'lat'; did you mean 'late'"):
        Predictor("label", **kwargs)


@pytest.mark.parametrize(
    ("encoders", "match"),
    [
        ({"image": "text_rnn"}, r"encoders\.image: 'text_rnn' encodes text columns, not image"),
        ({"review": {"layers": 1}}, r"encoders\.review\.name: required"),
        ({"text": "text_rnm"}, r"did you mean 'text_rnn'"),
        ({"text": 3}, r"encoders\.text: expected an encoder name"),
    ],
)
def test_bad_encoder_choices_fail_at_construction(encoders, match):
    with pytest.raises(ConfigError, match=match):
        Predictor("label", encoders=encoders)


def test_a_bad_time_limit_is_a_config_error():
    with pytest.raises(ConfigError, match=r"training\.time_limit"):
        Predictor("label", time_limit=-1)


def test_cli_encoder_option(cli, train_csv, tmp_path):
    from polymodal.cli import _checked_config

    cfg = _checked_config(None, "late", None, ["text=text_transformer", "tabular = tabular_mlp"])
    assert cfg.fusion.name == "late" and cfg.encoders["text"].name == "text_transformer"
    for option, needle in (("image=text_rnn", "encodes text columns"), ("image", "expected KIND_OR_COLUMN=NAME")):
        r = cli("fit", train_csv, "--label", "label", "--out", tmp_path / "run", "--encoder", option, "--quiet")
        assert r.exit_code == 2 and needle in " ".join(r.stderr.split())
        assert not (tmp_path / "run").exists()


def test_fit_time_limit_is_for_that_call_only(tiny_data):
    p = Predictor("label", config=tiny_config(max_epochs=1), fusion="late", verbose=False)
    p.fit(tiny_data, time_limit=30)
    assert p.config.training.time_limit == 30 and p.config.fusion.name == "late"
    assert p.get_params()["time_limit"] is None
    with pytest.raises(ConfigError, match=r"training\.time_limit"):
        p.fit(tiny_data, time_limit=0)


def test_fit_summary(fitted):
    s = fitted.fit_summary()
    r = fitted.fit_result
    assert s["problem_type"] == "binary" and s["label"] == "label" and s["fusion"] == "concat"
    assert s["modalities"]["text"] == {"kind": "text", "columns": ["text"], "encoder": "text_rnn"}
    assert set(s["modalities"]) == {"image", "audio", "text", "tabular"}
    assert s["epochs_run"] == r.epochs_run and s["best_epoch"] == r.best_epoch + 1
    assert s["validation"]["accuracy"] == r.validation["val_accuracy"]
    assert s["fit_seconds"] == r.fit_seconds and s["parameters"] > 0


def test_leaderboard(fitted, test_csv):
    board = fitted.leaderboard(test_csv)
    assert isinstance(board, pd.DataFrame) and len(board) == 1
    row = board.iloc[0]
    assert row["fusion"] == "concat" and "text: text_rnn" in row["model"]
    assert row["score_test"] == pytest.approx(fitted.evaluate(test_csv)["accuracy"])
    assert row["score_val"] == fitted.fit_result.validation["val_accuracy"]
    assert {"test_accuracy", "test_roc_auc", "fit_seconds", "parameters"} <= set(board.columns)
    assert row["parameters"] == fitted.fit_summary()["parameters"]
