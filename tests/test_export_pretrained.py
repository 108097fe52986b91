"""Pretrained (Hugging Face) encoders export into the one ONNX graph: every kind (tiny models built in-process;
hf_video on tiny clips) with parity on real rows and on inputs shaped unlike the trace (other batch sizes, other text
lengths); the seed-000 model (pretrained image + text → concat) exports to fp32 and int8 (dynamic and static), loads with
``Predictor.load(dir, backend=...)`` and serves."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import hf_tiny
import numpy as np
import pandas as pd
import pytest
from conftest import make_table, tiny_config
from fastapi.testclient import TestClient

from polymodal import Predictor
from polymodal.data.dataset import make_loader, prepare
from polymodal.data.processors import LoadContext
from polymodal.datasets.synthetic import generate_image_text
from polymodal.export.export import ExportConfig, export_run
from polymodal.export.onnx_graph import session
from polymodal.pipeline import FittedPipeline
from polymodal.serving.app import create_app
from polymodal.serving.schemas import ServeConfig

PARITY_ATOL = 1e-4
# (encoder, tiny model, column): every pretrained encoder kind of tests/test_hf_encoders.py but hf_video
CASES = [
    ("hf_text", "bert", "text"),
    ("hf_image", "vit", "image"),
    ("hf_image", "resnet", "image"),
    ("clip_text", "clip", "text"),
    ("clip_image", "clip", "image"),
    ("hf_audio", "wav2vec2", "audio"),
    ("hf_audio", "whisper", "audio"),
]


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return make_table(tmp_path_factory.mktemp("hf-export-data"), 40, seed=5, prefix="x_", missing_rate=0.1)


def _session_outputs(out: Path, pipeline: FittedPipeline, frame: pd.DataFrame, root: Path, batch_size: int):
    """(eager, onnx) outputs of ``frame`` collated ``batch_size`` rows at a time."""
    prepared = prepare(frame, pipeline.processors, LoadContext(root, pipeline.config.limits), "skip", progress=False)
    sess = session(out / "model.onnx")
    names = {i.name for i in sess.get_inputs()}
    from polymodal.export.graph import signature_of

    sig = signature_of(pipeline.processors)
    eager, got = [], []
    for b in make_loader(prepared, pipeline.processors, batch_size, False):
        eager.append(pipeline.model(b.inputs, b.masks).detach().float().numpy())
        got.append(sess.run([sig.output], {k: v for k, v in sig.feed(b).items() if k in names})[0])
    return np.concatenate(eager), np.concatenate(got)


@pytest.mark.parametrize("encoder,kind,column", CASES, ids=[f"{e}-{k}" for e, k, _ in CASES])
def test_pretrained_encoder_exports_with_parity_on_other_shapes(encoder, kind, column, table, tmp_path):
    model = hf_tiny.build(kind, tmp_path / kind)
    cfg = tiny_config(max_epochs=1)
    cfg["encoders"][column] = {"name": encoder, "model": str(model), "dim": 16}
    p = Predictor("label", config=cfg, verbose=False, preset="fast").fit(table)
    run = p.save(tmp_path / "run")
    shutil.rmtree(model)  # the export reads the run directory only
    out = tmp_path / "export"
    result = export_run(run, out, ExportConfig(quantize="int8", quantize_mode="dynamic"), data=table)
    fp32 = result.parity["model.onnx"]
    assert fp32.rows == 40 and fp32.max_abs_diff < PARITY_ATOL and fp32.agreement == 1.0
    assert (out / "model.int8.onnx").is_file() and np.isfinite(result.parity["model.int8.onnx"].max_abs_diff)

    # batch size and sequence length free: the trace saw 2 rows (and texts of 3 tokens); batches of 3 and 17 rows
    # collate texts to each batch's own longest text
    inputs = {i.name: i.shape for i in session(out / "model.onnx").get_inputs()}
    assert all(shape[0] == "batch" for shape in inputs.values())
    if column == "text":
        assert all(isinstance(d, str) for d in inputs[f"{column}.input_ids"])
    pipeline = FittedPipeline.load(out, verbose=False)
    frame = pd.read_csv(table)
    for batch_size in (3, 17):
        eager, got = _session_outputs(out, pipeline, frame, table.parent, batch_size)
        assert len(got) == 40 and np.abs(eager - got).max() < PARITY_ATOL


# ------------------------------------------------------------------------------------------ the seed-000 model
@pytest.fixture(scope="module")
def seed000(tmp_path_factory):
    """The seed-000 example's system on tiny backbones: hf_image (ResNet) + hf_text (BERT), frozen, concat."""
    import importlib.util

    from conftest import REPO_ROOT

    root = tmp_path_factory.mktemp("seed000")
    spec = importlib.util.spec_from_file_location("seed000", REPO_ROOT / "examples" / "seed000_image_text.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    image, text = module.tiny_models(root / "models")
    data = root / "data"
    generate_image_text(data, 60, seed=0, prefix="train_").to_csv(data / "train.csv", index=False)
    generate_image_text(data, 30, seed=1, prefix="test_").to_csv(data / "test.csv", index=False)
    config = {
        "encoders": {
            "image": {"name": "hf_image", "model": str(image), "mode": "frozen"},
            "text": {"name": "hf_text", "model": str(text), "mode": "frozen"},
        },
        "fusion": {"name": "concat"},
        "training": {"max_epochs": 2},
    }
    p = Predictor("label", config=config, verbose=False).fit(data / "train.csv")
    return p, p.save(root / "run"), data


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_seed000_model_exports_to_fp32_and_int8_and_loads_with_each_backend(seed000, mode, tmp_path):
    p, run, data = seed000
    test = data / "test.csv"
    out = tmp_path / "export"
    result = export_run(run, out, ExportConfig(quantize="int8", quantize_mode=mode, calibration_rows=30), data=test)
    assert result.quantization == f"int8 {mode}"
    fp32, int8 = result.parity["model.onnx"], result.parity["model.int8.onnx"]
    print(f"seed-000 {mode}: fp32 {fp32.max_abs_diff:.2e}; int8 {int8.max_abs_diff:.3f}, agreement {int8.agreement}")
    assert fp32.max_abs_diff < PARITY_ATOL and fp32.agreement == 1.0
    assert int8.max_abs_diff < 0.1 and int8.agreement is not None and int8.agreement >= 0.9
    eager = p.predict_proba(test)
    onnx = Predictor.load(out, verbose=False, backend="onnx").predict_proba(test)
    assert np.allclose(onnx.to_numpy(), eager.to_numpy(), atol=PARITY_ATOL)
    quant = Predictor.load(out, verbose=False, backend="onnx-int8").predict_proba(test)
    assert np.abs(quant.to_numpy() - eager.to_numpy()).max() < 0.1


def test_seed000_model_serves_from_its_onnx_export(seed000, tmp_path):
    p, run, data = seed000
    out = tmp_path / "export"
    export_run(run, out, data=data / "test.csv")
    frame = pd.read_csv(data / "test.csv").head(4)
    rows = [
        {"image": base64.b64encode((data / r["image"]).read_bytes()).decode(), "text": r["text"]}
        for _, r in frame.iterrows()
    ]
    model = Predictor.load(out, verbose=False, backend="onnx")
    with TestClient(create_app(model, ServeConfig(backend="onnx"))) as client:
        r = client.post("/predict", json={"rows": rows})
        assert r.status_code == 200, r.text
        assert client.get("/metadata").json()["backend"] == "onnx"
    got = [max(x["probabilities"].values()) for x in r.json()["predictions"]]
    want = p.predict_proba(frame, data_root=data).max(axis=1).to_numpy()
    assert np.allclose(got, want, atol=PARITY_ATOL)


def test_attention_pooling_exports_with_parity(table, tmp_path):
    model = hf_tiny.build("bert", tmp_path / "bert")
    cfg = tiny_config(max_epochs=1)
    cfg["encoders"]["text"] = {"name": "hf_text", "model": str(model), "dim": 16, "pooling": "attention"}
    run = Predictor("label", config=cfg, verbose=False, preset="fast").fit(table).save(tmp_path / "run")
    result = export_run(run, tmp_path / "export", data=table)
    assert result.parity["model.onnx"].max_abs_diff < PARITY_ATOL


def test_pretrained_video_backbone_exports_with_parity(tmp_path):
    from test_video import motion_table, tiny_videomae

    train = motion_table(tmp_path, 32, seed=0)
    model = tiny_videomae(tmp_path / "videomae")
    cfg = {
        "training": {"max_epochs": 1, "batch_size": 16},
        "encoders": {"video": {"name": "hf_video", "model": str(model), "dim": 16}},
    }
    p = Predictor("label", config=cfg, data_root=tmp_path, preset="fast", seed=0, verbose=False).fit(train)
    run = p.save(tmp_path / "run")
    train.to_csv(tmp_path / "train.csv", index=False)
    result = export_run(run, tmp_path / "export", data=tmp_path / "train.csv")
    assert result.parity["model.onnx"].max_abs_diff < PARITY_ATOL and result.parity["model.onnx"].rows == 32
