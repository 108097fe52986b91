"""The model server: valid requests match Predictor.predict; every bad request is a 4xx with a message; a real
uvicorn process on loopback; micro-batching groups concurrent requests."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import free_port, stop, wait_until_serving
from fastapi.testclient import TestClient
from test_bad_input import write_blank_png

from polymodal import Predictor
from polymodal.serving.app import create_app
from polymodal.serving.batcher import MicroBatcher
from polymodal.serving.schemas import ServeConfig

FILE_COLS = ("image", "audio")


def json_rows(frame: pd.DataFrame, root: Path, columns: list[str]) -> list[dict]:
    """Table rows as the JSON API takes them: files base64-encoded, NaN as null."""
    rows = []
    for _, r in frame.iterrows():
        row = {}
        for c in columns:
            v = r[c]
            if pd.isna(v):
                row[c] = None
            elif c in FILE_COLS:
                row[c] = base64.b64encode((root / v).read_bytes()).decode()
            else:
                row[c] = v.item() if hasattr(v, "item") else v
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def served(run_dir):
    """A predictor loaded from the shared run, and a client on its app (small body limit for the 413 test)."""
    p = Predictor.load(run_dir, verbose=False)
    app = create_app(p, ServeConfig(max_body_bytes=300_000, max_rows=40, max_wait_ms=2))
    with TestClient(app) as client:
        yield p, client


@pytest.fixture(scope="module")
def rows(served, data_dir):
    p, _ = served
    frame = pd.read_csv(data_dir / "test.csv").head(8)
    return frame, json_rows(frame, data_dir, p.schema.input_columns())


def test_valid_json_request_equals_predictor_predict(served, rows, data_dir):
    p, client = served
    frame, body = rows
    r = client.post("/predict", json={"rows": body})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    expected = p.predict(frame, data_root=data_dir)
    assert [x["prediction"] for x in preds] == expected.tolist()
    proba = p.predict_proba(frame, data_root=data_dir)
    got = np.array([[x["probabilities"][str(c)] for c in proba.columns] for x in preds])
    np.testing.assert_allclose(got, proba.to_numpy(), atol=1e-6)


def test_multipart_request_equals_json(served, rows, data_dir):
    p, client = served
    frame, body = rows
    r0 = frame.iloc[0]
    files = {c: (f"{c}.bin", (data_dir / r0[c]).read_bytes()) for c in FILE_COLS if isinstance(r0[c], str)}
    fields = {c: str(r0[c]) for c in p.schema.input_columns() if c not in FILE_COLS and not pd.isna(r0[c])}
    r = client.post("/predict", data=fields, files=files)
    assert r.status_code == 200, r.text
    j = client.post("/predict", json={"rows": body[:1]}).json()
    assert r.json()["predictions"][0]["prediction"] == j["predictions"][0]["prediction"]
    np.testing.assert_allclose(
        list(r.json()["predictions"][0]["probabilities"].values()),
        list(j["predictions"][0]["probabilities"].values()),
        atol=1e-6,
    )


def test_health_metadata_and_docs(served):
    p, client = served
    assert client.get("/health").json()["status"] == "ok"
    meta = client.get("/metadata").json()
    assert meta["classes"] == list(p.task.classes) and meta["label"] == "label"
    assert [c["name"] for c in meta["columns"]] == p.schema.input_columns()
    assert {c["kind"] for c in meta["columns"]} == {"image", "audio", "text", "numeric", "category"}
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)


def _bad(client, status: int, *needles: str, **kwargs):
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    j = r.json()
    text = j["error"] + " " + " ".join(j["issues"])
    for n in needles:
        assert n in text, text
    return j


def test_missing_extra_and_wrong_type_fields(served, rows):
    _, client = served
    good = rows[1][0]
    row = {k: v for k, v in good.items() if k != "text"}
    _bad(client, 422, "row 0, field 'text': Field required", json={"rows": [row]})
    _bad(client, 422, "row 0, field 'colour': Extra inputs are not permitted", json={"rows": [{**good, "colour": 1}]})
    _bad(client, 422, "row 1, field 'reading'", json={"rows": [good, {**good, "reading": "high"}]})
    _bad(client, 422, "row 0", json={"rows": ["not an object"]})
    _bad(client, 422, "'rows' is empty", json={"rows": []})
    _bad(client, 422, '{"rows"', json={"data": [good]})
    _bad(client, 413, "at most 40", json={"rows": [{**good, "image": None, "audio": None}] * 41})


def test_bad_bodies_and_content_types(served):
    _, client = served
    _bad(client, 400, "not valid JSON", content=b"{rows: ", headers={"content-type": "application/json"})
    _bad(client, 415, "unsupported content type 'text/plain'", content=b"hello", headers={"content-type": "text/plain"})
    _bad(client, 400, "multipart", content=b"garbage", headers={"content-type": "multipart/form-data; boundary=x"})


def test_undecodable_files_and_paths_are_refused(served, rows, data_dir):
    _p, client = served
    good = rows[1][0]
    _bad(client, 422, "row 0, field 'image': not valid base64", json={"rows": [{**good, "image": "images/a_1.png"}]})
    # A string that happens to be valid base64 is decoded as bytes, never opened as a path.
    path = str(data_dir / rows[0].iloc[0]["image"])
    assert Path(path).is_file()
    _bad(
        client,
        422,
        "row 0, column 'image': not a readable image",
        json={"rows": [{**good, "image": base64.b64encode(path.encode()).decode()}]},
    )
    _bad(
        client,
        422,
        "column 'audio': not a readable audio file",
        json={"rows": [{**good, "audio": base64.b64encode(b"RIFF0000WAVEjunk").decode()}]},
    )
    # multipart: a path in a text field of a file column is refused, not read
    _bad(client, 422, "field 'image': a file column needs a file part", data={"image": path, "text": "hi"})
    _bad(client, 422, "only image, audio and video columns take a file part", files={"text": ("t.txt", b"hi")})
    _bad(client, 422, "not an input column", data={"colour": "red"})


def test_decompression_bomb_is_a_4xx(served, rows, tmp_path):
    _, client = served
    bomb = tmp_path / "bomb.png"
    write_blank_png(bomb, 10_000, 10_000)  # 100 M pixels in a few kB: over the 40 M default limit
    assert bomb.stat().st_size < 100_000
    good = rows[1][0]
    _bad(
        client,
        422,
        "column 'image'",
        "decompression bomb",
        json={"rows": [{**good, "image": base64.b64encode(bomb.read_bytes()).decode()}]},
    )
    _bad(client, 422, "decompression bomb", files={"image": ("b.png", bomb.read_bytes())})


def test_body_over_the_limit_is_413(served, rows):
    _, client = served
    big = {"rows": [{**rows[1][0], "text": "x" * 400_000}]}
    _bad(client, 413, "over the limit of 300,000 bytes", json=big)

    def chunks():  # no content-length: the limit applies while streaming
        for _ in range(40):
            yield b"x" * 10_000

    _bad(client, 413, "over the limit", content=chunks(), headers={"content-type": "application/json"})
    assert client.get("/health").status_code == 200  # still serving


def test_microbatcher_groups_concurrent_requests():
    calls: list[int] = []

    def run(items: list[int]) -> list[int]:
        calls.append(len(items))
        time.sleep(0.01)
        return [i * 10 for i in items]

    async def main() -> list[int]:
        b: MicroBatcher[int, int] = MicroBatcher(run, max_batch=4, max_wait_ms=50)
        await b.start()
        try:
            return await asyncio.gather(*(b.submit(i) for i in range(10)))
        finally:
            await b.stop()

    assert asyncio.run(main()) == [i * 10 for i in range(10)]
    assert max(calls) == 4 and sum(calls) == 10 and len(calls) < 10


def test_microbatcher_batch_one_and_errors():
    def run(items: list[int]) -> list[int]:
        if 3 in items:
            raise ValueError("boom")
        return items

    async def main():
        b: MicroBatcher[int, int] = MicroBatcher(run, max_batch=1, max_wait_ms=5)
        await b.start()
        try:
            return await asyncio.gather(*(b.submit(i) for i in range(5)), return_exceptions=True)
        finally:
            await b.stop()

    out = asyncio.run(main())
    assert out[:3] == [0, 1, 2] and isinstance(out[3], ValueError) and out[4] == 4


def test_real_uvicorn_process_on_loopback(run_dir, rows, data_dir):
    """`polymodal serve` in its own process, on 127.0.0.1 only; stopped at the end whatever happens."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "polymodal.cli",
            "serve",
            str(run_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--threads",
            "1",
            "--max-body-mb",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(proc, base)
        frame, body = rows
        r = httpx.post(f"{base}/predict", json={"rows": body}, timeout=30)
        assert r.status_code == 200, r.text
        p = Predictor.load(run_dir, verbose=False)
        assert [x["prediction"] for x in r.json()["predictions"]] == p.predict(frame, data_root=data_dir).tolist()
        r = httpx.post(
            f"{base}/predict", content=b"x" * 1_100_000, headers={"content-type": "application/json"}, timeout=30
        )
        assert r.status_code == 413 and "over the limit" in r.json()["error"]
        r = httpx.post(f"{base}/predict", json={"rows": [{"nope": 1}]}, timeout=30)
        assert r.status_code == 422
    finally:
        stop(proc)


def test_serve_cli_rejects_bad_options(cli, run_dir):
    r = cli("serve", run_dir, "--max-batch", "0")
    assert r.exit_code == 2 and "max_batch" in r.stderr
    r = cli("serve", run_dir, "--backend", "tensorrt")
    assert r.exit_code == 2 and "unknown backend 'tensorrt'" in r.stderr
