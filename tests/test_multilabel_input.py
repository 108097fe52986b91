"""Multi-label input (lists of tags) is refused with a message that says what to do, never a raw TypeError."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from polymodal import Predictor
from polymodal.config import PolymodalConfig
from polymodal.errors import ConfigError, SchemaError
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
def test_list_labels_are_a_schema_error(labels):
    with pytest.raises(SchemaError, match=r"label column 'label' holds lists.*not supported yet.*one binary column"):
        Predictor("label", verbose=False).fit(_frame(labels))
    with pytest.raises(SchemaError, match="--problem-type multiclass"):
        infer_schema(_frame(labels), "label")


def test_list_cells_in_an_input_column_are_a_schema_error():
    frame = _frame(["a", "b"] * 6).assign(tags=[["red", "big"], ["blue"]] * 6)
    with pytest.raises(SchemaError, match=r"column 'tags' holds lists \(row 0: \['red', 'big'\]\).*--ignore"):
        infer_schema(frame, "label")
    with pytest.raises(SchemaError, match="column 'tags'"):
        infer_schema(frame, "label", overrides={"tags": "text"})
    assert infer_schema(frame, "label", ignore=["tags"]).kinds()["tags"].value == "ignore"


def test_joined_tags_in_the_label_are_a_warning(caplog):
    tags = pd.Series(["a;b", "c;d", "a", "b;c"] * 3, name="label")
    assert "75% of the values of label 'label' contain ';'" in tag_separator_warning(tags)
    assert tag_separator_warning(pd.Series(["a|b", "c|d", "e"] * 3, name="y")) is not None
    assert tag_separator_warning(pd.Series(["cat", "dog", "a;b"] * 3, name="y")) is None
    assert tag_separator_warning(pd.Series([1.0, 2.0], name="y")) is None
    frame = _frame(list(tags))
    with caplog.at_level(logging.WARNING, logger="polymodal"):
        task = resolve_task(PolymodalConfig(), frame["label"], infer_schema(frame, "label"))
    assert task.problem_type == "multiclass"  # learned as combined classes, as before: a warning, not an error
    assert "learned as one class of its own" in caplog.text


@pytest.mark.parametrize("name", ["multilabel", "multi-label", "multi_label"])
def test_problem_type_multilabel_is_a_config_error(name):
    for make in (
        lambda: Predictor("label", problem_type=name),
        lambda: Predictor("label", config={"task": {"problem_type": name}}),
    ):
        with pytest.raises(ConfigError, match=r"not supported yet.*binary, multiclass, regression and generation") as e:
            make()
        assert "pydantic" not in str(e.value)


def test_cli_problem_type_multilabel_exits_2(cli, train_csv, tmp_path):
    r = cli("fit", train_csv, "--label", "label", "--out", tmp_path / "run", "--problem-type", "multilabel")
    assert r.exit_code == 2 and "not supported yet" in " ".join(r.stderr.split())
