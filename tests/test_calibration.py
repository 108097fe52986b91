"""Calibration (temperature / vector scaling), ECE and PR-AUC, and the tools for imbalanced classes: focal loss, the
class-balanced sampler and decision thresholds tuned on validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from polymodal import Predictor
from polymodal.config import CostsConfig, PolymodalConfig, TaskConfig
from polymodal.data.dataset import Prepared, make_loader
from polymodal.errors import ConfigError
from polymodal.metrics.classification import (
    average_precision,
    classification_metrics,
    expected_calibration_error,
    softmax,
)
from polymodal.reporting import plots
from polymodal.tasks import build_task
from polymodal.tasks.calibration import Temperature, VectorScaling, nll, tune_threshold


def numeric_table(n: int, seed: int, d: int, noise: float, positive_rate: float = 0.5) -> pd.DataFrame:
    """Numeric columns whose label is a near-linear rule of them with a share ``noise`` of the labels flipped."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    score = x @ np.linspace(1, -1, d) + 0.5 * np.sin(3 * x[:, 0])
    y = score > np.quantile(score, 1 - positive_rate)
    y = np.where(rng.random(n) < noise, ~y, y)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(d)])
    frame["label"] = np.where(y, "pos", "neg")
    return frame


def task(kind: str = "binary", labels=("neg", "pos"), **cfg) -> object:
    t = build_task(kind, TaskConfig(**cfg))
    t.fit_target(pd.Series(list(labels)))
    return t


# ------------------------------------------------------------------------------------------ acceptance (issue 17)
def test_temperature_halves_test_ece_of_an_over_confident_network(tmp_path):
    """Issue 17, acceptance 2: 40 noisy numeric columns, 400 training rows and a wide MLP trained at a high rate with
    no weight decay or dropout: the network is over-confident; temperature scaling fitted on validation at least
    halves the test ECE, and leaves every prediction (so accuracy) as it was."""
    data = numeric_table(1000, seed=1, d=40, noise=0.15)
    train, test = data.iloc[:400], data.iloc[400:]
    cfg = {
        "training": {
            "max_epochs": 30,
            "batch_size": 32,
            "learning_rate": 1e-2,
            "weight_decay": 0.0,
            "patience": 1000,
            "validation_fraction": 0.4,
            "seed": 2,
        },
        "encoders": {"tabular": {"name": "tabular_mlp", "hidden": 128, "layers": 2, "dim": 128}},
        "fusion": {"dim": 64, "dropout": 0.0},
    }
    p = Predictor("label", config=cfg, verbose=False, preset="fast").fit(train)
    pipeline = p.pipeline
    assert pipeline is not None
    metrics, decoded, outputs = pipeline.score(test)
    t = pipeline.task
    idx = t.encode_target(decoded.labels("label"))
    raw = t.predict_proba(outputs, calibrated=False)
    uncalibrated = classification_metrics(idx, raw)

    assert uncalibrated["ece"] > 0.1, uncalibrated  # over-confident, as built
    assert metrics["ece"] <= 0.5 * uncalibrated["ece"], (uncalibrated["ece"], metrics["ece"])
    assert metrics["accuracy"] == uncalibrated["accuracy"]
    assert (t.predict_proba(outputs).argmax(1) == raw.argmax(1)).all()
    assert metrics["log_loss"] < uncalibrated["log_loss"]

    summary = p.fit_summary()["calibration"]
    cal = summary["calibration"]
    assert cal["method"] == "temperature" and cal["temperature"] > 1  # over-confident → softened
    assert cal["val_log_loss_after"] < cal["val_log_loss_before"]
    assert summary["threshold"] is None

    # Saved with the model: the loaded run gives the same temperature and the same calibrated probabilities.
    p.save(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "task.json").read_text())["calibration"]["temperature"] == cal["temperature"]
    loaded = Predictor.load(tmp_path / "run", verbose=False)
    np.testing.assert_allclose(loaded.predict_proba(test).to_numpy(), p.predict_proba(test).to_numpy(), atol=1e-6)
    assert loaded.evaluate(test)["ece"] == pytest.approx(metrics["ece"], abs=1e-6)
    # ONNX Runtime gives the logits; the task calibrates them as in eager mode (the server goes the same way).
    onnx = Predictor.load(tmp_path / "run", verbose=False, backend="onnx")
    np.testing.assert_allclose(onnx.predict_proba(test).to_numpy(), p.predict_proba(test).to_numpy(), atol=1e-4)

    # The report shows the before/after diagram with the test ECE of both.
    fig, before, after = plots.reliability_before_after(idx, raw, t.predict_proba(outputs), "temperature")
    assert before == pytest.approx(uncalibrated["ece"]) and after == pytest.approx(metrics["ece"])
    assert len(fig.axes) == 2


