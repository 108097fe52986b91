"""Multi-task models: several targets in one network (label=[...], --label a,b), a head and a loss per target,
rows with a missing target masked out of that target's loss; predictions, metrics, the run directory, the server
and the report per target; bad label lists refused with a clear message."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient

from polymodal import Predictor
from polymodal.config import TaskConfig
from polymodal.errors import ConfigError, ExplainError, SchemaError
from polymodal.tasks.multitask import MultiTask

CONFIG = {
    "training": {"max_epochs": 15, "patience": 15, "batch_size": 32, "learning_rate": 5e-3},
    "encoders": {"tabular": {"name": "tabular_mlp", "hidden": 32, "dim": 32}},
    "fusion": {"dim": 32},
}


def table(n: int, seed: int, missing_b: float = 0.0) -> pd.DataFrame:
    """``a`` (binary) follows x1, ``b`` (regression) follows x2; ``b`` is empty on a share ``missing_b`` of rows."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    frame = pd.DataFrame({"x1": x1, "x2": x2, "x3": rng.normal(size=n), "shop": rng.choice(["u", "v", "w"], n)})
    frame["a"] = np.where(x1 > 0, "yes", "no")
    b = 3.0 * x2 + 10.0
    b[rng.random(n) < missing_b] = np.nan
    frame["b"] = b
    return frame


@pytest.fixture(scope="module")
def fitted() -> Predictor:
    """A multi-task model trained where ``b`` is missing on half the rows."""
    return Predictor(["a", "b"], config=CONFIG, verbose=False).fit(table(240, 0, missing_b=0.5))


@pytest.fixture(scope="module")
def test_table() -> pd.DataFrame:
    return table(200, 1)


def test_masked_rows_give_no_gradient_to_their_target():
    task = MultiTask(TaskConfig())
    task.fit_target(pd.DataFrame({"a": ["x", "y", "x", "y"], "b": [1.5, np.nan, 3.25, 0.1]}))
    assert [t.task.problem_type for t in task.targets] == ["binary", "regression"] and task.n_outputs == 3
    target = torch.from_numpy(task.encode_target(pd.DataFrame({"a": ["x", "y", "x", "y"], "b": [1.0, None, 3.0, 9.5]})))
    assert torch.isnan(target[1, 1]) and not torch.isnan(target[3, 1])
    outputs = torch.randn(4, 3, requires_grad=True)
    task.loss(outputs, target).backward()
    assert outputs.grad is not None
    assert (outputs.grad[:, :2] != 0).all()  # every row trains the classification head
    assert (outputs.grad[1, 2] == 0) and (outputs.grad[[0, 2, 3], 2] != 0).all()  # row 1 has no b: no gradient
    # a batch where no row has b still gives a finite loss with a graph
    empty = target.clone()
    empty[:, 1] = float("nan")
    assert torch.isfinite(task.loss(outputs, empty))


def test_missing_target_still_trains_the_other(fitted, test_table):
    m = fitted.evaluate(test_table)
    assert fitted.problem_type == "multitask"
    assert m["a/accuracy"] >= 0.85, m  # learned on every row
    assert m["b/r2"] >= 0.8, m  # learned on the half that has it
    assert m["a/rows"] == m["b/rows"] == m["rows"] == 200
    assert np.isfinite(m["weighted_loss"])


def test_evaluate_counts_each_target_on_its_own_rows(fitted):
    t = table(60, 2, missing_b=0.5)
    m = fitted.evaluate(t)
    assert m["a/rows"] == 60 and m["b/rows"] == int(t["b"].notna().sum())


