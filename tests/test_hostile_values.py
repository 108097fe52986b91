"""Numbers and options that used to be accepted but wrong (issue 19): huge finite numbers, NaN/inf outputs and
labels, options validated only when used, and YAML alias bombs. Each test reproduces a reported case."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from polymodal import Predictor
from polymodal.config import PolymodalConfig, read_config_file
from polymodal.data.processors import NUMERIC_CLIP, LoadContext, TabularProcessor
from polymodal.errors import ConfigError, DataError

TINY_TABULAR = {
    "training": {"max_epochs": 1, "batch_size": 16},
    "encoders": {"tabular": {"name": "tabular_mlp", "hidden": 16, "dim": 16}},
    "fusion": {"dim": 16},
}


def _numeric_frame(n: int = 48, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(["x", "y"], n)})
    frame["label"] = np.where(frame.a + frame.b > 0, "pos", "neg")
    return frame


@pytest.fixture(scope="module")
def numeric_model() -> Predictor:
    """A tiny classifier over two numeric columns and a category (trains in well under a second)."""
    return Predictor("label", config=TINY_TABULAR, verbose=False, preset="fast").fit(_numeric_frame())


HUGE = pd.DataFrame({"a": [0.1, 1e30, -1e39, 1e300], "b": [0.2, 0.0, 1e308, -1e308], "c": ["x", "x", "y", "x"]})


# ------------------------------------------------------------------------------ bug 3: large finite numbers
def test_tabular_processor_standardises_in_float64_and_clips(tmp_path):
    proc = TabularProcessor("tabular", ["a"], PolymodalConfig().processing)
    # training values near float64's limit: their squares overflow, the statistics must not
    proc.fit(pd.DataFrame({"a": [1e300, -1e300, 5e299, 0.0]}), LoadContext(tmp_path, PolymodalConfig().limits))
    assert all(math.isfinite(v) for v in proc.stats["a"].values())
    proc.fit(pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]}), LoadContext(tmp_path, PolymodalConfig().limits))
    ctx = LoadContext(tmp_path, PolymodalConfig().limits)
    for value, expected in [(1e30, NUMERIC_CLIP), (-1e39, -NUMERIC_CLIP), (10**400, NUMERIC_CLIP), (1.5, 0.0)]:
        num, _ = proc.load({"a": value}, ctx)
        assert num.dtype == np.float32 and np.isfinite(num).all()
        assert num[0, 0] == pytest.approx(expected, abs=1e-6) and num[0, 1] == 0.0  # value present, not missing


def test_huge_numbers_give_finite_probabilities_and_predictions(numeric_model):
    proba = numeric_model.predict_proba(HUGE)
    assert isinstance(proba, pd.DataFrame) and np.isfinite(proba.to_numpy()).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert len(numeric_model.predict(HUGE)) == len(HUGE)


def _nan_weights(model: Predictor) -> Predictor:
    """A copy whose network outputs NaN for every row (as corrupt weights would make it)."""
    broken = copy.deepcopy(model)
    head_bias = [p for n, p in broken.pipeline.model.named_parameters() if n.endswith("bias")][-1]
    with torch.no_grad():
        head_bias.fill_(float("nan"))
    return broken


def test_nonfinite_outputs_never_become_a_prediction(numeric_model, caplog):
    broken = _nan_weights(numeric_model)
    with pytest.raises(DataError, match="4 of 4 rows get no prediction") as e:
        broken.predict(HUGE)
    assert "row 3, column 'label': the model's output is NaN or inf" in str(e.value)
    with pytest.raises(DataError, match="no prediction"):
        broken.predict_proba(HUGE)
    assert len(broken.predict(HUGE, on_error="skip")) == 0
    assert "skipped 4 of 4 rows whose model output is NaN or inf" in caplog.text


def test_cli_predict_reports_nonfinite_outputs(numeric_model, cli, tmp_path):
    # a run directory whose weights hold NaN is refused when it is loaded (the first line of defence: see
    # tests/test_rundir_safety.py); the outputs check above is the last one, for weights that are finite
    run = _nan_weights(numeric_model).save(tmp_path / "run")
    HUGE.to_csv(tmp_path / "huge.csv", index=False)
    for extra in ([], ["--proba"]):
        result = cli("predict", run, tmp_path / "huge.csv", *extra)
        assert result.exit_code == 2 and "NaN or infinite" in result.stderr


def test_server_refuses_a_row_with_nonfinite_outputs(numeric_model):
    from fastapi.testclient import TestClient

    from polymodal.serving.app import create_app
    from polymodal.serving.schemas import ServeConfig

    rows = [{"a": 0.1, "b": 0.2, "c": "x"}, {"a": 1e30, "b": 1e308, "c": "y"}]
    with TestClient(create_app(numeric_model, ServeConfig(max_wait_ms=1))) as client:
        ok = client.post("/predict", json={"rows": rows})
        assert ok.status_code == 200
        assert all(p["probabilities"] is not None for p in ok.json()["predictions"])
    with TestClient(create_app(_nan_weights(numeric_model), ServeConfig(max_wait_ms=1))) as client:
        bad = client.post("/predict", json={"rows": rows})
    assert bad.status_code == 422 and bad.json()["issues"][1].startswith("row 1: the model's output is NaN or inf")


# ------------------------------------------------------------------------------ bug 7: inf/NaN regression labels
def test_infinite_regression_label_is_a_data_error_naming_the_rows(caplog):
    frame = _numeric_frame().drop(columns="label")
    frame["y"] = frame.a * 2 + frame.b
    bad = frame.copy()
    bad.loc[3, "y"], bad.loc[7, "y"], bad.loc[9, "y"] = np.inf, np.nan, -np.inf
    with pytest.raises(DataError, match="must be finite; 2 rows") as e:
        Predictor("y", config=TINY_TABULAR, verbose=False, preset="fast").fit(bad)
    assert "row 3, column 'y': inf is not a finite number" in str(e.value)
    assert "row 9, column 'y': -inf" in str(e.value)
    assert "dropped 1 training rows whose label 'y' is empty (rows 7)" in caplog.text  # NaN = missing
    model = Predictor("y", config=TINY_TABULAR, verbose=False, preset="fast").fit(frame)
    with pytest.raises(DataError, match="row 3, column 'y'"):
        model.evaluate(bad)


# ------------------------------------------------------------------------------ options validated only when used
@pytest.mark.parametrize(
    "training, path",
    [
        ({"max_epochs": True}, "training.max_epochs: expected an integer or null"),
        ({"learning_rate": False}, "training.learning_rate: expected a number"),
        ({"gradient_clip": -1}, "training.gradient_clip: Input should be greater than 0"),
        ({"accelerator": "quantum"}, "training.accelerator: expected one of 'auto', 'cpu'"),
        ({"precision": "17-weird"}, "training.precision: expected one of"),
        ({"seed": 1e20}, "training.seed: must be an integer from 0 to 4294967295"),
        ({"seed": 2**32}, "training.seed"),
        ({"seed": -1}, "training.seed"),
        ({"time_limit": -5}, "training.time_limit"),
    ],
)
def test_bad_training_values_fail_the_config_check(cli, tmp_path, training, path):
    with pytest.raises(ConfigError, match=path.replace("(", r"\(")):
        PolymodalConfig.from_any({"training": training})
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"training": training}), encoding="utf-8")
    result = cli("fit", tmp_path / "absent.csv", "--label", "y", "--out", tmp_path / "run", "--config", config)
    assert result.exit_code == 2 and path.split(":")[0] in result.stderr
    assert "absent.csv" not in result.stderr  # refused before the table is looked at


def test_accepted_values_still_pass():
    cfg = PolymodalConfig.from_any(
        {"training": {"precision": 16, "accelerator": "gpu", "gradient_clip": None, "seed": 2**32 - 1}}
    )
    assert cfg.training.precision == "16" and cfg.training.seed == 2**32 - 1
    assert PolymodalConfig.from_any({"limits": {"confine_to_root": True}}).limits.confine_to_root


def test_accelerator_and_precision_names_are_lightnings():
    from typing import get_args

    from lightning.fabric.connector import _PRECISION_INPUT_STR
    from lightning.pytorch.accelerators import AcceleratorRegistry

    from polymodal.config import Accelerator, Precision

    assert set(get_args(Accelerator)) == {"auto", "gpu", *AcceleratorRegistry.available_accelerators()}
    assert set(get_args(_PRECISION_INPUT_STR)) | {"16", "32", "64", "bf16"} == set(get_args(Precision))


@pytest.mark.parametrize(
    "args, option",
    [
        (["--time-limit", "-5"], "--time-limit"),
        (["--problem-type", "bogus"], "task.problem_type"),
        (["--seed", str(2**32)], "--seed"),
        (["--on-error", "bogus"], "--on-error"),
    ],
)
def test_bad_fit_options_exit_2_before_the_table_is_read(cli, tmp_path, args, option):
    result = cli("fit", tmp_path / "absent.csv", "--label", "y", "--out", tmp_path / "run", *args)
    assert result.exit_code == 2 and option in result.output + result.stderr
    assert "absent.csv" not in result.stderr


# ------------------------------------------------------------------------------ YAML alias bomb
def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_alias_bomb_is_refused(tmp_path):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]  # 9**10 values, 0.5 KB
    with pytest.raises(ConfigError, match="expands to more than 100,000 values through its YAML aliases"):
        read_config_file(_write(tmp_path, "\n".join([*lines, "ignore: *a9"])))
    with pytest.raises(ConfigError, match="refers to itself"):
        read_config_file(_write(tmp_path, "ignore: &x [a, *x]\n"))
    big = _write(tmp_path, "# " + "x" * 1_000_001 + "\n")
    with pytest.raises(ConfigError, match="at most 1,000,000 are read"):
        read_config_file(big)


def test_modest_yaml_anchors_still_work(tmp_path):
    text = "size: &s {hidden: 16, dim: 16}\nencoders:\n  tabular: {name: tabular_mlp, <<: *s}\n"
    assert read_config_file(_write(tmp_path, text))["encoders"]["tabular"] == {
        "name": "tabular_mlp",
        "hidden": 16,
        "dim": 16,
    }


def test_a_run_directorys_config_is_read_as_boundedly_as_a_users(numeric_model, tmp_path):
    # an alias bomb in a run's config.yaml, with a manifest that matches it (written by someone who knows the
    # format): refused as a damaged run, not expanded
    from polymodal.errors import RunDirError
    from polymodal.rundir import MANIFEST, write_manifest

    run = numeric_model.save(tmp_path / "run")
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    (run / "config.yaml").write_text("\n".join([*lines, "ignore: *a9"]), encoding="utf-8")
    (run / MANIFEST).unlink()
    write_manifest(run)
    with pytest.raises(RunDirError, match="config.yaml"):
        Predictor.load(run, verbose=False)