# ------------------------------------------------------------------------------------------ metrics by hand
def test_ece_matches_a_hand_computed_example():
    # top-class probabilities 0.91 (right) and 0.92 (wrong) share bin 14 of 15; 0.55 (wrong) and 0.65 (right) are
    # alone in theirs: ECE = (|0.91 + 0.92 - 1| + |0.55 - 0| + |0.65 - 1|) / 4
    proba = np.array([[0.91, 0.09], [0.92, 0.08], [0.45, 0.55], [0.35, 0.65]])
    idx = np.array([0, 1, 0, 1])
    assert expected_calibration_error(idx, proba) == pytest.approx((0.83 + 0.55 + 0.35) / 4)
    # perfectly calibrated: confidence 0.75 and 3 of 4 right
    proba = np.tile([0.75, 0.25], (4, 1))
    assert expected_calibration_error(np.array([0, 0, 0, 1]), proba) == pytest.approx(0.0)


def test_pr_auc_matches_hand_computed_examples():
    # binary, positive = class 1, ranked 0.9 (pos), 0.8 (neg), 0.7 (pos): AP = 0.5 * 1 + 0.5 * 2/3
    p1 = np.array([0.9, 0.8, 0.7, 0.1])
    proba = np.stack([1 - p1, p1], axis=1)
    idx = np.array([1, 0, 1, 0])
    assert average_precision(idx, proba) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert classification_metrics(idx, proba)["pr_auc"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    # three classes, macro one-vs-rest: class 0 ranked 0.6 (pos), 0.5, 0.35 (pos) → 5/6; classes 1 and 2 → 1
    proba = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.5, 0.1, 0.4], [0.35, 0.3, 0.35]])
    idx = np.array([0, 1, 2, 0])
    assert average_precision(idx, proba) == pytest.approx((5 / 6 + 1 + 1) / 3)


# ------------------------------------------------------------------------------------------ calibrators
def test_temperature_recovers_the_scale_of_sharpened_logits_deterministically():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 3)) * 1.5
    idx = np.array([rng.choice(3, p=p) for p in softmax(true_logits)])
    t = Temperature()
    t.fit(true_logits * 3, idx)  # an over-confident network: logits three times too large
    assert t.temperature == pytest.approx(3, rel=0.1)
    again = Temperature()
    again.fit(true_logits * 3, idx)
    assert again.temperature == t.temperature
    v = VectorScaling()
    v.fit(true_logits * 3, idx)
    assert nll(v.apply(true_logits * 3), idx) <= nll(t.apply(true_logits * 3), idx) + 1e-12


def test_a_small_validation_split_the_network_gets_all_right_does_not_drive_t_to_zero():
    logits = np.array([[2.0, 0.0], [0.0, 2.0]] * 3)
    idx = np.array([0, 1] * 3)
    t = Temperature()
    t.fit(logits, idx)  # without the prior on log T the search would end at its lower bound, 0.01
    assert 0.3 < t.temperature < 1


def test_calibration_none_and_an_uncalibrated_task_keep_the_logits():
    t = task(calibration="none")
    logits = np.array([[3.0, -3.0], [-2.0, 2.0], [4.0, -1.0], [0.0, 0.5]])
    y = pd.Series(["neg", "pos", "pos", "neg"])
    t.calibrate(logits, y)
    np.testing.assert_allclose(t.predict_proba(logits), softmax(logits))
    assert t.calibration["val_ece_before"] == t.calibration["val_ece_after"]


