"""examples/seed000_image_text.py (pretrained image + text encoders → concat → linear) runs with tiny models."""
from __future__ import annotations

import importlib.util

from conftest import REPO_ROOT


def test_seed000_example_runs_with_tiny_models(tmp_path):
    spec = importlib.util.spec_from_file_location("seed000", REPO_ROOT / "examples" / "seed000_image_text.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    metrics = module.main(["--tiny", "--rows", "60", "--epochs", "2", "--out", str(tmp_path)])
    assert metrics["rows"] == 30 and 0 <= metrics["accuracy"] <= 1
    run = tmp_path / "run"
    assert (run / "backbones" / "image" / "preprocessor_config.json").is_file()
    assert (run / "backbones" / "text" / "tokenizer.json").is_file()
