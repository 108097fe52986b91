"""`compare`: single modalities and fusion methods side by side on one split, from Python and the CLI."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from conftest import tiny_config

import polymodal
from polymodal.errors import ConfigError


def test_compare_python_api(train_csv, tmp_path):
    table = polymodal.compare(
        train_csv,
        "label",
        fusions=["concat"],
        seeds=2,
        config=tiny_config(max_epochs=1),
        out_dir=tmp_path,
        verbose=False,
    )
    assert list(table["variant"]) == ["image only", "audio only", "text only", "tabular only", "fusion: concat"]
    assert (table["seeds"] == 2).all() and (table["accuracy_std"] >= 0).all()
    assert table["accuracy_mean"].between(0, 1).all() and (table["parameters"] > 0).all()
    assert (table["infer_ms_per_row"] > 0).all()
    fused = table.set_index("variant")["parameters"]
    assert fused["fusion: concat"] > fused["image only"]
    assert {"compare.csv", "compare.md", "compare.png"} <= {p.name for p in tmp_path.iterdir()}
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pd.read_csv(tmp_path / "compare.csv").shape[0] == 5


def test_compare_cli(cli, train_csv, test_csv, tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(max_epochs=1)))
    out = tmp_path / "cmp"
    r = cli(
        "compare",
        train_csv,
        "--label",
        "label",
        "--test",
        test_csv,
        "--fusions",
        "concat",
        "--no-single",
        "--out",
        out,
        "--config",
        cfg,
        "--quiet",
    )
    assert r.exit_code == 0, r.stderr
    assert "fusion: concat" in (out / "compare.md").read_text() and (out / "compare.png").is_file()
    r = cli("compare", train_csv, "--label", "label", "--fusions", "nope", "--out", out, "--quiet")
    assert r.exit_code == 2 and "unknown fusion 'nope'" in r.stderr


def test_compare_rejects_zero_seeds(train_csv):
    with pytest.raises(ConfigError, match="seeds"):
        polymodal.compare(train_csv, "label", seeds=0)


def test_runs_are_logged_resumed_and_kept(train_csv, tmp_path, monkeypatch):
    import json

    import polymodal.api as api

    kwargs = dict(
        fusions=["concat"],
        seeds=1,
        single_modalities=False,
        config=tiny_config(max_epochs=1),
        out_dir=tmp_path,
        verbose=False,
    )
    first = polymodal.compare(train_csv, "label", keep_runs=True, **kwargs)
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["variant"] == "fusion: concat"
    saved = api.Predictor.load(tmp_path / "runs" / "fusion-concat-seed0", verbose=False)
    assert saved.config.fusion.name == "concat"

    def no_fit(*a, **k):
        raise AssertionError("a finished run was trained again")

    import polymodal.evaluation.compare as compare_module

    monkeypatch.setattr(compare_module, "fit_pipeline", no_fit)
    again = polymodal.compare(train_csv, "label", resume=True, **kwargs)
    pd.testing.assert_frame_equal(again, first)
    # other settings do not reuse the logged run
    with pytest.raises(AssertionError, match="trained again"):
        polymodal.compare(train_csv, "label", resume=True, **{**kwargs, "config": tiny_config(max_epochs=2)})


def test_resume_needs_an_output_directory(train_csv):
    with pytest.raises(ConfigError, match="output directory"):
        polymodal.compare(train_csv, "label", resume=True)


def test_shared_decoding_decodes_each_file_once(train_csv, data_dir):
    """In memory (store=None) the block is what shares decoded files; the on-disk store shares them always
    (test_sample_cache)."""
    from polymodal.config import PolymodalConfig
    from polymodal.data.dataset import prepare, shared_decoding
    from polymodal.data.processors import ImageProcessor, LoadContext, build_processors
    from polymodal.schema import infer_schema

    frame = pd.read_csv(train_csv)
    cfg = PolymodalConfig.from_any(tiny_config())
    _, procs = build_processors(infer_schema(frame, "label"), cfg)
    ctx = LoadContext(data_dir.resolve(), cfg.limits)
    for p in procs.values():
        p.fit(frame, ctx)
    calls = []
    original = ImageProcessor.load

    def counting(self, value, c):
        calls.append(value)
        return original(self, value, c)

    ImageProcessor.load = counting
    try:
        with shared_decoding():
            a = prepare(frame, procs, ctx, progress=False, store=None)
            n = len(calls)
            b = prepare(frame, procs, ctx, progress=False, store=None)
        assert n > 0 and len(calls) == n  # the second call decoded no image
        prepare(frame, procs, ctx, progress=False, store=None)
        assert len(calls) == 2 * n  # outside the block nothing is shared
    finally:
        ImageProcessor.load = original
    for x, y in zip(a.items["image"], b.items["image"]):
        assert (x is None and y is None) or (x == y).all()
