"""Schema-driven API test (issue 19, acceptance 3): requests generated from the server's own OpenAPI document, valid
and mutated (wrong types, extra and missing fields, huge numbers, deep nesting, bad files, bad content types, raw
bytes), never get a 5xx. schemathesis is not a dependency; this is the same idea with hypothesis: a small
JSON-schema → strategy function for the schema features the app's documents use.

``POLYMODAL_FUZZ_EXAMPLES`` raises the number of examples (benchmarks/serve_fuzz.py runs it with many)."""

from __future__ import annotations

import base64
import io
import json
import os
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from polymodal import Predictor
from polymodal.serving.app import create_app
from polymodal.serving.schemas import ServeConfig

EXAMPLES = int(os.environ.get("POLYMODAL_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
)


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _wav() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.sin(np.arange(800) / 9).astype(np.float32), 8000, format="WAV")
    return buf.getvalue()


SAMPLES = {"image": _png(), "audio": _wav()}


def mutated(data: bytes) -> st.SearchStrategy[bytes]:
    """A valid file, cut short, with bytes flipped, or replaced by random bytes."""
    return st.one_of(
        st.just(data),
        st.integers(0, len(data)).map(lambda n: data[:n]),
        st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), min_size=1, max_size=8).map(
            lambda flips: bytes(_flip(bytearray(data), flips))
        ),
        st.binary(max_size=200),
    )


def _flip(buf: bytearray, flips: list[tuple[int, int]]) -> bytearray:
    for i, v in flips:
        buf[i] = v
    return buf


def file_kind(schema: dict[str, Any]) -> str | None:
    desc = schema.get("description", "")
    return next((k for k in SAMPLES if desc.startswith(k + ":")), None)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid for ``schema``: object, array, string, number, integer, boolean, null, anyOf, and the image/audio
    columns' base64 strings (valid files, mutated ones)."""
    kind = file_kind(schema)
    if "anyOf" in schema:
        subs = [{**s, "description": schema.get("description", "")} for s in schema["anyOf"]]
        return st.one_of(*[from_schema(s) for s in subs])
    t = schema.get("type")
    if t == "object":
        props = schema.get("properties", {})
        return st.fixed_dictionaries({k: from_schema(v) for k, v in props.items()})
    if t == "array":
        return st.lists(
            from_schema(schema.get("items", {})),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 4), 4),
        )
    if t == "string" and kind:
        return mutated(SAMPLES[kind]).map(lambda b: base64.b64encode(b).decode())
    if t == "string":
        return st.text(max_size=40)
    if t == "number":
        return st.floats(allow_nan=False, allow_infinity=False, width=32) | st.sampled_from([1e30, -1e300, 1e308])
    if t == "integer":
        return st.integers(-(10**30), 10**30)
    if t == "boolean":
        return st.booleans()
    if t == "null":
        return st.none()
    return json_values()


def json_values() -> st.SearchStrategy[Any]:
    leaf = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20)
    )
    return st.recursive(leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3))


def mutate(doc: Any) -> st.SearchStrategy[Any]:
    """A valid document with one thing wrong: a value of another type, a field added or removed."""
    rows = doc["rows"]

    def change(draw_value: Any, i: int, key: str, how: str) -> dict:
        new = json.loads(json.dumps(doc))
        row = new["rows"][i]
        if how == "drop":
            row.pop(key, None)
        elif how == "extra":
            row[key + "_extra"] = draw_value
        else:
            row[key] = draw_value
        return new

    keys = sorted(rows[0])
    return st.builds(
        change,
        json_values(),
        st.integers(0, len(rows) - 1),
        st.sampled_from(keys),
        st.sampled_from(["drop", "extra", "retype"]),
    )


def raw_bodies() -> st.SearchStrategy[tuple[bytes, str]]:
    """Bodies no schema describes: deep nesting, long numbers, bad bytes, with good and bad content types."""
    depth = st.integers(1, 60_000)
    texts = st.one_of(
        depth.map(lambda d: '{"rows": ' + "[" * d + "]" * d + "}"),
        st.integers(1, 9000).map(lambda n: '{"rows": [{"reading": ' + "7" * n + "}]}"),
        st.sampled_from(['{"rows": [{"reading": NaN}]}', '{"rows": null}', "[]", "null", '"rows"', "{}", "1e999999"]),
        st.text(max_size=60),
    )
    ctypes = st.sampled_from(
        [
            "application/json",
            "application/json; charset=latin-1",
            "text/plain",
            "",
            "multipart/form-data",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded",
            "application/octet-stream",
        ]
    )
    return st.tuples(st.one_of(texts.map(str.encode), st.binary(max_size=300)), ctypes)


@pytest.fixture(scope="module")
def api(run_dir):
    app = create_app(Predictor.load(run_dir, verbose=False), ServeConfig(max_wait_ms=0, max_body_bytes=2_000_000))
    with TestClient(app) as client:
        spec = client.get("/openapi.json").json()
        yield client, spec["paths"]["/predict"]["post"]["requestBody"]["content"]


SENT = {"requests": 0}


@pytest.fixture(autouse=True)
def _count_requests():
    """benchmarks/serve_fuzz.py reads how many requests were sent from POLYMODAL_FUZZ_COUNT_FILE."""
    yield
    if path := os.environ.get("POLYMODAL_FUZZ_COUNT_FILE"):
        with open(path, "w", encoding="utf-8") as f:
            f.write(str(SENT["requests"]))


def _no_5xx(response, sent: Any) -> None:
    SENT["requests"] += 1
    assert response.status_code < 500, (response.status_code, response.text[:500], repr(sent)[:500])
    if response.status_code >= 400:
        assert response.json()["error"]  # every refusal says why
    else:  # an answer is a real one: no null probabilities standing for NaN
        for p in response.json()["predictions"]:
            assert None not in (p["probabilities"] or {}).values(), (p, repr(sent)[:500])


def test_generated_json_requests_get_no_5xx(api):
    client, content = api
    docs = from_schema(content["application/json"]["schema"])

    @FUZZ
    @given(st.one_of(docs, docs.flatmap(mutate)))
    def check(doc):
        _no_5xx(client.post("/predict", json=doc), doc)

    check()


def test_generated_multipart_requests_get_no_5xx(api):
    client, content = api
    props = content["multipart/form-data"]["schema"]["properties"]
    files = {c: s for c, s in props.items() if s.get("format") == "binary"}
    fields = {c: s for c, s in props.items() if c not in files}
    kinds = dict(zip(files, ["image", "audio"] if list(files) == ["image", "audio"] else ["image"] * len(files)))

    @FUZZ
    @given(
        st.fixed_dictionaries({}, optional={c: st.text(max_size=30) for c in fields}),
        st.fixed_dictionaries({}, optional={c: mutated(SAMPLES[kinds[c]]) for c in files}),
        st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=2),
    )
    def check(form, parts, extra):
        data = {**form, **extra}
        if not data and not parts:
            return
        _no_5xx(client.post("/predict", data=data, files={k: ("f", v) for k, v in parts.items()}), (data, parts))

    check()


def test_raw_bodies_and_content_types_get_no_5xx(api):
    client, _ = api

    @FUZZ
    @given(raw_bodies())
    def check(sent):
        body, ctype = sent
        headers = {"content-type": ctype} if ctype else {}
        _no_5xx(client.post("/predict", content=body, headers=headers), sent)

    check()
