"""Ensembles and the quality preset: greedy selection, the ensemble as one run directory (save/load, ONNX, serving,
explanations), the leaderboard, failing members and the time budget, on tiny text + tabular tables."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_config
from fastapi.testclient import TestClient
from torch import nn

from polymodal import Predictor
from polymodal.config import PolymodalConfig
from polymodal.data.dataset import make_loader
from polymodal.ensemble import is_ensemble
from polymodal.errors import ExplainError, PolymodalError
from polymodal.members import MEMBERS, Member
from polymodal.selection import QualityPlan, fit_ensemble, greedy_selection
from polymodal.tasks import build_task

WORDS = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "it",
    "was",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "this",
    "that",
    "very",
    "just",
    "some",
]


def text_table(n: int, seed: int, strong: str = "review") -> pd.DataFrame:
    """A binary label that the ``strong`` text column tells exactly (a keyword among filler words); a second text
    column and the numeric columns are noise, except ``x1``, which is weakly related to the label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)

    def filler(k: int) -> list[str]:
        return list(rng.choice(WORDS, k))

    strong_text = [" ".join(filler(3) + ["good" if v else "bad"] + filler(3)) for v in y]
    noise_text = [" ".join(filler(6)) for _ in y]
    return pd.DataFrame(
        {
            strong: strong_text,
            "comment": noise_text,
            "x1": y * 0.5 + rng.normal(0, 1, n),
            "x2": rng.normal(0, 1, n),
            "label": np.where(y == 1, "pos", "neg"),
        }
    )


class TinyLogistic(Member):
    """A linear model on the tabular numerics (value and missing flag of each), trained by Adam (the test stand-in
    for the classical members)."""

    name = "tiny_logistic"

    def __init__(self, key: str, n_in: int, n_out: int):
        super().__init__()
        self.key = key
        self.linear = nn.Linear(n_in, n_out)

    @classmethod
    def applies(cls, modalities, task) -> bool:
        return any(m.kind == "tabular" for m in modalities)

    @classmethod
    def fit(cls, train, val, modalities, processors, task, *, seed=0, time_limit=None) -> TinyLogistic:
        tab = next(m.name for m in modalities if m.kind == "tabular")
        procs = {tab: processors[tab]}
        batch = next(iter(make_loader(train, procs, len(train), False, task.target_dtype)))
        x = batch.inputs[processors[tab].key("numeric")]
        member = cls(processors[tab].key("numeric"), x.shape[1], task.n_outputs)
        opt = torch.optim.Adam(member.parameters(), lr=0.05)
        for _ in range(100):
            opt.zero_grad()
            task.loss(member.linear(x), batch.target).backward()
            opt.step()
        return member

    def spec(self) -> dict[str, Any]:
        return {"key": self.key, "n_in": self.linear.in_features, "n_out": self.linear.out_features}

    @classmethod
    def from_spec(cls, spec, modalities, processors, task) -> TinyLogistic:
        return cls(spec["key"], spec["n_in"], spec["n_out"])

    def forward(self, inputs, masks):
        return self.linear(inputs[self.key])


class Broken(TinyLogistic):
    name = "broken"

    @classmethod
    def fit(cls, *args, **kwargs):
        raise RuntimeError("this member always fails")


@pytest.fixture(scope="module", autouse=True)
def tiny_members():
    """Register the stand-in members for this module only (the registry has no unregister; restore it)."""
    saved = dict(MEMBERS._items)
    MEMBERS.register("tiny_logistic")(TinyLogistic)
    yield
    MEMBERS._items.clear()
    MEMBERS._items.update(saved)


def _cfg(**training) -> dict:
    cfg = tiny_config(max_epochs=3, **training)
    cfg["processing"] = {"text_max_tokens": 12}
    return cfg


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ens")
    train, test = folder / "train.csv", folder / "test.csv"
    text_table(240, 0).to_csv(train, index=False)
    text_table(120, 1).to_csv(test, index=False)
    return train, test


