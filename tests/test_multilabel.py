"""Multi-label classification: tags read from lists, JSON lists or joined strings; one sigmoid per tag; per-tag
thresholds tuned on validation; predictions, probabilities, metrics, save/load, serving, the CLI and the report."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from polymodal import Predictor
from polymodal.config import PolymodalConfig
from polymodal.errors import DataError, SchemaError
from polymodal.fitting import resolve_task
from polymodal.metrics.multilabel import average_precision, multilabel_metrics, tune_thresholds
from polymodal.schema import infer_problem_type, infer_schema
from polymodal.tags import looks_multilabel, parse_tags

CONFIG = {
    "training": {"max_epochs": 25, "batch_size": 32, "learning_rate": 1e-2, "patience": 25},
    "encoders": {
        "text": {"name": "text_rnn", "hidden": 16, "embedding_dim": 16, "dim": 16},
        "tabular": {"name": "tabular_mlp", "hidden": 16, "dim": 16},
    },
    "fusion": {"dim": 32},
}
TAGS = ["big", "fruit", "hot"]


def tag_table(n: int, seed: int = 0, fmt: str = "joined") -> pd.DataFrame:
    """Numeric and text columns; each tag depends on one of them: hot ⇔ x1 > 0, big ⇔ x2 > 0.3, fruit ⇔ the text
    names an apple. ``fmt``: "joined" ('hot|big', '[]' for no tag), "json" or "list" (Python lists)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    words = rng.choice(["apple", "stone", "cloud"], n)
    rows = []
    for a, b, w in zip(x1, x2, words):
        rows.append([t for t, on in (("hot", a > 0), ("big", b > 0.3), ("fruit", w == "apple")) if on])
    labels: list = (
        rows
        if fmt == "list"
        else [json.dumps(r) for r in rows]
        if fmt == "json"
        else ["|".join(r) if r else "[]" for r in rows]
    )
    text = [f"a {w} seen {rng.choice(['today', 'here', 'again'])}" for w in words]
    return pd.DataFrame({"x1": x1, "x2": x2, "text": text, "tags": labels})


@pytest.fixture(scope="module")
def fitted():
    train, test = tag_table(400), tag_table(120, seed=1)
    return Predictor("tags", config=CONFIG, verbose=False).fit(train), test


# ------------------------------------------------------------------------------------------- reading labels
def test_parse_tags():
    assert parse_tags("a|b| a |") == ["a", "b"]
    assert parse_tags('["x", "y", "x"]') == ["x", "y"]
    assert parse_tags(["a", 1, 2.0]) == ["a", "1", "2"]
    assert parse_tags(np.array(["a"])) == ["a"]
    assert parse_tags("[]") == [] and parse_tags([]) == []  # no tags: a valid label
    assert parse_tags(None) is None and parse_tags(float("nan")) is None and parse_tags(" ") is None  # missing
    assert parse_tags("a;b", ";") == ["a", "b"] and parse_tags("solo") == ["solo"]
    for bad in ('["a", ', {"a": 1}, [["a"]], '{"a": 1}'):
        with pytest.raises(ValueError):
            parse_tags(bad)


@pytest.mark.parametrize("fmt", ["joined", "json", "list"])
def test_inference_of_tag_columns(fmt, caplog):
    frame = tag_table(60, fmt=fmt)
    kind, why = infer_problem_type(frame["tags"])
    assert kind == "multilabel", why
    assert ("joined by '|'" in why) if fmt == "joined" else ("lists of tags" in why)
    infer_schema(frame, "tags")  # list labels are no longer refused
    with caplog.at_level(logging.INFO, logger="polymodal"):
        task = resolve_task(PolymodalConfig(), frame["tags"], infer_schema(frame, "tags"))
    assert task.problem_type == "multilabel" and task.classes == TAGS
    assert "label 'tags': multilabel" in caplog.text  # the reason is logged


def test_class_names_containing_the_separator_stay_classes():
    # no tag recurs across values: these are class names, not combinations of tags
    labels = pd.Series(["cat|dog", "red|blue", "up|down"] * 10, name="y")
    assert looks_multilabel(labels) is None and infer_problem_type(labels)[0] == "multiclass"
    # a configured separator is used for inference
    joined = pd.Series(["a;b", "b", "a", "b;c", "c"] * 4, name="y")
    assert infer_problem_type(joined)[0] == "multiclass" and infer_problem_type(joined, ";")[0] == "multilabel"


