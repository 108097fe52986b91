"""Default ``fit`` (no preset): the fused network, joined by the classical members on small tables when they improve
it on validation (issue 17: a multimodal model must not lose to a gradient-boosted or linear model on its own
table); the network alone past the row limit, for problems an ensemble cannot combine, and with preset "fast"."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config

from polymodal import Predictor
from polymodal.ensemble import is_ensemble


def numbers_table(n: int, seed: int) -> pd.DataFrame:
    """A label set by thresholds on two numeric columns (an axis-aligned rule: what trees learn at once and a
    network trained for 2 epochs does not)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] > 0.3) & (x[:, 1] < 0.5)
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": np.where(y, "yes", "no")})


def _fit(frame: pd.DataFrame, **kw) -> Predictor:
    return Predictor("label", config=tiny_config(max_epochs=2), verbose=False, **kw).fit(frame)


def test_default_fit_trains_the_classical_members_beside_the_network_and_keeps_the_better():
    train, test = numbers_table(400, 0), numbers_table(300, 1)
    p = _fit(train)
    members = {m["member"] for m in p.fit_summary()["members"]}
    assert {"fused_concat", "gbm", "linear"} <= members  # the table has no text: no text-only members
    assert "only_tabular" not in members and "fused_late" not in members  # those are the quality preset's
    fast = _fit(train, preset="fast")
    assert not is_ensemble(fast.model) and fast.pipeline.leaderboard is None
    # trees learn the thresholds: the default is well above the 2-epoch network here, on test as on validation
    assert p.evaluate(test)["accuracy"] >= fast.evaluate(test)["accuracy"] + 0.03
    board = p.leaderboard(test).set_index("model")
    best_val = board.drop(index="ensemble", errors="ignore")["score_val"].max()
    assert p.fit_summary()["validation"]["accuracy"] >= best_val - 1e-9


def test_the_network_alone_is_the_model_when_nothing_improves_on_it(tmp_path):
    # a label only the text tells, in words the linear text members see too: whichever wins, a lone winner that is
    # the fused network must come back as a plain network (no one-member ensemble), with the members it beat listed
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    frame = pd.DataFrame({"x": rng.normal(size=300), "label": np.where(y == 1, "p", "n")})
    frame["x"] += y * 4.0  # one clean threshold: every member gets it right
    p = _fit(frame)
    weights = {m["member"]: m["weight"] for m in p.fit_summary()["members"] if m["member"] != "ensemble"}
    if [n for n, w in weights.items() if w > 0] == ["fused_concat"]:
        assert not is_ensemble(p.model) and p.config.ensemble is None
        p.save(tmp_path / "run")
        again = Predictor.load(tmp_path / "run", verbose=False)
        assert not is_ensemble(again.model) and again.pipeline.leaderboard is not None
    else:
        assert is_ensemble(p.model) and p.config.ensemble is not None


def test_past_the_row_limit_the_network_trains_alone(monkeypatch, caplog):
    import polymodal.selection as selection

    monkeypatch.setattr(selection, "AUTO_MAX_ROWS", 100)
    with caplog.at_level(logging.INFO, logger="polymodal"):
        p = _fit(numbers_table(300, 0))
    assert not is_ensemble(p.model) and p.pipeline.leaderboard is None
    assert "classical members join it up to 100" in caplog.text


def test_a_problem_no_ensemble_combines_trains_the_network_alone(caplog):
    frame = numbers_table(200, 0)
    frame["label"] = [["a", "b"] if v == "yes" else ["a"] for v in frame["label"]]
    with caplog.at_level(logging.INFO, logger="polymodal"):
        p = _fit(frame)
    assert p.problem_type == "multilabel" and not is_ensemble(p.model)
    assert "a multilabel model is not an ensemble" in caplog.text


@pytest.mark.parametrize("preset", ["fast", "pretrained"])
def test_named_one_network_presets_train_no_members(preset):
    p = _fit(numbers_table(200, 0), preset=preset)
    assert not is_ensemble(p.model) and "members" not in p.fit_summary()