# ------------------------------------------------------------------------------------------ state
@pytest.mark.parametrize("method", ["temperature", "vector"])
def test_task_state_round_trip_keeps_calibration_and_threshold(method):
    rng = np.random.default_rng(0)
    t = task(threshold="f1", calibration=method)
    logits = rng.normal(size=(200, 2)) * 4
    y = pd.Series(np.where(rng.random(200) < 0.3, "pos", "neg"))
    t.calibrate(logits, y)
    state = json.loads(json.dumps(t.state()))  # what task.json holds
    fresh = build_task("binary", TaskConfig())  # the config's defaults do not matter: the state does
    fresh.set_state(state)
    assert fresh.calibration == t.calibration and fresh.calibration["method"] == method
    assert fresh.threshold["value"] == t.threshold["value"]
    np.testing.assert_array_equal(fresh.postprocess(logits), t.postprocess(logits))
    np.testing.assert_allclose(fresh.predict_proba(logits), t.predict_proba(logits))


def test_an_old_task_json_without_calibration_loads_uncalibrated():
    t = build_task("binary", TaskConfig())
    t.set_state({"classes": ["no", "yes"], "class_counts": [31, 29]})  # as saved before calibration existed
    logits = np.array([[5.0, -5.0], [0.2, 0.1]])
    np.testing.assert_allclose(t.predict_proba(logits), softmax(logits))
    assert t.calibration_summary() is None and "calibration" not in t.state()


# ------------------------------------------------------------------------------------------ thresholds
def test_tune_threshold_by_hand():
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.9])
    positive = np.array([False, False, True, True, False, True])
    # F1 is best (6/7) predicting the top four positive: any threshold in (0.2, 0.3]; midway is 0.25
    assert tune_threshold(p, positive, "f1", CostsConfig()) == pytest.approx(0.25)
    # a missed positive costs 10 times a false alarm: flag everything from 0.3 (cost 1 × 1 FP) → still 0.25;
    # a false alarm costs 10 times a miss: flag only 0.9 (two misses, cost 2) → between 0.6 and 0.9
    assert tune_threshold(p, positive, "cost", CostsConfig(false_negative=10)) == pytest.approx(0.25)
    assert tune_threshold(p, positive, "cost", CostsConfig(false_positive=10)) == pytest.approx(0.75)


def test_threshold_f1_improves_validation_f1_on_an_imbalanced_binary_table(tmp_path):
    """About one positive row in eight, noisy labels: the threshold chosen for F1 beats argmax on validation."""
    # (data seed 0: F1 0.59 -> 0.64 here; seed 3, used before the training order became a function of (seed,
    # epoch), gained only 0.611 -> 0.620 then and ties now: too close to the edge for a strict comparison)
    data = numeric_table(800, seed=0, d=6, noise=0.1, positive_rate=0.12)
    cfg = {
        "training": {"max_epochs": 8, "batch_size": 32, "validation_fraction": 0.3},
        "encoders": {"tabular": {"name": "tabular_mlp", "hidden": 32, "dim": 16}},
        "fusion": {"dim": 16},
        "task": {"threshold": "f1"},
    }
    p = Predictor("label", config=cfg, verbose=False, preset="fast").fit(data)
    thr = p.fit_summary()["calibration"]["threshold"]
    assert thr["rule"] == "f1" and thr["val_tuned"] > thr["val_argmax"], thr
    # predictions follow the threshold, and the threshold survives save/load
    proba = p.predict_proba(data)["pos"].to_numpy()
    np.testing.assert_array_equal(p.predict(data).to_numpy() == "pos", proba >= thr["value"])
    p.save(tmp_path / "run")
    loaded = Predictor.load(tmp_path / "run", verbose=False)
    assert loaded.fit_summary()["calibration"]["threshold"]["value"] == thr["value"]
    np.testing.assert_array_equal(loaded.predict(data).to_numpy(), p.predict(data).to_numpy())


def test_threshold_needs_a_binary_task():
    t = build_task("multiclass", TaskConfig(threshold="f1"))
    with pytest.raises(ConfigError, match="binary"):
        t.resolve(PolymodalConfig(), {"tabular"})


def test_costs_must_not_all_be_zero():
    with pytest.raises(ConfigError, match="false_positive"):
        PolymodalConfig.from_any({"task": {"costs": {"false_positive": 0, "false_negative": 0}}})