def test_other_separator_warns_and_multiclass_override(caplog):
    frame = tag_table(40).assign(tags=lambda f: f["tags"].str.replace("|", ";").replace("[]", "none"))
    with caplog.at_level(logging.WARNING, logger="polymodal"):
        task = resolve_task(PolymodalConfig(), frame["tags"], infer_schema(frame, "tags"))
    assert task.problem_type == "multiclass" and "set task.tag_separator to ';'" in caplog.text
    cfg = PolymodalConfig.model_validate({"task": {"problem_type": "multiclass"}})
    joined = tag_table(40)
    task = resolve_task(cfg, joined["tags"], infer_schema(joined, "tags"))  # joined strings learned as classes
    assert task.problem_type == "multiclass" and "hot|big" in [str(c) for c in task.classes]
    with pytest.raises(SchemaError, match=r"holds lists.*problem_type multilabel"):
        lists = tag_table(40, fmt="list")
        resolve_task(cfg, lists["tags"], infer_schema(lists, "tags"))


@pytest.mark.parametrize("name", ["multi-label", "multi_label", "MultiLabel"])
def test_problem_type_spellings(name):
    assert PolymodalConfig.model_validate({"task": {"problem_type": name}}).task.problem_type == "multilabel"


def test_bad_labels_are_a_data_error():
    frame = tag_table(40)
    frame.loc[3, "tags"] = '["hot", '
    frame.loc[7, "tags"] = '{"a": 1}'
    with pytest.raises(DataError, match="2 multi-label labels cannot be read as tags") as e:
        Predictor("tags", problem_type="multilabel", config=CONFIG, verbose=False).fit(frame)
    text = str(e.value)
    assert "row 3" in text and "row 7" in text and "JSON list" in text and "task.tag_separator" in text
    empty = tag_table(20).assign(tags="[]")
    with pytest.raises(DataError, match="no row of the label has a tag"):
        Predictor("tags", problem_type="multilabel", config=CONFIG, verbose=False).fit(empty)


# ------------------------------------------------------------------------------------------------ metrics
def test_metrics_and_threshold_tuning():
    from sklearn.metrics import average_precision_score, f1_score

    rng = np.random.default_rng(0)
    true = rng.random((200, 4)) < 0.3
    true[:, 3] = False  # a tag without positives
    proba = np.clip(true * 0.3 + rng.random((200, 4)) * 0.7, 0, 1)
    proba[:5, 0] = 0.5  # ties
    for k in range(3):
        assert average_precision(true[:, k], proba[:, k]) == pytest.approx(
            average_precision_score(true[:, k], proba[:, k])
        )
    th = tune_thresholds(true, proba)
    assert th[3] == 0.5
    for k in range(3):  # the tuned threshold is at least as good as any other on these rows
        best = f1_score(true[:, k], proba[:, k] >= th[k])
        assert all(best >= f1_score(true[:, k], proba[:, k] >= t) - 1e-12 for t in np.linspace(0, 1, 101))
    m = multilabel_metrics(true, proba, th)
    pred = proba >= th
    assert m["f1_micro"] == pytest.approx(f1_score(true, pred, average="micro"))
    assert m["f1_macro"] == pytest.approx(np.mean([f1_score(true[:, k], pred[:, k]) for k in range(3)]))
    assert m["hamming_loss"] == pytest.approx((true != pred).mean())
    assert m["subset_accuracy"] == pytest.approx((true == pred).all(axis=1).mean())


# ----------------------------------------------------------------------------------------- fit and predict
def test_fit_predict_evaluate(fitted):
    p, test = fitted
    assert p.problem_type == "multilabel" and p.task.classes == TAGS
    pred = p.predict(test)
    assert len(pred) == len(test) and all(isinstance(v, list) and set(v) <= set(TAGS) for v in pred)
    proba = p.predict_proba(test)
    assert list(proba.columns) == TAGS and proba.shape == (len(test), 3)
    assert ((proba >= 0) & (proba <= 1)).all().all()
    decided = [[t for t, th in zip(TAGS, p.task.thresholds) if row[t] >= th] for _, row in proba.iterrows()]
    assert decided == list(pred)
    m = p.evaluate(test)
    assert {"f1_micro", "f1_macro", "mAP", "subset_accuracy", "hamming_loss"} <= set(m)
    # learning works: far above predicting every row's most frequent tag set, or every tag for every row
    true = np.array([[t in json_tags for t in TAGS] for json_tags in test["tags"].map(parse_tags)])
    all_tags = 2 * true.sum() / (true.sum() + true.size)  # F1 micro of predicting every tag
    assert m["f1_micro"] > all_tags + 0.2 and m["f1_micro"] > 0.8, (m, all_tags)
    assert m["mAP"] > 0.85


