"""CLI: fit --problem-type generation, predict --scores/--greedy, demo --task captioning|qa."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from polymodal.datasets.scenes import make_captioning

TINY = {
    "task": {"generation": {"layers": 1, "dim": 32, "heads": 2}},
    "encoders": {
        "image": {"name": "image_cnn", "width": 8, "dim": 16, "stages": 2},
        "text": {"name": "text_rnn", "hidden": 16, "embedding_dim": 16, "dim": 16},
    },
    "fusion": {"name": "transformer", "dim": 32, "heads": 2, "layers": 1},
    "training": {"max_epochs": 1, "batch_size": 16},
}


@pytest.fixture
def tiny_yaml(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY), encoding="utf-8")
    return path


def test_fit_and_predict_a_generation_model(cli, tmp_path, tiny_yaml):
    paths = make_captioning(tmp_path / "data", n_train=40, n_test=6)
    r = cli(
        "fit",
        paths.train,
        "--label",
        "caption",
        "--problem-type",
        "generation",
        "--config",
        tiny_yaml,
        "--out",
        tmp_path / "run",
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    assert "bleu4" in r.stdout
    r = cli("predict", tmp_path / "run", paths.test, "--scores", "--out", tmp_path / "pred.csv", "--quiet")
    assert r.exit_code == 0, r.output
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred.columns) == ["row", "prediction", "log_prob"] and len(pred) == 6
    r = cli("predict", tmp_path / "run", paths.test, "--greedy", "--quiet")
    assert r.exit_code == 0 and r.stdout.splitlines()[0] == "row,prediction"
    r = cli("predict", tmp_path / "run", paths.test, "--proba", "--quiet")
    assert r.exit_code == 2 and "--scores" in r.stderr
    r = cli("evaluate", tmp_path / "run", paths.test, "--json", "--quiet")
    assert r.exit_code == 0 and '"cider_d"' in r.stdout


@pytest.mark.parametrize("task, expect", [("captioning", "captioning demo"), ("qa", "QA demo")])
def test_demo_tasks(cli, tmp_path, tiny_yaml, task, expect):
    r = cli("demo", "--task", task, "--rows", "40", "--config", tiny_yaml, "--out", tmp_path / task, "--quiet")
    assert r.exit_code == 0, r.output
    assert expect in r.stdout and "examples" in r.stdout
    assert (tmp_path / task / "run" / "model.safetensors").is_file()
    if task == "qa":  # the vqa recipe, under the --config file's settings; three questions per training scene
        from polymodal import Predictor

        cfg = Predictor.load(tmp_path / task / "run", verbose=False).config
        assert cfg.processing.image_augment is False and cfg.encoders["image"].params()["positions"] is True
        assert cfg.fusion.name == "transformer"  # the config file's choice
        train = pd.read_csv(tmp_path / task / "data" / "train.csv")
        assert train["image"].value_counts().max() == 3


def test_demo_unknown_task(cli, tmp_path):
    r = cli("demo", "--task", "poetry", "--out", tmp_path / "x", "--quiet")
    assert r.exit_code == 2 and "captioning" in r.stderr
