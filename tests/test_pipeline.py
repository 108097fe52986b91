"""The fitted pipeline, the fitting steps every trainer shares, the split rule, and the estimator parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config

import polymodal
import polymodal.fitting as fitting
from polymodal import Predictor
from polymodal.errors import ConfigError, DataError, NotFittedError, SchemaError
from polymodal.export.prune import prune_run
from polymodal.fitting import split_rows
from polymodal.pipeline import FittedPipeline, as_pipeline

FIXTURES = Path(__file__).resolve().parent / "fixtures"


# --------------------------------------------------------------------------------------- run directory format
def test_a_format_1_run_directory_written_before_core_v2_loads_and_predicts_the_same():
    """tests/fixtures/rundir_format1 was saved by polymodal before the pipeline refactor (format 1); loading it must
    give the probabilities recorded then."""
    rows = pd.read_csv(FIXTURES / "rundir_format1_rows.csv")
    expected = pd.read_csv(FIXTURES / "rundir_format1_proba.csv", index_col=0)
    p = Predictor.load(FIXTURES / "rundir_format1", verbose=False)
    got = p.predict_proba(rows)
    assert list(got.columns) == ["no", "yes"]
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=2e-6)
    pipeline = FittedPipeline.load(FIXTURES / "rundir_format1", verbose=False)
    np.testing.assert_allclose(pipeline.predict_proba(rows).to_numpy(), expected.to_numpy(), atol=2e-6)


def test_pipeline_save_load_round_trip(fitted, tmp_path, test_csv):
    pipeline = fitted.pipeline
    again = FittedPipeline.load(pipeline.save(tmp_path / "run"), verbose=False)
    pd.testing.assert_frame_equal(pipeline.predict_proba(test_csv), again.predict_proba(test_csv))
    assert again.fit_result is not None and again.fit_result.best_epoch == pipeline.fit_result.best_epoch


def test_prepare_outputs_and_score_agree_with_the_predictor(fitted, test_csv):
    pipeline = fitted.pipeline
    decoded = pipeline.prepare(test_csv, labelled="evaluation")
    assert len(decoded.prepared) == len(decoded.usable) == len(decoded.labels(pipeline.label))
    outputs = pipeline.outputs(decoded)
    assert outputs.shape == (len(decoded.prepared), 2)
    metrics, _, _ = pipeline.score(test_csv)
    assert metrics == fitted.evaluate(test_csv)


def test_as_pipeline_accepts_a_predictor_a_pipeline_or_a_run_directory(fitted, run_dir):
    assert as_pipeline(fitted) is fitted.pipeline
    assert as_pipeline(fitted.pipeline) is fitted.pipeline
    assert isinstance(as_pipeline(run_dir, verbose=False), FittedPipeline)
    with pytest.raises(NotFittedError):
        as_pipeline(Predictor("label", verbose=False))
    with pytest.raises(TypeError):
        as_pipeline(42)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- estimator params
def test_params_are_apart_from_learned_state():
    p = Predictor("y", problem_type="binary", seed=3, ignore=["id"], verbose=False)
    assert p.problem_type == "binary"  # before fit: the parameter
    assert p.schema is None and p.model is None and p.pipeline is None
    params = p.get_params()
    assert params["label"] == "y" and params["seed"] == 3 and params["ignore"] == ["id"]
    params["ignore"].append("other")  # a deep copy: changing it changes nothing
    assert p.get_params()["ignore"] == ["id"]
    q = p.clone()
    assert q is not p and q.get_params() == p.get_params()
    p.set_params(seed=4, problem_type="multiclass")
    assert p.config.training.seed == 4 and p.problem_type == "multiclass" and q.config.training.seed == 3
    with pytest.raises(ConfigError, match="unknown Predictor parameter"):
        p.set_params(fusion_method="late")
    with pytest.raises(ConfigError, match="preset"):
        p.set_params(preset="turbo")


def test_clone_of_a_fitted_predictor_is_unfitted_and_refits_identically(fitted, train_csv, test_csv):
    c = fitted.clone()
    assert c.pipeline is None
    with pytest.raises(NotFittedError):
        c.predict(test_csv)
    c.fit(train_csv)  # the fixture's data: the same parameters and data give the same model
    pd.testing.assert_frame_equal(c.predict_proba(test_csv), fitted.predict_proba(test_csv))


def test_a_misspelt_component_fails_at_construction():
    with pytest.raises(ConfigError, match="fusion"):
        Predictor("y", config={"fusion": {"name": "concatt"}}, verbose=False)


# ------------------------------------------------------------------------------------------------- split
def test_split_rows_is_stratified_and_reproducible():
    strata = np.array([0] * 80 + [1] * 20)
    kept, held = split_rows(100, 0.2, 0, strata)
    assert len(held) == 20 and (strata[held] == 1).sum() == 4  # the class shares are kept
    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(100))
    again = split_rows(100, 0.2, 0, strata)
    assert np.array_equal(kept, again[0]) and np.array_equal(held, again[1])
    assert not np.array_equal(held, split_rows(100, 0.2, 1, strata)[1])


def test_split_rows_keeps_each_group_on_one_side():
    groups = np.repeat([f"g{i}" for i in range(10)], 7)
    kept, held = split_rows(len(groups), 0.3, 0, groups=groups)
    assert set(groups[kept]).isdisjoint(set(groups[held]))
    assert len(set(groups[held])) == 3
    with pytest.raises(DataError, match="single value"):
        split_rows(10, 0.3, 0, groups=np.zeros(10))
    with pytest.raises(DataError, match="at least 4"):
        split_rows(3, 0.3, 0)


def test_group_column_in_fit_is_no_input_and_no_group_straddles(tiny_data, monkeypatch):
    frame = pd.read_csv(tiny_data)
    frame["patient"] = [f"p{i // 4}" for i in range(len(frame))]
    seen = {}
    real = fitting.validation_split

    def spy(table, label, task, training):
        train, val = real(table, label, task, training)
        seen["train"], seen["val"] = set(train.frame["patient"]), set(val.frame["patient"])
        return train, val

    monkeypatch.setattr(fitting, "validation_split", spy)
    cfg = tiny_config(max_epochs=1)
    cfg["training"]["group_column"] = "patient"
    p = Predictor("label", config=cfg, data_root=tiny_data.parent, verbose=False).fit(frame)
    assert seen["train"] and seen["val"] and seen["train"].isdisjoint(seen["val"])
    assert "patient" not in p.schema.input_columns()
    with pytest.raises(SchemaError, match="group column 'nope'"):
        Predictor("label", config={**cfg, "training": {**cfg["training"], "group_column": "nope"}}, verbose=False).fit(
            frame
        )


# ------------------------------------------------------------------------------------ one training set-up
def test_fit_compare_and_prune_fine_tune_share_the_fitting_steps(fitted, run_dir, tiny_data, tmp_path, monkeypatch):
    """Every trainer goes through fitting.prepare_labelled and fitting.train: there is no second set-up."""
    calls: list[str] = []
    real_train, real_prepare = fitting.train, fitting.prepare_labelled

    def train(*a, **k):
        calls.append("train")
        return real_train(*a, **k)

    def prepare_labelled(*a, **k):
        calls.append("prepare")
        return real_prepare(*a, **k)

    monkeypatch.setattr(fitting, "train", train)
    monkeypatch.setattr(fitting, "prepare_labelled", prepare_labelled)

    Predictor("label", config=tiny_config(max_epochs=1), verbose=False).fit(tiny_data)
    assert calls == ["prepare", "train"]
    calls.clear()
    polymodal.compare(
        tiny_data, "label", fusions=["concat"], single_modalities=False, config=tiny_config(max_epochs=1), verbose=False
    )
    assert calls == ["prepare", "train"]
    calls.clear()
    result = prune_run(run_dir, tmp_path / "pruned", amount=0.3, fine_tune_data=tiny_data, epochs=1)
    assert calls == ["prepare", "train"] and result.fine_tune_epochs == 1


def test_fit_leaves_the_callers_random_state_and_environment_alone(tiny_data):
    import os
    import random

    import torch

    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    random.seed(11), np.random.seed(11), torch.manual_seed(11)
    expected = draws()
    random.seed(11), np.random.seed(11), torch.manual_seed(11)
    env = {k: os.environ.get(k) for k in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    Predictor("label", config=tiny_config(max_epochs=1), seed=5, verbose=False).fit(tiny_data)
    assert draws() == expected
    assert {k: os.environ.get(k) for k in env} == env


def test_fitting_steps_train_the_same_model_as_the_fit_before_core_v2(tmp_path):
    """The fitting steps are a refactor of the old ``Predictor.fit``, not a new recipe: on generated data with a
    fixed seed (one torch thread, as the suite runs) they reproduce the probabilities that the old code's fit gave,
    recorded in tests/fixtures/fit_before_core_v2_proba.csv. A deliberate change of the training recipe updates that
    file (rerun this test's fit at the old commit to see the difference)."""
    from polymodal.datasets.synthetic import generate

    frame = generate(tmp_path, 120, seed=0, missing_rate=0.05)
    frame.to_csv(tmp_path / "data.csv", index=False)
    cfg = tiny_config(max_epochs=3)
    cfg["task"] = {"calibration": "none"}  # the network's own probabilities: calibration (issue 17) came later
    # one network, as the old fit trained (the default fit now adds classical members on small tables)
    p = Predictor("label", config=cfg, seed=1, verbose=False, preset="fast").fit(tmp_path / "data.csv")
    expected = pd.read_csv(FIXTURES / "fit_before_core_v2_proba.csv", index_col=0)
    got = p.predict_proba(tmp_path / "data.csv")
    assert list(got.columns) == list(expected.columns)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=1e-5)
