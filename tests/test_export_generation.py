"""A generation model exported as an encoder graph + a decoder-step graph with a key/value cache: greedy and beam
search over ONNX Runtime give exactly the eager model's texts (50 held-out rows); Predictor.load(backend="onnx")
and ``POST /generate`` (torch and onnx backends)."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from polymodal import Predictor
from polymodal.datasets.scenes import make_captioning
from polymodal.errors import ConfigError, ExportError
from polymodal.export.export import ExportConfig, export_run
from polymodal.export.generation import ENCODER_FILE, STEP_FILE
from polymodal.export.onnx_graph import session
from polymodal.serving.app import create_app
from polymodal.serving.schemas import ServeConfig

# Two decoder layers (the cache of each travels through the step graph); trained enough that captions differ per
# image, so that "the same texts" is not the trivial "the same constant text".
CONFIG = {
    "task": {"generation": {"layers": 2, "dim": 32, "heads": 2, "dropout": 0.0}},
    "encoders": {"image": {"name": "image_cnn", "width": 8, "dim": 16, "stages": 2}},
    "training": {"batch_size": 16, "max_epochs": 5, "learning_rate": 0.01},
}


@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    root = tmp_path_factory.mktemp("captioning")
    paths = make_captioning(root / "data", n_train=120, n_test=50)
    p = Predictor("caption", problem_type="generation", config=CONFIG, verbose=False).fit(paths.train)
    run = p.save(root / "run")
    out = root / "export"
    result = export_run(run, out, data=paths.test, config=ExportConfig(parity_rows=50))
    return p, run, out, result, paths


def test_export_writes_both_graphs_with_dynamic_axes_and_text_parity(captioner):
    _, _, out, result, _ = captioner
    assert (out / ENCODER_FILE).is_file() and (out / STEP_FILE).is_file() and not (out / "model.onnx").exists()
    assert result.files == {"generator_encoder": ENCODER_FILE, "generator_step": STEP_FILE}
    for method in ("greedy", "beam"):
        check = result.parity[f"generator ({method})"]
        assert check.rows == 50 and check.agreement == 1.0, check
        assert check.max_abs_diff < 1e-3  # the sequence log-probabilities, float32 kernels apart
    step = {i.name: i.shape for i in session(out / STEP_FILE).get_inputs()}
    assert step["tokens"] == ["hyps"] and step["past_k.0"][0] == "hyps" and step["past_k.1"][2] == "prefix"
    assert step["keep"] == ["hyps", "memory"]


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_onnx_backend_generates_exactly_the_eager_texts_on_50_heldout_rows(captioner, method):
    p, _, out, _, paths = captioner
    eager = p.predict(paths.test, decoding={"method": method})
    onnx = Predictor.load(out, verbose=False, backend="onnx")
    got = onnx.predict(paths.test, decoding={"method": method})
    assert len(got) == 50
    assert list(got) == list(eager)
    assert len(set(eager)) >= 2, "the model writes one text for every image: the comparison would be vacuous"
    scores = onnx.predict(paths.test, decoding={"method": method}, return_scores=True)
    want = p.predict(paths.test, decoding={"method": method}, return_scores=True)
    assert np.allclose(scores["log_prob"], want["log_prob"], atol=1e-3)


def test_onnx_backend_on_a_plain_run_exports_in_memory(captioner):
    p, run, _, _, paths = captioner
    frame = pd.read_csv(paths.test).head(8)
    got = Predictor.load(run, verbose=False, backend="onnx").predict(frame, data_root=paths.root)
    assert list(got) == list(p.predict(frame, data_root=paths.root))


def _rows(paths, n: int) -> tuple[pd.DataFrame, list[dict]]:
    frame = pd.read_csv(paths.test).head(n)
    rows = [{"image": base64.b64encode((paths.root / v).read_bytes()).decode()} for v in frame["image"]]
    return frame, rows


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_generate_endpoint_answers_with_the_eager_texts(captioner, backend):
    p, _, out, _, paths = captioner
    frame, rows = _rows(paths, 5)
    model = Predictor.load(out, verbose=False, backend=backend)
    with TestClient(create_app(model, ServeConfig(backend=backend))) as client:
        for method in ("greedy", "beam"):
            r = client.post(f"/generate?method={method}", json={"rows": rows})
            assert r.status_code == 200, r.text
            gens = r.json()["generations"]
            want = p.predict(frame, data_root=paths.root, decoding={"method": method}, return_scores=True)
            assert [g["text"] for g in gens] == list(want["caption"])
            assert np.allclose([g["log_prob"] for g in gens], want["log_prob"], atol=1e-3)
            assert all(g["tokens"] >= 1 for g in gens)
        # bad decoding options and the wrong endpoint are answered with what to do
        assert client.post("/generate?beam_width=0", json={"rows": rows}).status_code == 422
        r = client.post("/generate?max_length=100000", json={"rows": rows})
        assert r.status_code == 422 and "max_length" in r.json()["error"]
        r = client.post("/predict", json={"rows": rows})
        assert r.status_code == 400 and "/generate" in r.json()["error"]
        assert client.post("/generate", json={"rows": [{"nope": 1}]}).status_code == 422


def test_generation_export_refuses_int8_and_torchscript(captioner, tmp_path):
    _, run, _, _, _ = captioner
    for cfg in (ExportConfig(quantize="int8"), ExportConfig(format="torchscript")):
        with pytest.raises(ExportError, match="generation model exports to ONNX float32"):
            export_run(run, tmp_path / "x", cfg)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="onnx"):
        Predictor.load(run, verbose=False, backend="onnx-int8")


def test_cli_export_of_a_generation_model_prints_its_text_parity(cli, captioner, tmp_path):
    _, run, _, _, paths = captioner
    r = cli("export", run, "--out", tmp_path / "e", "--calibration", paths.test, "--calibration-rows", "16")
    assert r.exit_code == 0, r.output
    assert "generator (greedy)" in r.stdout and "generator (beam)" in r.stdout and "100.0%" in r.stdout
    assert (tmp_path / "e" / STEP_FILE).is_file()
    r = cli("export", run, "--out", tmp_path / "e2", "--quantize", "int8")
    assert r.exit_code != 0 and "float32 only" in r.stderr and not (tmp_path / "e2").exists()
