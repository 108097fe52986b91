"""The config is checked against the registered components when it is read, before any table or file."""

from __future__ import annotations

import time

import pandas as pd
import pytest
import yaml

from polymodal.components import check_config
from polymodal.config import PolymodalConfig, check_encoder_keys
from polymodal.errors import ConfigError
from polymodal.schema import Modality


def _check(cfg: dict) -> None:
    check_config(PolymodalConfig.from_any(cfg))


@pytest.mark.parametrize(
    "cfg, path, suggestion",
    [
        ({"encoders": {"image": {"name": "image_cnn", "widht": 8}}}, "encoders.image.widht", "width"),
        ({"encoders": {"review": {"name": "text_rnn", "hiden": 8}}}, "encoders.review.hiden", "hidden"),
        ({"fusion": {"name": "late", "combin": "vote"}}, "fusion.combin", "combine"),
        ({"training": {"learnin_rate": 0.1}}, "training.learnin_rate", "learning_rate"),
        (
            {"task": {"generation": {"decoding": {"beam_widht": 2}}}},
            "task.generation.decoding.beam_widht",
            "beam_width",
        ),
    ],
)
def test_typo_names_path_and_closest_key(cfg, path, suggestion):
    with pytest.raises(ConfigError) as e:
        _check(cfg)
    assert f"{path}: unknown key; did you mean '{suggestion}'?" in str(e.value)


def test_wrong_type_names_expected_type():
    with pytest.raises(ConfigError, match=r"encoders\.text\.layers: expected an integer, got 'two'"):
        _check({"encoders": {"text": {"name": "text_rnn", "layers": "two"}}})
    with pytest.raises(ConfigError, match=r"training\.max_epochs: expected an integer or null, got 'ten'"):
        _check({"training": {"max_epochs": "ten"}})
    with pytest.raises(ConfigError, match=r"encoders\.text\.cell: expected one of 'gru' or 'lstm'.*did you mean 'gru'"):
        _check({"encoders": {"text": {"name": "text_rnn", "cell": "gr"}}})


def test_unknown_names_and_kind_mismatch_are_listed_together():
    with pytest.raises(ConfigError) as e:
        _check(
            {"encoders": {"image": {"name": "imag_cnn"}, "text": {"name": "image_cnn"}}, "fusion": {"name": "conact"}}
        )
    msg = str(e.value)
    assert "encoders.image.name: unknown encoder 'imag_cnn'; did you mean 'image_cnn'?" in msg
    assert "encoders.text: 'image_cnn' encodes image columns, not text" in msg
    assert "fusion.name: unknown fusion 'conact'; did you mean 'concat'?" in msg


def test_required_encoder_param_and_unknown_key_without_close_match():
    with pytest.raises(ConfigError, match=r"encoders\.notes\.model: required"):
        _check({"encoders": {"notes": {"name": "hf_text"}}})
    with pytest.raises(ConfigError, match=r"fusion\.zzz: unknown key; valid keys: .*rank_dim"):
        _check({"fusion": {"name": "tensor", "zzz": 1}})


def test_generation_ignores_the_fusion_section():
    # generation builds no fusion: a section meant for a fused task must not stop it
    _check({"task": {"problem_type": "generation"}, "fusion": {"heads": 2}})
    with pytest.raises(ConfigError, match="fusion.heads"):
        _check({"fusion": {"heads": 2}})


def test_encoder_keys_are_checked_against_the_table():
    cfg = PolymodalConfig.from_any({"encoders": {"reveiw": {"name": "text_rnn"}, "photo": {"name": "text_rnn"}}})
    mods = [Modality("review", "text", ["review"]), Modality("photo", "image", ["photo"])]
    with pytest.raises(ConfigError) as e:
        check_encoder_keys(cfg, mods)
    msg = str(e.value)
    assert "encoders.reveiw: this table has no column or modality 'reveiw'; did you mean 'review'?" in msg
    assert "photo, review" in msg  # the valid names
    assert "encoders.photo: 'text_rnn' encodes text columns, but 'photo' is an image modality" in msg


def test_cli_fit_exits_2_on_a_config_typo_before_decoding(cli, tmp_path):
    # The table names image files that do not exist: had the table been decoded, this would be a data error.
    table = tmp_path / "table.csv"
    pd.DataFrame({"img": [f"missing{i}.png" for i in range(8)], "y": [0, 1] * 4}).to_csv(table, index=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"encoders": {"image": {"name": "image_cnn", "widht": 8}}}))
    start = time.perf_counter()
    r = cli("fit", table, "--label", "y", "--config", bad, "--out", tmp_path / "run", "--quiet")
    print(f"config error after {time.perf_counter() - start:.3f} s")  # measured, not asserted
    assert r.exit_code == 2
    assert "encoders.image.widht: unknown key; did you mean 'width'?" in r.stderr
    assert "missing0.png" not in r.stderr and "row" not in r.stderr
    assert not (tmp_path / "run").exists()


def test_cli_validate_and_compare_check_the_config_first(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"training": {"learnin_rate": 0.1}}))
    missing = tmp_path / "no-such-table.csv"  # never opened
    for args in (("validate", missing, "--label", "y"), ("compare", missing, "--label", "y", "--out", tmp_path / "c")):
        r = cli(*args, "--config", bad, "--quiet")
        assert r.exit_code == 2 and "did you mean 'learning_rate'?" in r.stderr, r.stderr
