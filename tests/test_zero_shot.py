"""Zero-shot classification with an aligned model: a retrieval run on tiny CLIP towers (built in-process, no
network) classifies images into label names it was never trained on, in Python and from the command line."""

from __future__ import annotations

from pathlib import Path

import hf_tiny
import numpy as np
import pandas as pd
import pytest

from polymodal import Predictor
from polymodal.datasets.pairs import make_pairs
from polymodal.errors import ConfigError
from polymodal.zeroshot import prompts_for

LABELS = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("zs-pairs"), n_train=48, n_test=12, seed=1)


@pytest.fixture(scope="module")
def clip_run(pairs, tmp_path_factory) -> Path:
    model = hf_tiny.build("clip", tmp_path_factory.mktemp("zs-models") / "clip")
    config = {
        "training": {"max_epochs": 1, "batch_size": 16},
        "encoders": {
            "text": {"name": "clip_text", "model": str(model), "dim": 8},
            "image": {"name": "clip_image", "model": str(model), "dim": 8},
        },
        "task": {"retrieval": {"dim": 8}},
    }
    p = Predictor(problem_type="retrieval", query="caption", target="image", config=config, verbose=False)
    return p.fit(pairs.train).save(tmp_path_factory.mktemp("zs-runs") / "clip")


def test_zero_shot_with_tiny_clip_end_to_end(clip_run, pairs):
    p = Predictor.load(clip_run, verbose=False)
    test = pd.read_csv(pairs.test)
    result = p.zero_shot(pairs.test, LABELS, prompt="a {label} at the centre")
    assert result.prompts == [f"a {label} at the centre" for label in LABELS]
    assert list(result.scores.columns) == LABELS and len(result.scores) == len(test)
    assert set(result.predictions) <= set(LABELS) and len(result.predictions) == len(test)
    scores = result.scores.to_numpy()
    assert np.isfinite(scores).all() and (np.abs(scores) <= 1 + 1e-5).all()  # cosine similarities
    # each prediction is the label of highest similarity
    assert (result.predictions.to_numpy() == np.asarray(LABELS)[scores.argmax(axis=1)]).all()
    # the image column alone is enough: the caption column need not be in the table
    alone = p.zero_shot(test[["image"]], LABELS, data_root=pairs.root)
    assert (alone.predictions.to_numpy() == p.zero_shot(pairs.test, LABELS).predictions.to_numpy()).all()


def test_cli_zero_shot(clip_run, pairs, cli, tmp_path):
    out = tmp_path / "zs.csv"
    r = cli("zero-shot", clip_run, pairs.test, "--labels", ",".join(LABELS), "--prompt", "a {label}", "--out", out)
    assert r.exit_code == 0, r.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["prediction", *LABELS] and set(frame["prediction"]) <= set(LABELS)
    r = cli("zero-shot", clip_run, pairs.test, "--labels", "circle,square", "--prompt", "a shape")
    assert r.exit_code == 2 and "{label}" in r.output


def test_bad_labels_and_prompts_are_refused():
    with pytest.raises(ConfigError, match="at least two labels"):
        prompts_for(["cat"], "a {label}")
    with pytest.raises(ConfigError, match="repeat"):
        prompts_for(["cat", "cat"], "a {label}")
    with pytest.raises(ConfigError, match="must contain"):
        prompts_for(["cat", "dog"], "a photo")
    with pytest.raises(ConfigError, match="braces"):
        prompts_for(["cat", "dog"], "a {label} {x}")
    assert prompts_for(["cat", "dog"], "a photo of a {label}") == ["a photo of a cat", "a photo of a dog"]


def test_zero_shot_needs_a_retrieval_model(fitted, test_csv):
    with pytest.raises(ConfigError, match="retrieval model"):
        fitted.zero_shot(test_csv, ["yes", "no"])
