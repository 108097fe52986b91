"""examples/seed002_captioning.py and examples/seed003_multimodal_qa.py run with tiny settings."""
from __future__ import annotations

import importlib.util

from conftest import REPO_ROOT


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed002_captioning_example_runs_tiny(tmp_path):
    results = _load("seed002_captioning").main(["--tiny", "--rows", "40", "--epochs", "1", "--out", str(tmp_path)])
    assert set(results) == {"beam", "greedy"}
    assert results["beam"]["rows"] == 10 and 0 <= results["beam"]["bleu4"] <= 1
    assert (tmp_path / "run" / "task.json").is_file()


def test_seed003_qa_example_runs_tiny_text_only(tmp_path):
    results = _load("seed003_multimodal_qa").main(["--tiny", "--rows", "40", "--epochs", "1", "--speech", "no",
                                                   "--out", str(tmp_path)])
    assert list(results) == ["text question, answer classification", "text question, answer generation"]
    assert 0 <= results["text question, answer classification"]["accuracy"] <= 1
    assert 0 <= results["text question, answer generation"]["exact_match"] <= 1


def test_seed003_qa_example_with_spoken_questions(tmp_path, espeak_ng):
    results = _load("seed003_multimodal_qa").main(["--tiny", "--rows", "40", "--epochs", "1", "--speech", "yes",
                                                   "--out", str(tmp_path)])
    assert "spoken question, answer classification" in results
    assert any((tmp_path / "data" / "speech").glob("*.wav"))
