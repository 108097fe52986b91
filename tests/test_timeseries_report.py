"""`polymodal report` on a time-series model (issue 21, acceptance 3): the page has the time-series column in its
schema, robustness (the series corruptions), modality importance and the gallery's channel x time maps."""

from __future__ import annotations

import re

import numpy as np
from test_rocket import shapes_table

from polymodal import Predictor

CONFIG = {
    "training": {"max_epochs": 3},
    "encoders": {"timeseries": {"name": "ts_cnn", "width": 8, "dim": 16, "stages": 2}},
    "fusion": {"dim": 16},
}


def _section(html: str, name: str) -> str:
    start = html.index(f'<section id="{name}"')
    return html[start : html.index("</section>", start)]


def test_cli_report_of_a_time_series_model_has_its_sections(cli, tmp_path, monkeypatch):
    from polymodal.members import RocketMember

    monkeypatch.setattr(RocketMember, "max_kernels", 500)  # the report is tested here, not ROCKET: fewer kernels
    train, test = shapes_table(60, seed=4), shapes_table(24, seed=5)
    train["level"] = np.random.default_rng(0).normal(size=len(train))  # a tabular column beside the series
    test["level"] = np.random.default_rng(1).normal(size=len(test))
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    run = Predictor("y", config=CONFIG, verbose=False, seed=0).fit(tmp_path / "train.csv").save(tmp_path / "run")
    r = cli("evaluate", run, tmp_path / "test.csv", "--robustness", "--out", run / "robustness", "--quiet")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    out = tmp_path / "report.html"
    r = cli("report", run, tmp_path / "test.csv", "--out", out, "--examples", "2", "--bootstrap", "10", "--quiet")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    html = out.read_text(encoding="utf-8")
    assert re.search(r"\bs\b.{0,200}timeseries", _section(html, "schema"), re.S)
    robustness = _section(html, "robustness")
    for corruption in ("series_noise", "dropped_steps", "dropped_channel"):
        assert corruption in robustness
    importance = _section(html, "importance")
    assert "<img" in importance and re.search(r"<td[^>]*>s</td>", importance)
    gallery = _section(html, "gallery")
    assert gallery.count("<img") == 2 and "time-series channel x time maps" in gallery
    assert re.search(r"Share of attribution: [^<]*\bs \d+%", gallery)
