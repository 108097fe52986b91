"""problem_type reconstruction: an autoencoder without a label whose reconstruction errors are anomaly scores.

The tables are generated here: a 16-pixel image with a bright square in one of four quadrants, and four numbers
that say the same quadrant (one-hot, with noise). A consistent row's image and numbers agree; an inconsistent row's
numbers name another quadrant, which a fused bottleneck cannot reconstruct as well, and whose image and numbers
embeddings the agreement term (on by default) has not learned to match.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from polymodal import Predictor
from polymodal.config import PolymodalConfig
from polymodal.errors import ConfigError, DataError
from polymodal.tasks.reconstruction import ANOMALY_COLUMN, CROSSMODAL_COLUMN, SCORE_COLUMN, anomaly_flags

K = 4
SIZE = 16


def _image(rng: np.random.Generator, k: int) -> Image.Image:
    arr = rng.normal(30, 8, (SIZE, SIZE))
    half = SIZE // 2
    r, c = divmod(k, 2)
    arr[r * half : (r + 1) * half, c * half : (c + 1) * half] += 190
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")


def paired_table(folder: Path, n: int, seed: int, anomalies: float = 0.0) -> pd.DataFrame:
    """``n`` rows whose image and numbers name one quadrant; in ``anomalies`` of them the numbers name another
    (``is_anomaly`` = 1)."""
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        k = int(rng.integers(K))
        bad = rng.random() < anomalies
        said = (k + int(rng.integers(1, K))) % K if bad else k
        path = f"img/s{seed}_{i:04d}.png"
        _image(rng, k).save(folder / path)
        row = {
            "image": path,
            **{f"x{j}": round(float((2.0 if j == said else 0.0) + rng.normal(0, 0.1)), 3) for j in range(K)},
        }
        rows.append({**row, "is_anomaly": int(bad)})
    return pd.DataFrame(rows)


def config(epochs: int = 20, **reconstruction: object) -> dict:
    return {
        "training": {"max_epochs": epochs, "batch_size": 32, "learning_rate": 0.003},
        "encoders": {
            "image": {"name": "image_cnn", "width": 8, "dim": 16, "stages": 2},
            "tabular": {"name": "tabular_mlp", "hidden": 16, "dim": 16},
        },
        "fusion": {"dim": 32},
        "processing": {"image_size": SIZE, "image_augment": False},
        "task": {"reconstruction": {"latent_dim": 4, "hidden": 16, **reconstruction}},
    }


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("paired")
    train = folder / "train.csv"
    paired_table(folder, 240, seed=0).drop(columns="is_anomaly").to_csv(train, index=False)
    test = folder / "test.csv"
    paired_table(folder, 120, seed=1, anomalies=0.5).to_csv(test, index=False)
    return train, test


@pytest.fixture(scope="module")
def fitted(tables) -> Predictor:
    return Predictor(problem_type="reconstruction", config=config(), seed=0, verbose=False).fit(tables[0])


def test_predict_gives_finite_scores_per_row_and_modality(fitted, tables):
    pred = fitted.predict(tables[1])
    assert isinstance(pred, pd.DataFrame)
    assert list(pred.columns) == [SCORE_COLUMN, "anomaly_image", "anomaly_tabular", CROSSMODAL_COLUMN]
    assert len(pred) == 120
    assert np.isfinite(pred.to_numpy()).all()
    # the default score (joint+agreement): the mean of the modalities' scores plus the cross-modal one
    expected = pred[["anomaly_image", "anomaly_tabular"]].mean(axis=1) + pred[CROSSMODAL_COLUMN]
    np.testing.assert_allclose(pred[SCORE_COLUMN], expected)
    assert fitted.fit_result is not None and np.isfinite(fitted.fit_result.validation["val_reconstruction_error"])


def test_inconsistent_rows_score_higher(fitted, tables):
    test = pd.read_csv(tables[1])
    pred = fitted.predict(tables[1])
    bad = test["is_anomaly"].to_numpy() == 1
    scores = pred[SCORE_COLUMN].to_numpy()
    assert scores[bad].mean() > scores[~bad].mean()
    metrics = fitted.evaluate(tables[1], anomaly_label="is_anomaly")
    assert metrics["roc_auc"] > 0.75, metrics
    expected = {"average_precision", "roc_auc_image", "roc_auc_tabular", "roc_auc_joint", "roc_auc_cross"}
    expected |= {"roc_auc_agreement", "roc_auc_joint+agreement", "roc_auc_cross+agreement", "disagreement"}
    assert expected | {"error_image", "error_tabular", "cross_error_image", "cross_error_tabular"} <= set(metrics)
    assert metrics["roc_auc_joint+agreement"] == metrics["roc_auc"]  # the default score
    # without flags: the errors only
    plain = fitted.evaluate(tables[1])
    assert "roc_auc" not in plain and plain["reconstruction_error"] > 0


def test_agreement_score_ranks_mismatched_rows_higher(fitted, tables):
    # each modality alone is a normal sample: only their agreement tells the mismatched rows
    bad = pd.read_csv(tables[1])["is_anomaly"].to_numpy() == 1
    cross = fitted.predict(tables[1])[CROSSMODAL_COLUMN].to_numpy()
    assert cross[bad].mean() > cross[~bad].mean()
    metrics = fitted.evaluate(tables[1], anomaly_label="is_anomaly")
    assert metrics["roc_auc_agreement"] > 0.75, metrics
    summary = fitted.task.calibration_summary() if fitted.task is not None else None
    assert summary is not None and summary["disagreement_std"] > 0


def test_save_load_roundtrip_gives_equal_scores(fitted, tables, tmp_path):
    fitted.save(tmp_path / "run")
    loaded = Predictor.load(tmp_path / "run", verbose=False)
    assert loaded.problem_type == "reconstruction"
    pred = loaded.predict(tables[1])
    assert CROSSMODAL_COLUMN in pred.columns
    pd.testing.assert_frame_equal(pred, fitted.predict(tables[1]))
    assert loaded.task is not None and loaded.task.calibration_summary() == fitted.task.calibration_summary()


def test_agreement_off_or_one_modality_has_no_crossmodal_score(tables, tmp_path):
    import yaml

    from polymodal.rundir import write_manifest

    off = Predictor(problem_type="reconstruction", config=config(epochs=1, agreement=0), seed=0, verbose=False)
    off.fit(tables[0])
    assert off.config.task.reconstruction.score == "joint"  # the default score without its agreement part
    pred = off.predict(tables[1])
    assert list(pred.columns) == [SCORE_COLUMN, "anomaly_image", "anomaly_tabular"]
    np.testing.assert_allclose(pred[SCORE_COLUMN], pred[["anomaly_image", "anomaly_tabular"]].mean(axis=1))
    # a run saved before the agreement term (no such keys) loads as it was, though the default is now on
    run = off.save(tmp_path / "old")
    cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    del cfg["task"]["reconstruction"]["agreement"], cfg["task"]["reconstruction"]["agreement_temperature"]
    (run / "config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    task = json.loads((run / "task.json").read_text(encoding="utf-8"))
    for key in ("crossmodal", "agree_mean", "agree_std"):
        del task[key]
    (run / "task.json").write_text(json.dumps(task), encoding="utf-8")
    write_manifest(run)  # the edit is deliberate: seal the folder again
    pd.testing.assert_frame_equal(Predictor.load(run, verbose=False).predict(tables[1]), pred)
    # one modality (the numbers ignored): the default joint+agreement score is its joint score
    single = Predictor(
        problem_type="reconstruction",
        config=config(epochs=1),
        ignore=[f"x{j}" for j in range(K)],
        seed=0,
        verbose=False,
    ).fit(tables[0])
    pred = single.predict(tables[1])
    assert list(pred.columns) == [SCORE_COLUMN, "anomaly_image"]
    np.testing.assert_allclose(pred[SCORE_COLUMN], pred["anomaly_image"])
    metrics = single.evaluate(tables[1], anomaly_label="is_anomaly")
    assert "roc_auc_joint" in metrics and "roc_auc_agreement" not in metrics


def test_agreement_config_validation():
    settings = PolymodalConfig.from_any({"task": {"reconstruction": {"agreement": 0}}}).task.reconstruction
    assert settings.score == "joint"
    assert PolymodalConfig.from_any(PolymodalConfig.from_any({}).to_dict()).task.reconstruction.agreement > 0
    for score in ("agreement", "joint+agreement", "cross+agreement"):
        with pytest.raises(ConfigError, match="set agreement above 0"):
            PolymodalConfig.from_any({"task": {"reconstruction": {"agreement": 0, "score": score}}})
    with pytest.raises(ConfigError, match="agreement"):
        PolymodalConfig.from_any({"task": {"reconstruction": {"agreement": -1}}})
    with pytest.raises(ConfigError, match="score"):
        PolymodalConfig.from_any({"task": {"reconstruction": {"score": "cosine"}}})


def test_cli_fit_without_label_then_predict_and_evaluate(cli, tables, tmp_path):
    import yaml

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config(epochs=1, variational=True)), encoding="utf-8")
    run = tmp_path / "run"
    r = cli("fit", tables[0], "--problem-type", "reconstruction", "--config", cfg, "--out", run, "--quiet")
    assert r.exit_code == 0, r.output
    out = tmp_path / "scores.csv"
    assert cli("predict", run, tables[1], "--out", out, "--quiet").exit_code == 0
    scores = pd.read_csv(out)
    assert {"row", SCORE_COLUMN, "anomaly_image", "anomaly_tabular"} <= set(scores.columns)
    assert np.isfinite(scores[SCORE_COLUMN]).all()
    r = cli("evaluate", run, tables[1], "--anomaly-label", "is_anomaly", "--json", "--quiet")
    assert r.exit_code == 0, r.output
    assert 0.0 <= json.loads(r.stdout)["roc_auc"] <= 1.0


def test_no_reconstructable_modality_is_a_clear_error(tmp_path):
    frame = pd.DataFrame({"review": [f"the fox number {i} jumps over {i % 7} lazy dogs" for i in range(40)]})
    cfg = {"training": {"max_epochs": 1}, "task": {"reconstruction": {"text": False}}}
    p = Predictor(problem_type="reconstruction", config=cfg, columns={"review": "text"}, verbose=False)
    with pytest.raises(ConfigError, match="at least one modality it can reconstruct"):
        p.fit(frame)


def test_label_rules():
    with pytest.raises(ConfigError, match="no label"):
        Predictor("x", problem_type="reconstruction")
    with pytest.raises(ConfigError, match="label is needed"):
        Predictor()
    assert Predictor(problem_type="reconstruction").label == ANOMALY_COLUMN


def test_anomaly_flags():
    y = pd.Series([1, 0, "true", "no", "anomaly", "normal", 2.0, True], name="flag")
    assert anomaly_flags(y).tolist() == [True, False, True, False, True, False, True, True]
    with pytest.raises(DataError, match="anomaly label"):
        anomaly_flags(pd.Series(["maybe"], name="flag"))


def test_export_and_serve_refuse_with_a_clear_message(fitted, tmp_path):
    from polymodal.errors import ExportError
    from polymodal.export.export import export_run
    from polymodal.serving.app import create_app

    run = fitted.save(tmp_path / "run")
    with pytest.raises(ExportError, match="not exported yet"):
        export_run(run, tmp_path / "exported")
    with pytest.raises(ConfigError, match="not served yet"):
        create_app(run)