def test_predict_and_predict_proba_shapes(fitted, test_table):
    pred = fitted.predict(test_table)
    assert isinstance(pred, pd.DataFrame) and list(pred.columns) == ["a", "b"] and len(pred) == 200
    assert set(pred["a"]) <= {"yes", "no"} and pred["b"].dtype == np.float64
    proba = fitted.predict_proba(test_table)
    assert isinstance(proba, dict) and list(proba) == ["a"]  # regression targets have no probabilities
    assert list(proba["a"].columns) == ["no", "yes"] and len(proba["a"]) == 200
    np.testing.assert_allclose(proba["a"].sum(axis=1), 1.0, rtol=1e-6)
    assert (proba["a"].idxmax(axis=1) == pred["a"]).all()


def test_save_load_gives_identical_outputs(fitted, test_table, tmp_path):
    fitted.save(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "polymodal.json").read_text())["label"] == ["a", "b"]
    loaded = Predictor.load(tmp_path / "run", verbose=False)
    assert loaded.label == ["a", "b"] and loaded.problem_type == "multitask"
    pd.testing.assert_frame_equal(loaded.predict(test_table), fitted.predict(test_table))
    pd.testing.assert_frame_equal(loaded.predict_proba(test_table)["a"], fitted.predict_proba(test_table)["a"])
    assert loaded.evaluate(test_table) == fitted.evaluate(test_table)


def test_rows_without_any_target_are_dropped_with_a_warning(caplog):
    frame = table(80, 3)
    frame.loc[[5, 6], ["a", "b"]] = None
    cfg = {**CONFIG, "training": {"max_epochs": 1, "batch_size": 32}}
    with caplog.at_level(logging.WARNING, logger="polymodal"):
        p = Predictor(["a", "b"], config=cfg, verbose=False).fit(frame)
    assert "dropped 2 training rows" in caplog.text and "are all empty" in caplog.text
    assert p.fit_result is not None


def test_target_types_and_weights_from_config():
    frame = table(80, 4)
    frame["level"] = (frame["x1"] > 0).astype(int) + (frame["x1"] > 1).astype(int)  # integers: inferred classes
    cfg = {
        **CONFIG,
        "training": {"max_epochs": 1, "batch_size": 32},
        "task": {"targets": {"level": {"problem_type": "regression", "weight": 2.0}}},
    }
    p = Predictor(["a", "level"], config=cfg, verbose=False).fit(frame)
    task = p.task
    assert isinstance(task, MultiTask)
    assert [(t.name, t.task.problem_type, t.weight) for t in task.targets] == [
        ("a", "binary", 1.0),
        ("level", "regression", 2.0),
    ]
    assert p.config.task.problem_type == "multitask"


@pytest.mark.parametrize(
    "label, kwargs, error, needle",
    [
        (["a", "a"], {}, ConfigError, "more than once: a"),
        ([], {}, ConfigError, "non-empty list"),
        (["a", "b"], {"problem_type": "regression"}, ConfigError, "task.targets"),
        ("a", {"problem_type": "multitask"}, ConfigError, "several label columns"),
    ],
)
def test_bad_label_lists_fail_at_construction(label, kwargs, error, needle):
    with pytest.raises(error, match=needle):
        Predictor(label, **kwargs)


@pytest.mark.parametrize(
    "label, config, error, needle",
    [
        (["a", "nope"], {}, SchemaError, "label column 'nope' is not in the training table"),
        (["a", "b"], {"columns": {"b": "numeric"}}, SchemaError, "both a label and given an input kind"),
        (["a", "b"], {"task": {"targets": {"c": {"weight": 2}}}}, ConfigError, "not targets: c"),
        (["a", "b"], {"task": {"targets": {"b": {"problem_type": "generation"}}}}, ConfigError, "cannot hold"),
        ("a", {"task": {"targets": {"a": {"weight": 2}}}}, ConfigError, "task.targets is for multi-task"),
        (["a", "b"], {"training": {"group_column": "b"}}, SchemaError, "both a label and training.group_column"),
    ],
)
def test_bad_label_lists_fail_before_training(label, config, error, needle):
    with pytest.raises(error, match=needle):
        Predictor(label, config=config, verbose=False).fit(table(40, 5))


