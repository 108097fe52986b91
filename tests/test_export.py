"""ONNX / TorchScript export, int8 quantization, the ONNX backends of Predictor.load, and pruning."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import real_batch

from polymodal import Predictor
from polymodal.errors import ExportError, RunDirError
from polymodal.export.export import ExportConfig, export_run
from polymodal.export.onnx_graph import session, to_onnx
from polymodal.export.prune import prune_run, sparsity
from polymodal.model import build_model
from polymodal.registry import FUSIONS
from polymodal.serving.backends import BACKENDS
from polymodal.tasks import build_task

PARITY_ATOL = 1e-4  # float32 kernels differ between PyTorch and ONNX Runtime in the last bits only


@pytest.fixture(scope="module")
def onnx_export(run_dir, test_csv, tmp_path_factory):
    """The shared run exported with static int8 (calibrated and checked on the test table's real rows)."""
    out = tmp_path_factory.mktemp("export") / "onnx"
    result = export_run(run_dir, out, ExportConfig(quantize="int8", calibration_rows=30), data=test_csv)
    return out, result


def test_export_has_every_modality_and_parity_on_real_rows(onnx_export):
    out, result = onnx_export
    assert set(result.signature.masks) == {"image", "audio", "text", "tabular"}
    assert result.signature.names[:5] == ["image", "audio", "text", "tabular.numeric", "tabular.category"]
    fp32 = result.parity["model.onnx"]
    print(f"ONNX fp32 vs eager: max abs diff {fp32.max_abs_diff:.2e} on {fp32.rows} real rows")
    assert fp32.rows == 30 and fp32.max_abs_diff < PARITY_ATOL and fp32.agreement == 1.0
    assert result.quantization == "int8 static" and result.parity["model.int8.onnx"].agreement >= 0.8
    meta = json.loads((out / "export.json").read_text())
    assert meta["files"] == {"fp32": "model.onnx", "int8": "model.int8.onnx"}
    assert meta["parity"]["model.onnx"]["max_abs_diff"] == fp32.max_abs_diff
    # the export directory is a complete run directory
    assert (out / "model.safetensors").is_file() and (out / "processors.json").is_file()


def test_onnx_graph_has_named_inputs_and_a_dynamic_batch(onnx_export):
    out, result = onnx_export
    inputs = {i.name: i for i in session(out / "model.onnx").get_inputs()}
    assert set(inputs) <= set(result.signature.names)
    assert {"mask.image", "mask.audio", "mask.text", "mask.tabular", "image", "text"} <= set(inputs)
    assert all(i.shape[0] == "batch" for i in inputs.values())


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_predictor_load_with_onnx_backend(onnx_export, run_dir, fitted, test_csv, backend):
    out, _ = onnx_export
    eager = fitted.predict_proba(test_csv)
    p = Predictor.load(out, verbose=False, backend=backend)
    assert type(p.backend).registry_name == backend
    proba = p.predict_proba(test_csv)
    assert list(proba.index) == list(eager.index)
    if backend == "onnx":
        np.testing.assert_allclose(proba.to_numpy(), eager.to_numpy(), atol=PARITY_ATOL)
        pd.testing.assert_series_equal(p.predict(test_csv), fitted.predict(test_csv))
        assert p.evaluate(test_csv)["accuracy"] == fitted.evaluate(test_csv)["accuracy"]
    else:
        assert (proba.to_numpy().argmax(1) == eager.to_numpy().argmax(1)).mean() >= 0.8


def test_onnx_backend_on_a_plain_run_dir_exports_in_memory(run_dir, fitted, test_csv):
    p = Predictor.load(run_dir, verbose=False, backend="onnx")
    np.testing.assert_allclose(
        p.predict_proba(test_csv).to_numpy(), fitted.predict_proba(test_csv).to_numpy(), atol=PARITY_ATOL
    )


def test_unknown_backend_lists_the_registered_ones(run_dir):
    with pytest.raises(Exception, match="unknown backend 'tensorrt'; choose one of: onnx, onnx-int8, torch"):
        Predictor.load(run_dir, verbose=False, backend="tensorrt")
    assert {"torch", "onnx", "onnx-int8"} <= set(BACKENDS.names())


def test_torchscript_export_parity(run_dir, test_csv, tmp_path):
    result = export_run(run_dir, tmp_path / "ts", ExportConfig(format="torchscript"), data=test_csv)
    assert (tmp_path / "ts" / "model.pt").is_file()
    assert result.parity["model.pt"].max_abs_diff < PARITY_ATOL


def test_dynamic_int8_without_data_and_random_parity(run_dir, tmp_path):
    # random inputs, a tiny model with near-tied classes: the gate (tested in test_int8_gate.py) set low
    result = export_run(run_dir, tmp_path / "dyn", ExportConfig(quantize="int8", min_agreement=0.8))
    assert result.quantization == "int8 dynamic" and result.parity_inputs == "random inputs"
    assert result.parity["model.onnx"].max_abs_diff < PARITY_ATOL
    assert (tmp_path / "dyn" / "model.int8.onnx").stat().st_size < (tmp_path / "dyn" / "model.onnx").stat().st_size


def test_export_options_are_checked_and_nothing_is_left_behind(run_dir, tmp_path):
    with pytest.raises(ExportError, match="static int8 quantization needs calibration rows"):
        export_run(run_dir, tmp_path / "x", ExportConfig(quantize="int8", quantize_mode="static"))
    with pytest.raises(ExportError, match="use --format onnx"):
        export_run(run_dir, tmp_path / "x", ExportConfig(format="torchscript", quantize="int8"))
    assert not (tmp_path / "x").exists()
    (tmp_path / "taken").mkdir()
    with pytest.raises(RunDirError, match="already exists"):
        export_run(run_dir, tmp_path / "taken")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no temp sibling left


@pytest.mark.parametrize("fusion", [*FUSIONS.names(), "dynamic+robust"])
def test_every_fusion_exports_with_parity(fusion, train_csv, data_dir):
    """Every registered fusion (and the transformer text encoder) traces to ONNX and matches eager on a real batch
    with absent modalities; untrained weights are enough for parity. ``dynamic+robust``: the robust preset's
    dynamic fusion (joint expert, independent experts)."""
    cfg, _schema, modalities, procs, batch = real_batch(train_csv, data_dir, 6)
    if fusion == "dynamic+robust":
        from polymodal.presets import ROBUST_FUSION_PARAMS

        fusion = "dynamic"
        cfg.fusion = type(cfg.fusion)(**{**cfg.fusion.model_dump(), **ROBUST_FUSION_PARAMS})
    cfg.fusion.name = fusion
    cfg.encoders["text"].name = "text_transformer" if fusion in ("attention", "transformer") else "text_rnn"
    if cfg.encoders["text"].name == "text_transformer":
        cfg.encoders["text"] = type(cfg.encoders["text"])(name="text_transformer", dim=16, heads=2, layers=1)
    task = build_task("binary", cfg.task)
    task.fit_target(pd.Series(["no", "yes"]))
    torch.manual_seed(0)
    model = build_model(cfg, modalities, procs, task).eval()
    data, sig = to_onnx(model, procs)
    sess = session(data)
    names = {i.name for i in sess.get_inputs()}
    out = sess.run(None, {k: v for k, v in sig.feed(batch).items() if k in names})[0]
    with torch.inference_mode():
        eager = model(batch.inputs, batch.masks).numpy()
    assert np.abs(out - eager).max() < PARITY_ATOL


def test_prune_zeroes_weights_and_saves_a_plain_run(run_dir, test_csv, tmp_path):
    r = prune_run(run_dir, tmp_path / "pruned", amount=0.5, eval_data=test_csv)
    assert 0.49 <= r.sparsity <= 0.51 and r.layers > 5
    assert set(r.metrics_before) == set(r.metrics_after)
    p = Predictor.load(tmp_path / "pruned", verbose=False)
    assert sparsity(p.model) == pytest.approx(r.sparsity, abs=1e-4)
    assert len(p.predict(test_csv)) == 30


def test_prune_fine_tune_keeps_the_zeros(run_dir, train_csv, tmp_path):
    r = prune_run(run_dir, tmp_path / "tuned", amount=0.7, fine_tune_data=train_csv, epochs=1)
    assert r.fine_tune_epochs == 1 and r.sparsity >= 0.69
    with pytest.raises(ExportError, match="--amount must be in"):
        prune_run(run_dir, tmp_path / "bad", amount=1.5)


def test_cli_export_and_prune(cli, run_dir, test_csv, tmp_path):
    r = cli("export", run_dir, "--out", tmp_path / "e", "--calibration", test_csv)
    assert r.exit_code == 0, r.output
    assert "model.onnx" in r.stdout and (tmp_path / "e" / "export.json").is_file()
    r = cli("export", run_dir, "--out", tmp_path / "e2", "--format", "tflite")
    assert r.exit_code == 2 and "invalid export options" in r.stderr and not (tmp_path / "e2").exists()
    r = cli("prune", run_dir, "--out", tmp_path / "p", "--amount", "0.3", "--eval", test_csv)
    assert r.exit_code == 0, r.output
    assert "30.0% of their weights are zero" in r.stdout and "before" in r.stdout


class _BakesRowCount(torch.nn.Module):
    """Computes a size in Python: a trace freezes it, so the graph only fits the traced example."""

    def forward(self, inputs, masks):
        n = int(masks["image"].sum())  # a Python int: traced as a constant
        return torch.zeros(n, 2) + inputs["tabular.numeric"][:n, :1]


def test_a_graph_that_does_not_generalise_is_refused(fitted):
    with pytest.raises(ExportError, match="only works for inputs shaped like the traced example"):
        to_onnx(_BakesRowCount(), fitted.processors)
