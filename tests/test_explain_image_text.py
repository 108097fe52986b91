"""Attribution sanity on seed 000's image + text task (shape × sentiment): the explanations must look where the
label is decided, i.e. at the sentiment adjective among the filler words and at the shape inside the image.

One tiny model is trained for the whole module; its test accuracy is checked first so that a failure of the
attribution checks below is not a model that never learned the task.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config

from polymodal import Predictor
from polymodal.datasets.synthetic import NEGATIVE, POSITIVE, generate_image_text

ADJECTIVES = set(POSITIVE + NEGATIVE)


@pytest.fixture(scope="module")
def image_text(tmp_path_factory):
    root = tmp_path_factory.mktemp("image_text")
    generate_image_text(root, 600, seed=1, prefix="tr_", shape_box=True).to_csv(root / "train.csv", index=False)
    test = generate_image_text(root, 40, seed=2, prefix="te_", shape_box=True)
    cfg = tiny_config(max_epochs=20, batch_size=32)
    cfg["training"]["learning_rate"] = 5e-3
    p = Predictor("label", config=cfg, ignore=["shape_box"], verbose=False, seed=0).fit(root / "train.csv")
    return p, test, root


def _box_mass_ratios(explanations, test: pd.DataFrame) -> np.ndarray:
    """Per row: the share of the image's |attribution| inside the shape's bounding box ÷ the box's share of the
    image's area (> 1: the map concentrates on the shape)."""
    ratios = []
    for e, box in zip(explanations, test["shape_box"]):
        x0, y0, x1, y1 = (int(v) for v in box.split(","))
        s = np.abs(e.attributions["image"].scores)
        assert s.shape == (32, 32)  # the processed image's frame (the generator's images are 32×32 already)
        inside = s[y0 : y1 + 1, x0 : x1 + 1].sum() / s.sum()
        ratios.append(inside / ((y1 - y0 + 1) * (x1 - x0 + 1) / s.size))
    return np.asarray(ratios)


def _top_token_hits(explanations) -> np.ndarray:
    hits = []
    for e in explanations:
        a = e.attributions["text"]
        assert len(a.tokens) == len(a.scores) and {"the", "was"} <= set(a.tokens)  # words as written
        hits.append(a.tokens[int(np.argmax(a.scores))] in ADJECTIVES)
    return np.asarray(hits)


def test_the_model_learned_the_task(image_text):
    p, test, root = image_text
    assert p.evaluate(test, data_root=root)["accuracy"] >= 0.9


@pytest.mark.parametrize(
    "method, min_hits, min_inside, min_ratio",
    [
        # measured (seeded): occlusion (log-odds) 0.975 of rows / 0.75 of rows / median 1.32 (on the probability:
        # 0.975 / 0.825 / 1.47); IG 0.925-0.975 / 1.0 / 1.85-1.91
        ("occlusion", 0.8, 0.65, 1.2),
        ("integrated_gradients", 0.8, 0.8, 1.5),
    ],
)
def test_attributions_find_the_adjective_and_the_shape(image_text, method, min_hits, min_inside, min_ratio):
    p, test, root = image_text
    explanations = p.explain(test, method=method, data_root=root)
    assert len(explanations) == len(test)
    hits = _top_token_hits(explanations)
    ratios = _box_mass_ratios(explanations, test)
    assert hits.mean() >= min_hits, f"the sentiment adjective is the top token in {hits.mean():.0%} of rows"
    assert (ratios > 1).mean() >= min_inside, f"image mass/area inside the shape's box: {np.round(ratios, 2)}"
    assert np.median(ratios) > min_ratio, f"median image mass/area inside the shape's box: {np.median(ratios):.2f}"
    for e in explanations:
        assert e.method == method and e.fusion_weights is None  # concat fusion: no weights over modalities
        assert set(e.attributions) == {"image", "text"}
        assert sum(e.shares.values()) == pytest.approx(1.0)
        bg = e.attributions["image"].background
        assert bg.shape == (32, 32, 3) and bg.min() >= 0 and bg.max() <= 1
    assert [e.prediction for e in explanations] == p.predict(test, data_root=root).tolist()


def test_integrated_gradients_is_complete(image_text):
    """The attributions of a row add up to the explained number at the input minus at the baseline."""
    p, test, root = image_text
    for e in p.explain(test.head(6), method="integrated_gradients", data_root=root):
        total = sum(a.total for a in e.attributions.values())
        assert e.explained == "logit of the predicted class"
        assert total == pytest.approx(e.score - e.baseline_score, abs=0.05 * max(1.0, abs(e.score)))
