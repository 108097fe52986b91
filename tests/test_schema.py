"""Column-kind inference (with reasons), overrides, ignore, and problem-type inference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polymodal.errors import SchemaError
from polymodal.schema import ColumnKind, Schema, infer_column, infer_problem_type, infer_schema


@pytest.fixture
def mixed() -> pd.DataFrame:
    n = 60
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "photo": [f"img/{i}.png" for i in range(n)],
            "clip": [f"snd/{i}.WAV" for i in range(n)],
            "review": [f"the item number {i} was quite good and arrived {['late', 'early'][i % 2]}" for i in range(n)],
            "price": rng.normal(10, 3, n),
            "colour": [["red", "green", "blue"][i % 3] for i in range(n)],
            "stars": [i % 5 + 1 for i in range(n)],
            "id": [f"id{i:04d}" for i in range(n)],
            "constant": [7] * n,
            "blank": [None] * n,
            "label": ["a", "b"] * (n // 2),
        }
    )


def test_infers_every_kind_with_a_reason(mixed):
    schema = infer_schema(mixed, "label")
    kinds = schema.kinds()
    assert kinds == {
        "photo": ColumnKind.IMAGE,
        "clip": ColumnKind.AUDIO,
        "review": ColumnKind.TEXT,
        "price": ColumnKind.NUMERIC,
        "colour": ColumnKind.CATEGORY,
        "stars": ColumnKind.CATEGORY,
        "id": ColumnKind.IGNORE,
        "constant": ColumnKind.IGNORE,
        "blank": ColumnKind.IGNORE,
    }
    reasons = {c.name: c.reason for c in schema.columns}
    assert "paths ending in" in reasons["photo"] and ".png" in reasons["photo"]
    assert ".wav" in reasons["clip"]
    assert "free text" in reasons["review"]
    assert "numbers" in reasons["price"]
    assert "distinct values" in reasons["colour"]
    assert "integers with only 5 distinct values" in reasons["stars"]
    assert "identifier" in reasons["id"]
    assert "constant" in reasons["constant"]
    assert "empty" in reasons["blank"]
    assert "label" not in kinds


def test_modalities_group_tabular_columns(mixed):
    schema = infer_schema(mixed, "label")
    mods = {m.name: m for m in schema.modalities()}
    assert set(mods) == {"photo", "clip", "review", "tabular"}
    assert mods["photo"].kind == "image" and mods["clip"].kind == "audio" and mods["review"].kind == "text"
    assert mods["tabular"].kind == "tabular"
    assert set(mods["tabular"].columns) == {"price", "colour", "stars"}
    assert set(schema.input_columns()) == {"photo", "clip", "review", "price", "colour", "stars"}


def test_overrides_and_ignore_win(mixed):
    schema = infer_schema(mixed, "label", overrides={"stars": "numeric", "id": "text"}, ignore=["price"])
    kinds = schema.kinds()
    assert kinds["stars"] is ColumnKind.NUMERIC and kinds["id"] is ColumnKind.TEXT
    assert kinds["price"] is ColumnKind.IGNORE
    reasons = {c.name: c.reason for c in schema.columns}
    assert reasons["stars"] == "set in config" and reasons["price"] == "listed in ignore"


def test_override_naming_an_absent_column_is_an_error(mixed):
    with pytest.raises(SchemaError, match="nope"):
        infer_schema(mixed, "label", overrides={"nope": "text"})


def test_absent_label_is_an_error_listing_columns(mixed):
    with pytest.raises(SchemaError) as e:
        infer_schema(mixed, "target")
    assert "'target'" in str(e.value) and "photo" in str(e.value)


def test_numeric_strings_are_numeric():
    s = pd.Series([f"{x:.2f}" for x in np.linspace(0, 10, 40)], name="v")
    spec = infer_column(s)
    assert spec.kind is ColumnKind.NUMERIC and "parse as numbers" in spec.reason


def test_boolean_is_category():
    spec = infer_column(pd.Series([True, False] * 10, name="flag"))
    assert spec.kind is ColumnKind.CATEGORY and spec.reason == "boolean values"


def test_schema_json_round_trip(mixed):
    schema = infer_schema(mixed, "label")
    import json

    again = Schema.from_dict(json.loads(schema.to_json()))
    assert again == schema


@pytest.mark.parametrize(
    "values, expected",
    [
        (["yes", "no", "yes", "no"], "binary"),
        ([0, 1, 1, 0, 1], "binary"),
        (["cat", "dog", "bird", "cat"], "multiclass"),
        ([0, 1, 2, 3, 2, 1], "multiclass"),
        ([0.5, 1.25, 3.0, 2.2], "regression"),
        (list(range(50)), "regression"),
    ],
)
def test_problem_type(values, expected):
    kind, reason = infer_problem_type(pd.Series(values))
    assert kind == expected
    assert reason


def test_problem_type_ignores_nan():
    assert infer_problem_type(pd.Series(["a", None, "b", np.nan]))[0] == "binary"
