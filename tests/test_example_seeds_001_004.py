"""examples/seed001_* (image + text + audio → weighted fusion → sigmoid per tag) and examples/seed004_* (ResNet-18
layout + 2-layer LSTM → concat) run in their tiny mode, and build the systems the seeds describe."""

from __future__ import annotations

import importlib.util

from conftest import REPO_ROOT
from torch import nn

from polymodal import Predictor


def _example(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed001_example_runs_in_tiny_mode(tmp_path):
    metrics = _example("seed001_image_text_audio").main(["--tiny", "--rows", "60", "--out", str(tmp_path)])
    assert metrics["rows"] == 30 and 0.0 <= metrics["hamming_loss"] <= 1.0
    p = Predictor.load(tmp_path / "run", verbose=False)
    cfg = p.pipeline.config
    assert {k: cfg.encoders[k].name for k in ("image", "text", "audio")} == {
        "image": "image_cnn",
        "text": "text_transformer",
        "audio": "audio_cnn",
    }
    assert cfg.fusion.name == "weighted" and p.pipeline.task.problem_type == "multilabel"
    proba = p.predict_proba(tmp_path / "data" / "test.csv", data_root=tmp_path / "data")
    # one independent sigmoid per tag: six tags, each probability in [0, 1], rows not summing to 1
    assert proba.shape == (30, 6) and ((proba >= 0) & (proba <= 1)).all().all()


def test_seed004_example_builds_resnet18_and_a_two_layer_lstm(tmp_path):
    metrics = _example("seed004_resnet18_lstm").main(["--tiny", "--rows", "48", "--out", str(tmp_path)])
    assert metrics["rows"] == 24
    net = Predictor.load(tmp_path / "run", verbose=False).pipeline.model
    lstms = [m for m in net.modules() if isinstance(m, nn.LSTM)]
    assert len(lstms) == 1 and lstms[0].num_layers == 2
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 17  # ResNet-18: the stem and 4 stages x 2 blocks x 2 convs (plus 1x1 skips)