@pytest.fixture(scope="module")
def quality(tables) -> Predictor:
    return Predictor("label", config=_cfg(), preset="quality", verbose=False).fit(tables[0])


@pytest.fixture(scope="module")
def saved(quality, tmp_path_factory) -> Path:
    return quality.save(tmp_path_factory.mktemp("ens_run") / "run")


# ------------------------------------------------------------------------------------------------ selection
@pytest.mark.parametrize("problem", ["multiclass", "regression"])
def test_selection_is_never_below_the_best_member_and_weights_sum_to_one(problem):
    rng = np.random.default_rng(0)
    n = 200
    task = build_task(problem, PolymodalConfig().task)
    if problem == "multiclass":
        y = rng.integers(0, 3, n)
        labels = pd.Series(y.astype(str))
        task.fit_target(labels)
        # members that know the label with different noise: each alone is mediocre, together better
        outputs = {f"m{i}": np.eye(3)[y] * (1 + i) + rng.normal(0, 2.0, (n, 3)) for i in range(5)}
    else:
        y = rng.normal(0, 1, n)
        labels = pd.Series(y)
        task.fit_target(labels)
        outputs = {f"m{i}": (y + rng.normal(0, 0.5 + 0.2 * i, n))[:, None] for i in range(5)}
    monitor, mode = task.monitor
    singles = [task.metrics(labels, o.astype(np.float32))[monitor] for o in outputs.values()]
    best = max(singles) if mode == "max" else min(singles)
    sel = greedy_selection(outputs, labels, task, rounds=25)
    assert abs(sum(sel.weights.values()) - 1.0) < 1e-9 and all(w >= 0 for w in sel.weights.values())
    assert (sel.metrics[monitor] >= best) if mode == "max" else (sel.metrics[monitor] <= best)
    assert sum(w > 0 for w in sel.weights.values()) >= 2, "independent noisy members should be mixed"
    again = greedy_selection(outputs, labels, task, rounds=25)
    assert again.weights == sel.weights and again.trace == sel.trace


def test_selection_starts_from_the_best_member_and_stops_when_nothing_improves():
    task = build_task("binary", PolymodalConfig().task)
    labels = pd.Series(["a", "b"] * 20)
    task.fit_target(labels)
    y = task.encode_target(labels)
    perfect = np.eye(2)[y] * 5.0
    outputs = {"bad": -perfect, "perfect": perfect.astype(np.float32)}
    sel = greedy_selection(outputs, labels, task, rounds=10)
    assert sel.trace[0][0] == "perfect" and sel.weights["perfect"] > 0.5 and sel.metrics["accuracy"] == 1.0


# ------------------------------------------------------------------------------------------ the quality preset
def test_quality_preset_trains_every_member_and_keeps_a_leaderboard(quality, tables, caplog):
    ens = quality.config.ensemble
    assert ens is not None and is_ensemble(quality.model)
    names = [m.name for m in ens.members]
    # the fused network, the classical members, one network per modality, another fusion
    classical = {"tiny_logistic", "gbm", "gbm_tabular", "linear", "linear_text"}
    assert {"fused_concat", *classical, "only_review", "only_comment", "only_tabular", "fused_late"} == set(names)
    assert abs(sum(ens.weights) - 1.0) < 1e-9
    summary = quality.fit_summary()
    assert summary["fusion"] == "ensemble" and {m["member"] for m in summary["members"]} == {*names, "ensemble"}
    board = quality.leaderboard(tables[1])
    assert set(board["model"]) == {*names, "ensemble"}
    for col in ("score_test", "score_val", "weight", "test_accuracy", "kind", "status"):
        assert col in board.columns
    assert board["score_test"].notna().all() and board["score_val"].notna().all()
    rows = board.set_index("model")
    # the weights of the leaderboard are the ensemble's
    assert dict(zip(names, ens.weights)) == {n: rows.loc[n, "weight"] for n in names}
    # on validation the ensemble is never below its best member
    members = rows.drop(index="ensemble")
    assert rows.loc["ensemble", "score_val"] >= members["score_val"].max()
    # the test score of the ensemble row is evaluate()'s
    assert rows.loc["ensemble", "score_test"] == quality.evaluate(tables[1])["accuracy"]


