"""Streaming prediction (`polymodal predict RUN - --stream`, polymodal.streaming): one answer per line, in order,
equal to a table prediction; a bad line is answered with {row, column, problem} and the stream goes on."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.pipeline import FittedPipeline
from polymodal.streaming import RowPredictor, batches


def _lines(frame: pd.DataFrame) -> list[str]:
    return [json.dumps({k: (None if pd.isna(v) else v) for k, v in r.items()}) for r in frame.to_dict("records")]


@pytest.fixture(scope="module")
def pipeline(run_dir) -> FittedPipeline:
    return FittedPipeline.load(run_dir, verbose=False)


def test_rows_answered_in_order_equal_to_table_prediction(pipeline, data_dir):
    frame = pd.read_csv(data_dir / "test.csv").drop(columns=["label"]).head(12)
    good = _lines(frame)
    broken_image = json.loads(good[3]) | {"image": "no_such_file.png"}
    lines = [*good[:2], "{not json", *good[2:4], json.dumps(broken_image), "[1, 2]", *good[4:]]
    lines.insert(5, json.dumps({k: v for k, v in json.loads(good[0]).items() if k != "text"}))
    group = list(enumerate(lines))
    answers = RowPredictor(pipeline, proba=True, data_root=data_dir)(group)
    assert [a["row"] for a in answers] == list(range(len(lines)))
    errors = {a["row"]: a for a in answers if "problem" in a}
    assert set(errors) == {2, 5, 6, 7}
    assert errors[2]["column"] is None and "not valid JSON" in errors[2]["problem"]
    assert errors[5]["column"] == "text" and "lacks" in errors[5]["problem"]
    assert errors[6]["column"] == "image" and errors[6]["problem"]
    assert errors[7]["column"] is None and "not an object" in errors[7]["problem"]
    ok = [a for a in answers if "prediction" in a]
    assert len(ok) == len(frame)
    expected = pipeline.predict(frame, data_root=data_dir)
    assert [a["prediction"] for a in ok] == list(expected)
    proba = pipeline.predict_proba(frame, data_root=data_dir)
    got = np.array([[a["probabilities"][str(c)] for c in proba.columns] for a in ok])
    np.testing.assert_allclose(got, proba.to_numpy(), atol=1e-4)


def test_batches_keep_line_numbers_skip_blank_lines_and_bound_the_group():
    lines = [f"l{i}\n" if i % 5 else "\n" for i in range(23)]
    groups = list(batches(iter(lines), max_batch=4, max_wait_s=0.01))
    assert all(1 <= len(g) <= 4 for g in groups)
    flat = [n for g in groups for n, _ in g]
    assert flat == [i for i in range(23) if i % 5]


def test_cli_stream_writes_one_json_line_per_row(run_dir, data_dir):
    frame = pd.read_csv(data_dir / "test.csv").drop(columns=["label"]).head(5)
    stdin = "\n".join([*_lines(frame)[:2], "oops", *_lines(frame)[2:]]) + "\n"
    result = CliRunner().invoke(
        app, ["predict", str(run_dir), "-", "--stream", "--data-root", str(data_dir), "--quiet"], input=stdin
    )
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["row"] for o in out] == list(range(6))
    assert out[2]["problem"] and out[2]["column"] is None
    assert all("prediction" in o for i, o in enumerate(out) if i != 2)


def test_cli_stream_needs_stdin_dash(run_dir, data_dir):
    result = CliRunner().invoke(app, ["predict", str(run_dir), str(data_dir / "test.csv"), "--stream"])
    assert result.exit_code == 2
    assert "predict RUN - --stream" in result.stderr
