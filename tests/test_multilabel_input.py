"""List-valued cells: in the label they are a multi-label target (see test_multilabel.py); where a single-label model
or an input column meets them, a message says what to do, never a raw TypeError."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from polymodal import Predictor
from polymodal.config import PolymodalConfig
from polymodal.errors import SchemaError
from polymodal.fitting import resolve_task
from polymodal.schema import infer_schema, tag_separator_warning


def _frame(label: list) -> pd.DataFrame:
    return pd.DataFrame({"label": label, "x": [float(i) for i in range(len(label))]})


@pytest.mark.parametrize(
    "labels",
    [
        [["a", "b"], ["c"]] * 6,  # list cells (a DataFrame, a JSONL file)
        ['["a", "b"]', '["c"]'] * 6,  # JSON-list strings (a CSV)
    ],
)
@pytest.mark.parametrize("problem_type", ["binary", "multiclass", "regression"])
def test_list_labels_of_a_single_label_model_are_a_schema_error(labels, problem_type):
    with pytest.raises(SchemaError, match=r"label column 'label' holds lists.*--problem-type multilabel"):
        Predictor("label", problem_type=problem_type, verbose=False).fit(_frame(labels))


def test_list_cells_in_an_input_column_are_a_schema_error():
    frame = _frame(["a", "b"] * 6).assign(tags=[["red", "big"], ["blue"]] * 6)
    with pytest.raises(SchemaError, match=r"column 'tags' holds lists \(row 0: \['red', 'big'\]\).*--ignore"):
        infer_schema(frame, "label")
    with pytest.raises(SchemaError, match="column 'tags'.*make the column the label"):
        infer_schema(frame, "label", overrides={"tags": "text"})
    assert infer_schema(frame, "label", ignore=["tags"]).kinds()["tags"].value == "ignore"


def test_tags_joined_by_another_separator_are_a_warning(caplog):
    tags = pd.Series(["a;b", "c;d", "a", "b;c", "d;a"] * 3, name="label")
    assert "set task.tag_separator to ';'" in tag_separator_warning(tags)
    assert tag_separator_warning(tags, separator=";") is None  # the configured separator: a multi-label model
    assert tag_separator_warning(pd.Series(["cat", "dog", "a;b"] * 3, name="y")) is None
    assert tag_separator_warning(pd.Series([1.0, 2.0], name="y")) is None
    frame = _frame(list(tags))
    with caplog.at_level(logging.WARNING, logger="polymodal"):
        task = resolve_task(PolymodalConfig(), frame["label"], infer_schema(frame, "label"))
    assert task.problem_type == "multiclass"  # learned as combined classes, as before: a warning, not an error
    assert "learned as one class of its own" in caplog.text
    cfg = PolymodalConfig.model_validate({"task": {"tag_separator": ";"}})
    assert resolve_task(cfg, frame["label"], infer_schema(frame, "label")).problem_type == "multilabel"


def test_cli_infers_and_accepts_multilabel(cli, tmp_path):
    frame = _frame(["a|b", "b", "a", "[]", "b|c", "c|a"] * 6)
    frame.to_csv(tmp_path / "t.csv", index=False)
    r = cli("info", tmp_path / "t.csv", "--label", "label")
    assert r.exit_code == 0 and "multilabel" in r.stdout  # (the table wraps its cells at the terminal's width)
    (tmp_path / "c.yaml").write_text("training: {max_epochs: 1}\n")
    r = cli(
        "fit", tmp_path / "t.csv", "--label", "label", "--out", tmp_path / "run", "--problem-type", "multi-label",
        "--config", tmp_path / "c.yaml", "--quiet",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert Predictor.load(tmp_path / "run", verbose=False).problem_type == "multilabel"
