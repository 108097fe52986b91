"""Recipes: configs for a kind of problem, merged under the user's config (Python and `fit --recipe`)."""

from __future__ import annotations

import pytest
import yaml

from polymodal import Predictor
from polymodal.config import PolymodalConfig
from polymodal.datasets.scenes import make_qa
from polymodal.errors import ConfigError
from polymodal.recipes import RECIPES, recipe

TINY = {
    "encoders": {
        "image": {"width": 8, "dim": 16, "stages": 2},
        "text": {"name": "text_rnn", "hidden": 16, "embedding_dim": 16, "dim": 16},
    },
    "fusion": {"dim": 32},
    "training": {"max_epochs": 1, "batch_size": 16},
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_is_a_valid_config(name):
    cfg = PolymodalConfig.from_any(recipe(name))
    assert cfg.to_dict() != PolymodalConfig().to_dict()


def test_user_config_wins_key_by_key_and_the_recipe_fills_in_the_rest():
    cfg = recipe("vqa", {"training": {"max_epochs": 3}, "encoders": {"image": {"width": 8}}})
    assert cfg["training"] == {"learning_rate": 5e-4, "max_epochs": 3}
    assert cfg["encoders"]["image"] == {"name": "image_cnn", "coords": True, "positions": True, "width": 8}
    assert cfg["fusion"] == {"name": "film"} and cfg["processing"] == {"image_augment": False}
    assert recipe("vqa", {"training": {"learning_rate": 1e-3}})["training"]["learning_rate"] == 1e-3
    assert RECIPES["vqa"]["training"] == {"learning_rate": 5e-4}  # the recipe itself is never changed


def test_a_component_named_differently_replaces_the_recipes():
    cfg = recipe(
        "vqa",
        {"fusion": {"name": "transformer", "layers": 1}, "encoders": {"image": {"name": "hf_image", "model": "x"}}},
    )
    assert cfg["fusion"] == {"name": "transformer", "layers": 1}
    assert cfg["encoders"]["image"] == {"name": "hf_image", "model": "x"}  # no image_cnn parameters left over


def test_unknown_recipe_names_the_choices(cli, tmp_path):
    with pytest.raises(ConfigError, match="vqa"):
        recipe("poetry")
    paths = make_qa(tmp_path / "data", n_train=20, n_test=4, speech=False)
    r = cli("fit", paths.train, "--label", "answer", "--recipe", "poetry", "--out", tmp_path / "run", "--quiet")
    assert r.exit_code == 2 and "vqa" in r.stderr and not (tmp_path / "run").exists()


def test_fit_with_the_vqa_recipe_under_a_config_file(cli, tmp_path):
    paths = make_qa(tmp_path / "data", n_train=40, n_test=6, speech=False)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY), encoding="utf-8")
    r = cli(
        "fit",
        paths.train,
        "--label",
        "answer",
        "--recipe",
        "vqa",
        "--config",
        config,
        "--out",
        tmp_path / "run",
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    cfg = Predictor.load(tmp_path / "run", verbose=False).config
    assert cfg.fusion.name == "film" and cfg.fusion.dim == 32
    assert cfg.encoders["image"].params() == {"width": 8, "dim": 16, "stages": 2, "coords": True, "positions": True}
    assert cfg.processing.image_augment is False and cfg.training.learning_rate == 5e-4
    assert cfg.training.max_epochs == 1
