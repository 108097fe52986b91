"""Tasks (metrics, target encoding, state), config (YAML round trip, errors) and the registries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as skm

from polymodal.config import PolymodalConfig
from polymodal.errors import ConfigError, DataError
from polymodal.registry import ENCODERS, FUSIONS, TASKS, Registry
from polymodal.tasks import build_task

CLS_KEYS = {
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "precision_macro",
    "recall_macro",
    "log_loss",
    "ece",
    "pr_auc",
}


def _task(kind, labels):
    t = build_task(kind, PolymodalConfig().task)
    t.fit_target(pd.Series(labels))
    return t


def test_binary_metrics_keys_and_values():
    t = _task("binary", ["no", "yes", "no", "yes"])
    assert t.classes == ["no", "yes"] and t.n_outputs == 2
    y = pd.Series(["no", "yes", "yes", "no", "yes"])
    outputs = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5], [0.2, 0.1], [-1.0, 1.0]])
    m = t.metrics(y, outputs)
    assert set(m) == CLS_KEYS | {"roc_auc"}
    proba = t.predict_proba(outputs)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    idx = np.array([0, 1, 1, 0, 1])
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(idx, proba.argmax(1)))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(idx, proba[:, 1]))
    assert m["log_loss"] == pytest.approx(skm.log_loss(idx, proba))
    assert all(isinstance(v, float) for v in m.values())
    assert list(t.postprocess(outputs)) == ["no", "yes", "no", "no", "yes"]


def test_multiclass_metrics_have_no_roc_auc_and_bounded_values():
    t = _task("multiclass", [3, 1, 2, 1])
    assert t.classes == [1, 2, 3]
    rng = np.random.default_rng(0)
    m = t.metrics(pd.Series([1, 2, 3, 1, 2, 3]), rng.normal(size=(6, 3)))
    assert set(m) == CLS_KEYS
    for k in CLS_KEYS - {"log_loss"}:  # ece and pr_auc lie in [0, 1] too
        assert 0.0 <= m[k] <= 1.0
    assert m["log_loss"] > 0


def test_labels_match_by_text_and_unseen_labels_are_errors():
    t = _task("multiclass", [1, 2, 3])
    assert t.encode_target(pd.Series([1.0, "2", 3, 4])).tolist() == [0, 1, 2, -1]
    out = np.eye(3)[[0, 1, 2, 0]] * 5
    m = t.metrics(pd.Series([1, 2, 3, 4]), out)
    assert m["accuracy"] == pytest.approx(0.75)


def test_classification_needs_two_classes():
    with pytest.raises(DataError, match="at least 2"):
        _task("binary", ["a", "a", "a"])


def test_classification_state_round_trip():
    t = _task("binary", ["x", "y", "y"])
    u = build_task("binary", PolymodalConfig().task)
    u.set_state(t.state())
    out = np.array([[0.1, 0.3], [2.0, -1.0]])
    assert list(u.postprocess(out)) == list(t.postprocess(out))
    assert u.class_counts == [1, 2]


def test_balanced_class_weights():
    cfg = PolymodalConfig.from_any({"task": {"class_weights": "balanced"}}).task
    t = build_task("binary", cfg)
    t.fit_target(pd.Series(["a"] * 3 + ["b"]))
    assert t._weights is not None and t._weights[1] > t._weights[0]
    loss = t.loss(torch.zeros(2, 2), torch.tensor([0, 1]))
    assert torch.isfinite(loss)


def test_regression_metrics_and_scaling():
    t = _task("regression", [1.0, 2.0, 3.0, 4.0])
    enc = t.encode_target(pd.Series([1.0, 4.0]))
    assert enc.dtype == np.float32
    outputs = enc.reshape(-1, 1).astype(np.float32)
    np.testing.assert_allclose(t.postprocess(outputs), [1.0, 4.0], rtol=1e-6)
    m = t.metrics(pd.Series([1.0, 4.0]), outputs)
    assert set(m) == {"rmse", "mae", "r2"}
    assert m["rmse"] == pytest.approx(0.0, abs=1e-5) and m["mae"] == pytest.approx(0.0, abs=1e-5)
    assert m["r2"] == pytest.approx(1.0)
    m2 = t.metrics(pd.Series([1.0, 2.0, 3.0]), np.zeros((3, 1), np.float32))
    assert m2["rmse"] == pytest.approx(np.sqrt(np.mean((np.array([1, 2, 3]) - t.mean) ** 2)))
    u = build_task("regression", PolymodalConfig().task)
    u.set_state(t.state())
    np.testing.assert_array_equal(u.postprocess(outputs), t.postprocess(outputs))


def test_regression_rejects_text_labels():
    t = _task("regression", [1.0, 2.0])
    with pytest.raises(DataError, match="row 1.*'abc'"):
        t.encode_target(pd.Series([1.0, "abc"]))


# ------------------------------------------------------------------------------------------------- config
def test_config_yaml_round_trip(tmp_path):
    cfg = PolymodalConfig.from_any(
        {
            "columns": {"a": "text"},
            "ignore": ["b"],
            "on_error": "skip",
            "limits": {"max_image_pixels": 1234},
            "encoders": {"text": {"name": "text_transformer", "layers": 1, "dim": 32}},
            "fusion": {"dim": 64},
            "training": {"max_epochs": 3, "seed": 7},
        }
    )
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml(), encoding="utf-8")
    again = PolymodalConfig.from_any(path)
    assert again == cfg
    assert again.to_dict() == cfg.to_dict()
    assert again.encoders["text"].params() == {"layers": 1, "dim": 32}
    assert again.encoders["image"].name == "image_cnn"  # defaults filled for kinds not given
    # JSON works too
    jpath = tmp_path / "c.json"
    import json

    jpath.write_text(json.dumps(cfg.to_dict()), encoding="utf-8")
    assert PolymodalConfig.from_any(jpath) == cfg


@pytest.mark.parametrize(
    "bad, needle",
    [
        ({"training": {"max_epochs": 0}}, "max_epochs"),
        ({"on_error": "explode"}, "on_error"),
        ({"trainin": {}}, "trainin"),
        ({"encoders": {"video": {"name": "x"}}}, "encoders.video.name: unknown encoder 'x'"),
        ({"columns": {"a": "picture"}}, "picture"),
    ],
)
def test_invalid_config_is_config_error(bad, needle):
    # A key other than a kind names a column (checked with the table); its encoder is checked with the components.
    from polymodal.components import check_config

    with pytest.raises(ConfigError, match=needle):
        check_config(PolymodalConfig.from_any(bad))


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        PolymodalConfig.from_any(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        PolymodalConfig.from_any(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        PolymodalConfig.from_any(lst)


def test_unknown_encoder_name_lists_choices(tiny_data):
    from conftest import tiny_config

    from polymodal import Predictor

    cfg = tiny_config()
    cfg["encoders"]["image"] = {"name": "resnet9000"}
    with pytest.raises(ConfigError) as e:
        Predictor("label", config=cfg, verbose=False).fit(tiny_data)
    msg = str(e.value)
    assert "unknown encoder 'resnet9000'" in msg
    for name in ENCODERS.names():
        assert name in msg


# ----------------------------------------------------------------------------------------------- registry
def test_registry_basics():
    reg: Registry = Registry("widget")

    @reg.register("b")
    class B:
        pass

    @reg.register("a")
    class A:
        pass

    assert reg.names() == ["a", "b"] and "a" in reg and "z" not in reg
    assert reg.get("a") is A and A.registry_name == "a"
    assert isinstance(reg.build("b"), B)
    reg.register("a")(A)  # re-registering the same class is harmless
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(B)
    with pytest.raises(ConfigError, match=r"unknown widget 'c'; choose one of: a, b"):
        reg.get("c")


def test_builtin_registries():
    assert {"image_cnn", "audio_cnn", "text_rnn", "text_transformer", "tabular_mlp"} <= set(ENCODERS.names())
    assert "concat" in FUSIONS.names()
    assert {"binary", "multiclass", "regression"} <= set(TASKS.names())


def test_unknown_components_fail_before_any_file_is_read(tmp_path):
    from polymodal import Predictor
    from polymodal.errors import ConfigError

    missing_table = tmp_path / "does-not-exist.csv"  # never opened: the config is checked first
    with pytest.raises(ConfigError, match=r"unknown fusion 'nope'; choose one of: .*concat"):
        Predictor("y", config={"fusion": {"name": "nope"}}).fit(missing_table)
    with pytest.raises(ConfigError, match="encodes text columns, not image"):
        Predictor("y", config={"encoders": {"image": {"name": "text_rnn"}}}).fit(missing_table)