def test_ensemble_saves_and_loads_with_identical_outputs(quality, saved, tables):
    assert (saved / "leaderboard.csv").is_file()
    assert "ensemble" in (saved / "config.yaml").read_text()
    loaded = Predictor.load(saved, verbose=False)
    pd.testing.assert_frame_equal(loaded.predict_proba(tables[1]), quality.predict_proba(tables[1]))
    pd.testing.assert_frame_equal(loaded.leaderboard(tables[1]), quality.leaderboard(tables[1]))
    assert loaded.fit_summary()["members"] == quality.fit_summary()["members"]


def test_ensemble_exports_to_onnx_with_parity_and_serves(saved, tables, tmp_path):
    from polymodal.export.export import ExportConfig, export_run
    from polymodal.serving.app import create_app
    from polymodal.serving.schemas import ServeConfig

    result = export_run(saved, tmp_path / "onnx", ExportConfig(parity_rows=40), data=tables[1])
    parity = result.parity["model.onnx"]
    assert parity.rows == 40 and parity.max_abs_diff < 1e-4 and parity.agreement == 1.0
    eager = Predictor.load(saved, verbose=False)
    onnx = Predictor.load(tmp_path / "onnx", verbose=False, backend="onnx")
    np.testing.assert_allclose(
        onnx.predict_proba(tables[1]).to_numpy(), eager.predict_proba(tables[1]).to_numpy(), atol=1e-4
    )
    frame = pd.read_csv(tables[1]).head(5)
    body = json.loads(frame.drop(columns="label").to_json(orient="records"))
    with TestClient(create_app(eager, ServeConfig(max_wait_ms=2))) as client:
        r = client.post("/predict", json={"rows": body})
    assert r.status_code == 200, r.text
    assert [x["prediction"] for x in r.json()["predictions"]] == eager.predict(frame).tolist()


def test_occlusion_explains_an_ensemble_and_integrated_gradients_says_why_not(quality, tables):
    rows = pd.read_csv(tables[1]).head(2)
    found = quality.explain(rows, method="occlusion")
    assert len(found) == 2 and set(found[0].attributions) == {"review", "comment", "x1", "x2"}
    assert found[0].attributions["review"].share > found[0].attributions["comment"].share
    with pytest.raises(ExplainError, match="use occlusion"):
        quality.explain(rows, method="integrated_gradients")


def test_an_ensemble_prunes_but_fine_tuning_it_is_refused(quality, saved, tables, tmp_path):
    from polymodal.export.prune import prune_run
    from polymodal.fitting import fine_tune

    with pytest.raises(PolymodalError, match="ensemble"):
        fine_tune(quality.pipeline, tables[0], epochs=1)
    result = prune_run(saved, tmp_path / "pruned", amount=0.3)
    assert result.sparsity > 0.2
    pruned = Predictor.load(tmp_path / "pruned", verbose=False)
    assert is_ensemble(pruned.model) and len(pruned.predict(tables[1])) == 120


# --------------------------------------------------------------------------------- failures and the time limit
def test_a_failing_member_is_skipped_with_a_warning(tables, caplog):
    MEMBERS.register("broken")(Broken)
    plan = QualityPlan(fusions=(), single_modality=False)
    with caplog.at_level(logging.WARNING, logger="polymodal"):
        out = fit_ensemble(tables[0], "label", PolymodalConfig.from_any(_cfg()), plan, verbose=False)
    board = out.pipeline.leaderboard
    assert "member broken failed" in caplog.text and "always fails" in caplog.text
    status = dict(zip(board["member"], board["status"]))
    assert status["broken"].startswith("failed: RuntimeError") and status["tiny_logistic"] == "ok"
    assert "broken" not in [m.name for m in out.pipeline.config.ensemble.members]