def test_thresholds_tuned_and_saved(fitted, tmp_path):
    p, test = fitted
    th = p.task.thresholds
    assert len(th) == 3 and th != [0.5, 0.5, 0.5] and all(0 < t < 1 for t in th)
    p.save(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "task.json").read_text())["thresholds"] == th
    q = Predictor.load(tmp_path / "run", verbose=False)
    assert q.task.thresholds == th
    assert list(q.predict(test)) == list(p.predict(test))
    pd.testing.assert_frame_equal(q.predict_proba(test), p.predict_proba(test))
    assert q.evaluate(test) == p.evaluate(test)


def test_list_labels_and_missing_and_unseen_tags(fitted, caplog):
    p, test = fitted
    lists = test.assign(tags=tag_table(120, seed=1, fmt="list")["tags"])
    assert p.evaluate(lists) == p.evaluate(test)  # Python lists score as their joined form does
    odd = test.copy()
    odd.loc[0, "tags"] = "hot|purple"
    odd.loc[1, "tags"] = None  # missing: left out
    with caplog.at_level(logging.WARNING, logger="polymodal"):
        m = p.evaluate(odd)
    assert m["rows"] == len(test) - 1
    assert "1 tag(s) not seen in training are ignored ('purple' in 1 rows)" in caplog.text


def test_balanced_weights_train():
    cfg = {**CONFIG, "task": {"class_weights": "balanced"}, "training": {**CONFIG["training"], "max_epochs": 2}}
    p = Predictor("tags", config=cfg, verbose=False).fit(tag_table(100))
    assert p.task._pos_weight is not None and len(p.predict(tag_table(10, seed=2))) == 10


# -------------------------------------------------------------------------------- serving, CLI, report, explain
def test_server_round_trip(fitted):
    from polymodal.serving.app import create_app

    p, test = fitted
    rows = test.drop(columns="tags").head(5)
    with TestClient(create_app(p)) as client:
        meta = client.get("/metadata").json()
        assert meta["problem_type"] == "multilabel" and meta["classes"] == TAGS
        r = client.post("/predict", json={"rows": rows.to_dict(orient="records")})
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    proba = p.predict_proba(rows)
    assert [g["prediction"] for g in got] == list(p.predict(rows))
    for g, (_, row) in zip(got, proba.iterrows()):
        assert set(g["probabilities"]) == set(TAGS)
        assert all(g["probabilities"][t] == pytest.approx(row[t], abs=1e-6) for t in TAGS)


def test_onnx_backend_gives_the_same(fitted, tmp_path):
    pytest.importorskip("onnxruntime")
    p, test = fitted
    p.save(tmp_path / "run")
    q = Predictor.load(tmp_path / "run", backend="onnx", verbose=False)
    assert list(q.predict(test)) == list(p.predict(test))
    np.testing.assert_allclose(q.predict_proba(test).to_numpy(), p.predict_proba(test).to_numpy(), atol=1e-5)


def test_cli_predict_writes_joined_tags(fitted, cli, tmp_path):
    p, test = fitted
    p.save(tmp_path / "run")
    test.drop(columns="tags").to_csv(tmp_path / "x.csv", index=False)
    r = cli("predict", tmp_path / "run", tmp_path / "x.csv", "--out", tmp_path / "pred.csv", "--proba")
    assert r.exit_code == 0, r.stderr
    out = pd.read_csv(tmp_path / "pred.csv", keep_default_na=False)
    assert list(out.columns) == ["row", "prediction"] + [f"proba_{t}" for t in TAGS]
    assert list(out["prediction"]) == ["|".join(t) for t in p.predict(test)]


def test_report_and_explanations(fitted, tmp_path):
    import polymodal
    from polymodal.explain import explain, modality_importance

    p, test = fitted
    path = polymodal.report(p, test, tmp_path / "report.html", n_examples=0, n_bootstrap=20)
    html = path.read_text(encoding="utf-8")
    assert "Per-tag scores" in html and "mAP" in html and "Confusion matrix" not in html
    (e,) = explain(p, test.head(1))
    assert e.explained == "log-odds of the top-scoring tag" and 0 < e.probability <= 1
    assert sum(a.share for a in e.attributions.values()) == pytest.approx(1.0, abs=1e-6)
    result = modality_importance(p, test, n_bootstrap=0)
    assert result.metric == "tag_accuracy"