# ------------------------------------------------------------------------------------------ focal loss
def test_focal_loss_with_gamma_0_is_cross_entropy_and_down_weighs_easy_rows():
    torch.manual_seed(0)
    logits = torch.randn(32, 3) * 3
    target = torch.randint(0, 3, (32,))
    labels = ["a", "b", "c"] * 3 + ["a"] * 5  # imbalanced: balanced weights differ per class
    for weights in ("none", "balanced"):
        ce = task("multiclass", labels, class_weights=weights).loss(logits, target)
        f0 = task("multiclass", labels, class_weights=weights, loss="focal", focal_gamma=0).loss(logits, target)
        f2 = task("multiclass", labels, class_weights=weights, loss="focal").loss(logits, target)
        assert f0.item() == pytest.approx(ce.item(), rel=1e-5)
        assert f2.item() < ce.item()


def test_focal_loss_trains_and_differs_from_cross_entropy():
    data = numeric_table(200, seed=0, d=4, noise=0.1)
    cfg = {
        # 6 epochs: after 3, focal loss's accuracy over training seeds 0-4 spread from 0.55 to 0.79 (a coin toss
        # for the bound below); after 6, seed 0 (this test's) reaches 0.755
        "training": {"max_epochs": 6, "batch_size": 32},
        "encoders": {"tabular": {"name": "tabular_mlp", "hidden": 16, "dim": 16}},
        "fusion": {"dim": 16},
        "task": {"calibration": "none"},
    }
    ce = Predictor("label", config=cfg, verbose=False, preset="fast").fit(data)
    cfg["task"] = {"calibration": "none", "loss": "focal", "focal_gamma": 2.0}
    focal = Predictor("label", config=cfg, verbose=False, preset="fast").fit(data)
    p_ce, p_focal = ce.predict_proba(data).to_numpy(), focal.predict_proba(data).to_numpy()
    assert np.isfinite(p_focal).all()
    assert not np.allclose(p_ce, p_focal)
    assert focal.evaluate(data)["accuracy"] > 0.6  # it learned the rule


# ------------------------------------------------------------------------------------------ balanced sampler
def _counts(loader) -> np.ndarray:
    return np.bincount(torch.cat([b.target for b in loader]).numpy(), minlength=2)


def test_balanced_sampler_draws_classes_evenly_and_is_seeded():
    targets = np.array([0] * 450 + [1] * 50)
    prepared = Prepared({}, np.arange(len(targets)), targets)
    shuffled = make_loader(prepared, {}, 50, True, seed=0)
    assert _counts(shuffled).tolist() == [450, 50]
    balanced = make_loader(prepared, {}, 50, True, seed=0, sampler="balanced")
    counts = _counts(balanced)
    assert counts.sum() == 500 and abs(counts[1] / 500 - 0.5) < 0.08, counts  # 9:1 in the table, ~1:1 drawn
    order = [b.target.tolist() for b in make_loader(prepared, {}, 50, True, seed=0, sampler="balanced")]
    again = [b.target.tolist() for b in make_loader(prepared, {}, 50, True, seed=0, sampler="balanced")]
    other = [b.target.tolist() for b in make_loader(prepared, {}, 50, True, seed=1, sampler="balanced")]
    assert order == again and order != other
    # validation and prediction loaders ignore it: every row once, in order
    plain = make_loader(prepared, {}, 50, False, sampler="balanced")
    assert torch.cat([b.target for b in plain]).tolist() == targets.tolist()


def test_balanced_sampler_is_refused_for_regression():
    data = numeric_table(60, seed=0, d=2, noise=0.0)
    data["label"] = data["x0"] * 2.0
    p = Predictor(
        "label", problem_type="regression", config={"training": {"sampler": "balanced"}}, verbose=False, preset="fast"
    )
    with pytest.raises(ConfigError, match="sampler"):
        p.fit(data)


def test_loaded_config_keeps_new_options():
    cfg = PolymodalConfig.from_any(
        {
            "task": {"loss": "focal", "threshold": "cost", "costs": {"false_negative": 5}},
            "training": {"sampler": "balanced"},
        }
    )
    assert cfg.task.loss == "focal" and cfg.task.costs.false_negative == 5 and cfg.training.sampler == "balanced"
    assert PolymodalConfig().task.calibration == "temperature" and PolymodalConfig().training.sampler == "shuffle"
    assert math.isclose(PolymodalConfig().task.focal_gamma, 2.0)