def test_a_tiny_time_limit_trains_the_first_member_and_skips_the_rest(tables, caplog):
    cfg = PolymodalConfig.from_any(_cfg(time_limit=0.5))
    with caplog.at_level(logging.WARNING, logger="polymodal"):
        out = fit_ensemble(tables[0], "label", cfg, verbose=False)
    board = out.pipeline.leaderboard.set_index("member")
    assert board.loc["fused_concat", "status"] == "ok"
    skipped = board.index[board["status"] == "skipped: time limit"]
    assert len(skipped) >= 4 and "skipped: the time limit" in caplog.text
    # the quality preset keeps its one trained member as an ensemble (its leaderboard scores every member)
    assert [m.name for m in out.pipeline.config.ensemble.members] == ["fused_concat"]
    assert out.pipeline.fit_result.time_limited


def test_quality_preset_refuses_generation(tables):
    from polymodal.errors import ConfigError

    with pytest.raises(ConfigError, match="quality"):
        Predictor("label", config=_cfg(), preset="quality", problem_type="generation", verbose=False).fit(tables[0])


# ------------------------------------------------------------------ acceptance: one column alone is near-perfect
def test_quality_preset_is_not_below_the_strong_columns_own_model(quality, tables):
    """Issue 17, acceptance 5: the review column alone gives >= 0.98; the others add noise."""
    board = quality.leaderboard(tables[1]).set_index("model")
    alone = board.loc["only_review", "score_test"]
    assert alone >= 0.98, f"the generated column should be near-perfect alone, got {alone}"
    assert board.loc["ensemble", "score_test"] >= alone


# ------------------------------------------------------------------------- the other consumers of a fitted model
def test_report_lists_the_members_and_robustness_runs(quality, saved, tables, tmp_path):
    from polymodal.reporting import report

    html = report(saved, tables[1], tmp_path / "r.html", n_examples=1, n_bootstrap=0).read_text("utf-8")
    assert "Ensemble members" in html and "only_review" in html and "fused_late" in html
    # what the classical members learn from: the review column decides the label, so gbm leans on it most
    assert "What the classical members learn from" in html
    gbm = Predictor.load(saved, verbose=False).model.members["gbm"].feature_importance()
    assert max(gbm, key=gbm.get) == "review" and abs(sum(gbm.values()) - 1) < 1e-6
    html = report(
        quality, tables[1], tmp_path / "ig.html", n_examples=1, n_bootstrap=0, explain_method="integrated_gradients"
    ).read_text("utf-8")
    assert "explained by occlusion" in html
    metrics = quality.evaluate(tables[1], robustness=True)
    assert metrics["robustness"].rows == 120


def test_cli_fit_quality_prints_the_members_and_leaderboard_scores_a_run(cli, saved, tables, tmp_path):
    r = cli("leaderboard", saved, tables[1], "--out", tmp_path / "board.csv", "--quiet")
    assert r.exit_code == 0, r.output
    assert "only_review" in r.stdout and "ensemble" in r.stdout
    board = pd.read_csv(tmp_path / "board.csv")
    members = Predictor.load(saved, verbose=False).config.ensemble.members
    assert {"model", "weight", "score_val", "score_test", "status"} <= set(board.columns)
    assert len(board) == len(members) + 1  # and the ensemble
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(_cfg()))
    r = cli(
        "fit",
        tables[0],
        "--label",
        "label",
        "--out",
        tmp_path / "run",
        "--config",
        cfg,
        "--preset",
        "quality",
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    assert "members (validation" in r.stdout and "only_comment" in r.stdout and "fused_late" in r.stdout


def test_an_ensemble_predicts_and_evaluates_in_chunks_as_a_whole(quality, tables):
    whole = quality.predict_proba(tables[1])
    assert isinstance(whole, pd.DataFrame)
    pd.testing.assert_frame_equal(quality.predict_proba(tables[1], chunk_rows=17), whole)
    assert quality.evaluate(tables[1], chunk_rows=17) == pytest.approx(quality.evaluate(tables[1]))
