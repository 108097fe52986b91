"""`compare`: single modalities and fusion methods side by side on one split, from Python and the CLI."""
from __future__ import annotations

import pandas as pd
import pytest
import yaml

import polymodal
from conftest import tiny_config
from polymodal.errors import ConfigError


def test_compare_python_api(train_csv, tmp_path):
    table = polymodal.compare(train_csv, "label", fusions=["concat"], seeds=2, config=tiny_config(max_epochs=1),
                              out_dir=tmp_path, verbose=False)
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
    r = cli("compare", train_csv, "--label", "label", "--test", test_csv, "--fusions", "concat", "--no-single",
            "--out", out, "--config", cfg, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert "fusion: concat" in (out / "compare.md").read_text() and (out / "compare.png").is_file()
    r = cli("compare", train_csv, "--label", "label", "--fusions", "nope", "--out", out, "--quiet")
    assert r.exit_code == 2 and "unknown fusion 'nope'" in r.stderr


def test_compare_rejects_zero_seeds(train_csv):
    with pytest.raises(ConfigError, match="seeds"):
        polymodal.compare(train_csv, "label", seeds=0)
