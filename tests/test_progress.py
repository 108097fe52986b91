"""Progress when the output is not a terminal (plain lines per epoch and for decoding) and the time limit."""

from __future__ import annotations

import re
import time

import yaml
from conftest import make_table, tiny_config

from polymodal import Predictor
from polymodal.data.progress import Progress
from polymodal.training.module import MultimodalModule


def test_cli_fit_prints_plain_progress_lines_when_not_a_terminal(cli, tmp_path):
    # CliRunner's streams are not terminals: what `polymodal fit > log 2>&1` gets.
    data = make_table(tmp_path / "data", 48, seed=4, prefix="p_", missing_rate=0.0)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(max_epochs=2, patience=5)), encoding="utf-8")
    result = cli("fit", data, "--label", "label", "--out", tmp_path / "run", "--config", config)
    assert result.exit_code == 0, result.output
    log = result.stderr
    assert re.search(r"epoch 1/2: [\d.]+ s, train loss [\d.]+, val accuracy [\d.]+", log), log
    assert re.search(r"epoch 2/2: [\d.]+ s, train loss [\d.]+, val accuracy [\d.]+", log), log
    assert "estimated training time: about" in log
    # decoding counts rows and ends at all of them: the training and validation parts add up to the table
    done = [int(m.group(1)) for m in re.finditer(r"decoding (?:training|validation) rows: (\d+)/\1 rows", log)]
    assert sum(done) == 48, log
    assert "\r" not in log  # no live bar in a log file


def test_decoding_progress_counts_rows_in_order(caplog):
    """Progress.update takes absolute counts; in line mode the last line is the total."""
    bar = Progress(3, "decoding rows", "rows")
    with caplog.at_level("INFO", logger="polymodal"):
        for done in (1, 1, 3):
            bar.update(done)
        bar.close()
    assert caplog.messages[-1].startswith("decoding rows: 3/3 rows (100%)")


def test_time_limit_stops_within_a_step(train_csv, tmp_path, monkeypatch):
    step_seconds = 0.2
    original = MultimodalModule.training_step

    def slow_step(self, batch, batch_idx):
        time.sleep(step_seconds)  # a slow model: 8 steps an epoch make epochs of 1.6 s and more
        return original(self, batch, batch_idx)

    monkeypatch.setattr(MultimodalModule, "training_step", slow_step)
    limit = 0.7
    p = Predictor(
        "label", config=tiny_config(max_epochs=20, batch_size=8, patience=50), time_limit=limit, verbose=False
    )
    r = p.fit(train_csv).fit_result
    assert r is not None and r.time_limited
    # Lightning's max_time stopped one epoch late; now: the step that crosses the limit, then one validation pass
    # (a few rows). The margin is four steps' time: generous on a loaded machine, far below an extra epoch.
    assert limit <= r.train_seconds < limit + 4 * step_seconds + 1.0, r
    assert r.epochs_run <= 1 and len(r.history) == 1  # the partial first epoch was validated and kept
    assert r.validation  # its metrics are the best epoch's
    saved = yaml.safe_load((p.save(tmp_path / "run") / "metrics.json").read_text(encoding="utf-8"))
    assert saved["time_limited"] and saved["train_seconds"] == r.train_seconds


def test_compare_and_explanations_print_lines_when_output_is_not_a_terminal(tiny_data, caplog):
    """compare, robustness, importance and explanations use the same progress as fit: lines in a log."""
    import logging

    import polymodal

    with caplog.at_level(logging.INFO, logger="polymodal"):
        polymodal.compare(
            tiny_data, "label", fusions=["concat"], single_modalities=False, config=tiny_config(max_epochs=1)
        )
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("compare:")]
    assert lines and lines[-1].startswith("compare: 1/1 runs (100%)"), lines
    assert not any("\r" in r.getMessage() for r in caplog.records)