def test_explain_and_robustness_say_what_to_do(fitted, test_table):
    with pytest.raises(ExplainError, match="multi-task"):
        fitted.explain(test_table.head(2))
    with pytest.raises(ExplainError, match="multi-task"):
        fitted.importance(test_table, n_bootstrap=0)
    with pytest.raises(ConfigError, match="single-target"):
        fitted.evaluate(test_table, robustness=True)


def test_server_round_trip(fitted, test_table):
    from polymodal.serving.app import create_app
    from polymodal.serving.schemas import ServeConfig

    rows = test_table.head(5)
    body = {
        "rows": [
            {c: (r[c].item() if hasattr(r[c], "item") else r[c]) for c in ("x1", "x2", "x3", "shop")}
            for _, r in rows.iterrows()
        ]
    }
    with TestClient(create_app(fitted, ServeConfig(max_wait_ms=1))) as client:
        meta = client.get("/metadata").json()
        r = client.post("/predict", json=body)
    assert meta["label"] == ["a", "b"] and [t["name"] for t in meta["targets"]] == ["a", "b"]
    assert meta["targets"][0]["classes"] == ["no", "yes"] and meta["targets"][1]["classes"] is None
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    pred, proba = fitted.predict(rows), fitted.predict_proba(rows)["a"]
    assert [g["prediction"]["a"] for g in got] == list(pred["a"])
    np.testing.assert_allclose([g["prediction"]["b"] for g in got], pred["b"], rtol=1e-5)
    np.testing.assert_allclose([g["targets"]["a"]["probabilities"]["yes"] for g in got], proba["yes"], rtol=1e-5)
    assert all(g["targets"]["b"]["probabilities"] is None for g in got)


def test_report_has_a_section_per_target(fitted, test_table):
    from polymodal.reporting.build import build_report
    from polymodal.reporting.context import ReportOptions

    rep = build_report(fitted, test_table, options=ReportOptions(n_examples=0, n_bootstrap=0))
    ids = [s.id for s in rep.sections]
    assert {"summary", "metrics", "a-confusion", "a-roc_pr", "b-residuals"} <= set(ids), ids
    assert "b-confusion" not in ids


def test_cli_label_list(cli, tmp_path):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    table(120, 6, missing_b=0.3).to_csv(train, index=False)
    table(30, 7).to_csv(test, index=False)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({**CONFIG, "training": {"max_epochs": 2, "batch_size": 32}}))
    run = tmp_path / "run"
    r = cli("fit", train, "--label", "a,b", "--out", run, "--config", cfg, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert "a/accuracy" in r.stdout and "b/rmse" in r.stdout
    out = tmp_path / "pred.csv"
    r = cli("predict", run, test, "--out", out, "--proba", "--quiet")
    assert r.exit_code == 0, r.stderr
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["row", "a", "b", "proba_a_no", "proba_a_yes"] and len(pred) == 30
    r = cli("evaluate", run, test, "--json")
    assert r.exit_code == 0, r.stderr
    metrics = json.loads(r.stdout)
    assert {"a/accuracy", "b/r2", "weighted_loss"} <= set(metrics)
    r = cli("fit", train, "--label", "a,zz", "--out", tmp_path / "run2", "--config", cfg, "--quiet")
    assert r.exit_code == 2 and "label column 'zz' is not in the training table" in " ".join(r.stderr.split())


def test_cli_validate_flags_only_rows_without_any_target(cli, tmp_path):
    frame = table(30, 8, missing_b=0.5)
    frame.loc[4, ["a", "b"]] = None
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    report = tmp_path / "issues.csv"
    r = cli("validate", path, "--label", "a,b", "--report", report, "--quiet")
    assert r.exit_code == 2
    issues = pd.read_csv(report)
    assert list(issues["row"]) == [4] and list(issues["problem"]) == ["every target is empty"]
