"""Serving speed path: the micro-batcher's decode stage decodes queued requests as a group, pipelined with the model;
rows decoded and run together answer exactly as rows sent one at a time, and one bad request of a group fails
alone."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from test_serving import json_rows

from polymodal import Predictor
from polymodal.serving.app import create_app
from polymodal.serving.batcher import MicroBatcher
from polymodal.serving.schemas import ServeConfig


@pytest.fixture(scope="module")
def predictor(run_dir):
    return Predictor.load(run_dir, verbose=False)


@pytest.fixture(scope="module")
def table(predictor, data_dir):
    """Test rows without their text: the text encoder pads to the longest text of its batch, which moves outputs by
    ~1e-3 with the batch's make-up (a property of the model, as in Predictor.predict); with no text every row's
    output is the same in any batch, so a difference could only come from decoding."""
    frame = pd.read_csv(data_dir / "test.csv").head(12).assign(text=None)
    return frame, json_rows(frame, data_dir, predictor.schema.input_columns())


def _post_all(client: TestClient, bodies: list[dict]) -> list:
    """All bodies at once, from as many threads, so that they queue together."""
    with ThreadPoolExecutor(len(bodies)) as ex:
        return list(ex.map(lambda b: client.post("/predict", json=b), bodies))


def test_rows_decoded_together_equal_rows_one_at_a_time(predictor, table, data_dir):
    frame, rows = table
    one_by_one = []
    with TestClient(create_app(predictor, ServeConfig(max_batch=1, max_wait_ms=1))) as c:
        for r in rows:
            resp = c.post("/predict", json={"rows": [r]})
            assert resp.status_code == 200, resp.text
            one_by_one += resp.json()["predictions"]
        assert c.get("/health").json()["batches"] == len(rows)
    # a long wait: the concurrent one-row requests are decoded as groups and merged into few model batches
    with TestClient(create_app(predictor, ServeConfig(max_batch=32, max_wait_ms=300))) as c:
        responses = _post_all(c, [{"rows": [r]} for r in rows])
        health = c.get("/health").json()
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    together = [r.json()["predictions"][0] for r in responses]
    assert health["requests"] == len(rows) and health["rows"] == len(rows)
    assert health["batches"] < len(rows), health  # grouped, or this test would not compare batched decoding
    assert [p["prediction"] for p in together] == [p["prediction"] for p in one_by_one]
    for a, b in zip(together, one_by_one):
        assert a["probabilities"].keys() == b["probabilities"].keys()
        np.testing.assert_allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-5)
    # and both are what the Python API predicts for the table
    assert [p["prediction"] for p in together] == predictor.predict(frame, data_root=data_dir).tolist()


def test_bad_request_in_a_decode_group_fails_alone(predictor, table):
    _, rows = table
    good = [r for r in rows if r["image"] is not None][:5]
    bad = {**good[0], "image": base64.b64encode(b"\x89PNG\r\n\x1a\nnot really a png").decode()}
    bodies = [{"rows": [r]} for r in good] + [{"rows": [bad]}]
    with TestClient(create_app(predictor, ServeConfig(max_batch=32, max_wait_ms=300))) as c:
        alone = [c.post("/predict", json=b).json() for b in bodies[:-1]]
        responses = _post_all(c, bodies)
    assert [r.status_code for r in responses] == [200] * len(good) + [422]
    assert "row 0" in responses[-1].text and "image" in responses[-1].text
    for r, a in zip(responses[:-1], alone):
        got, want = r.json()["predictions"][0], a["predictions"][0]
        assert got["prediction"] == want["prediction"]
        np.testing.assert_allclose(list(got["probabilities"].values()), list(want["probabilities"].values()), atol=1e-5)


def test_batcher_prepares_groups_and_merges_them_into_model_batches():
    prepared_groups: list[int] = []
    model_batches: list[int] = []
    threads: set[str] = set()

    def prepare(items: list[int]) -> list[object]:
        prepared_groups.append(len(items))
        threads.add(threading.current_thread().name)
        return [ValueError(f"bad {i}") if i == 7 else [i] * (1 + i % 2) for i in items]  # 1 or 2 rows per item

    def run(items: list[list[int]]) -> list[int]:
        model_batches.append(sum(len(x) for x in items))
        time.sleep(0.02)  # the next group is prepared meanwhile
        return [sum(x) for x in items]

    async def main() -> list:
        b: MicroBatcher = MicroBatcher(run, max_batch=4, max_wait_ms=20, size=len, prepare=prepare)
        await b.start()
        try:
            out = await asyncio.gather(*(b.submit(i) for i in range(10)), return_exceptions=True)
            assert b.preparing == 0
            assert await b.submit([5, 5], prepared=True) == 10  # already prepared: straight to the model stage
            return out
        finally:
            await b.stop()

    out = asyncio.run(main())
    assert isinstance(out[7], ValueError) and str(out[7]) == "bad 7"
    assert [o for i, o in enumerate(out) if i != 7] == [i * (1 + i % 2) for i in range(10) if i != 7]
    assert max(model_batches) <= 4 and sum(model_batches) == sum(1 + i % 2 for i in range(10) if i != 7) + 2
    assert len(prepared_groups) < 10 and threads == {next(iter(threads))}  # groups, on one decode thread


def test_each_uploaded_header_is_parsed_once(predictor, table, data_dir, monkeypatch):
    """The server checks a file's header against its limits before decoding it, and the loader reads it again while
    decoding: an upload's header is parsed once for both (InMemoryFile.headers)."""
    import soundfile as sf

    from polymodal.data import loaders
    from polymodal.serving.payload import check_work, decode_rows, parse_json_rows
    from polymodal.serving.schemas import row_model

    calls = {"audio": 0, "image": 0}
    real_info, real_image = sf.info, loaders._read_image_header

    def info(*a, **k):
        calls["audio"] += 1
        return real_info(*a, **k)

    def image_header(*a, **k):
        calls["image"] += 1
        return real_image(*a, **k)

    monkeypatch.setattr(loaders.sf, "info", info)
    monkeypatch.setattr(loaders, "_read_image_header", image_header)
    schema, pipeline = predictor.schema, predictor.pipeline
    body = json.dumps({"rows": table[1][:3]}).encode()
    rows = parse_json_rows(body, row_model(schema), schema, 10)
    check_work(rows, schema, pipeline.config.limits, ServeConfig())
    decoded = decode_rows(rows, pipeline.processors, pipeline.config.limits)
    kinds = schema.kinds()
    files = {
        k: sum(isinstance(r[c], loaders.InMemoryFile) for r in rows for c in schema.input_columns() if kinds[c] == k)
        for k in calls
    }
    assert files["audio"] > 0 and files["image"] > 0
    assert calls == files  # one parse per file, not one per check
    media = [m for m, p in pipeline.processors.items() if p.kind in calls]
    assert all(item is not None for m in media for item in decoded.items[m])  # and every file decoded
