"""examples/seed002_captioning.py and examples/seed003_multimodal_qa.py run with tiny settings."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
from conftest import REPO_ROOT


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _learned(run: Path) -> None:
    """The run's training loss fell clearly over its epochs: a model that does not learn (no gradient reaching the
    weights, a broken loss) fails this; its metrics after a few epochs on 40 rows would not show it."""
    log = pd.read_csv(run / "training_log.csv")
    assert len(log) >= 3, log
    assert log["train_loss"].iloc[-1] < 0.97 * log["train_loss"].iloc[0], log["train_loss"].tolist()


def test_seed002_captioning_example_runs_tiny(tmp_path):
    results = _load("seed002_captioning").main(["--tiny", "--rows", "40", "--epochs", "4", "--out", str(tmp_path)])
    assert set(results) == {"beam", "greedy"}
    assert results["beam"]["rows"] == 10 and results["greedy"]["rows"] == 10
    assert (tmp_path / "run" / "task.json").is_file()
    _learned(tmp_path / "run")


def test_seed003_qa_example_runs_tiny_text_only(tmp_path):
    results = _load("seed003_multimodal_qa").main(
        ["--tiny", "--rows", "40", "--epochs", "6", "--speech", "no", "--out", str(tmp_path)]
    )
    assert list(results) == ["text question, answer classification", "text question, answer generation"]
    assert (
        results["text question, answer classification"]["rows"] == results["text question, answer generation"]["rows"]
    )
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        _learned(run)


def test_seed003_qa_example_with_spoken_questions(tmp_path, espeak_ng):
    results = _load("seed003_multimodal_qa").main(
        ["--tiny", "--rows", "40", "--epochs", "1", "--speech", "yes", "--out", str(tmp_path)]
    )
    assert "spoken question, answer classification" in results
    assert any((tmp_path / "data" / "speech").glob("*.wav"))
