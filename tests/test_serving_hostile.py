"""Issue 19, the server: hostile requests get a 4xx that names the problem, the work of a request is bounded by the
server's own limits (checked from file headers, before decoding), the decode pool refuses work past its queue (503),
slow bodies time out, disconnects log no traceback, and a busy port is a clear error."""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import free_port, stop, wait_until_serving
from fastapi.testclient import TestClient
from PIL import ImageFile
from test_bad_input import write_blank_png
from test_serving import json_rows

from polymodal import Predictor
from polymodal.serving import app as app_module
from polymodal.serving.app import create_app
from polymodal.serving.pool import Overloaded, WorkPool
from polymodal.serving.schemas import ServeConfig


@pytest.fixture(scope="module")
def predictor(run_dir):
    return Predictor.load(run_dir, verbose=False)


@pytest.fixture(scope="module")
def good_row(predictor, data_dir):
    frame = pd.read_csv(data_dir / "test.csv").head(3)
    rows = json_rows(frame, data_dir, predictor.schema.input_columns())
    return next(r for r in rows if r["image"] is not None and r["audio"] is not None)


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, ServeConfig(max_body_bytes=2_000_000, max_wait_ms=1))) as c:
        yield c


def _bad(client, status, *needles, **kwargs):
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    j = r.json()
    text = j["error"] + " " + " ".join(j["issues"])
    for n in needles:
        assert n in text, text
    return r


def _json(text: str):
    return {"content": text.encode(), "headers": {"content-type": "application/json"}}


# --- bug 6: the JSON parser's own limits are a 400, not a 500 -------------------------------------------------------


def test_5000_digit_integer_is_400(client, good_row):
    body = '{"rows": [{"reading": ' + "9" * 5000 + "}]}"
    _bad(client, 400, "number too long", **_json(body))


def test_json_nested_50000_deep_is_400(client):
    _bad(client, 400, "nested too deeply", **_json('{"rows": ' + "[" * 50_000 + "]" * 50_000 + "}"))
    _bad(
        client, 400, "nested too deeply", **_json('{"rows": [{"text": ' + '{"a":' * 50_000 + "1" + "}" * 50_001 + "]}")
    )


def test_huge_and_non_finite_numbers_are_422(client, good_row):
    big = "9" * 4000  # under Python's int-string limit: parsed, then refused by the row model
    for col in ("reading", "category", "text"):
        r = client.post("/predict", **_json('{"rows": [{' + f'"{col}": {big}' + "}]}"))
        assert r.status_code == 422, r.text
    for value in ("1e400", "-1e400", "NaN", "Infinity"):
        body = {**good_row, "reading": None}
        text = '{"rows": [' + __import__("json").dumps(body).replace('"reading": null', f'"reading": {value}') + "]}"
        _bad(client, 422, "field 'reading'", "finite number", **_json(text))


def test_large_finite_number_never_answers_null_probabilities(client, good_row):
    r = client.post("/predict", json={"rows": [{**good_row, "reading": 1e30}, good_row]})
    if r.status_code == 200:  # the numeric processor keeps it finite
        assert all(p is not None for x in r.json()["predictions"] for p in x["probabilities"].values())
    else:
        _bad(client, 422, "row 0: non-finite model output", json={"rows": [{**good_row, "reading": 1e30}, good_row]})
        assert "row 1" not in r.text


# --- serving limits, from the headers ---------------------------------------------------------------------------


def test_39_megapixel_png_in_6kb_is_413_before_decoding(client, good_row, tmp_path, monkeypatch):
    png = tmp_path / "big.png"
    write_blank_png(png, 6300, 6300)  # 39.7 M pixels: under the training limit (40 M), over the server's (4 M)
    assert png.stat().st_size < 50_000
    decoded = []
    original = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or original(self))
    data = base64.b64encode(png.read_bytes()).decode()
    _bad(
        client,
        413,
        "row 0, column 'image'",
        "39,690,000 pixels",
        "max_image_pixels",
        json={"rows": [{**good_row, "image": data}]},
    )
    _bad(client, 413, "max_image_pixels", files={"image": ("big.png", png.read_bytes())})
    assert (6300, 6300) not in decoded  # refused from the header, never decoded


def _wav(seconds: float, rate: int = 1000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * rate), dtype=np.float32), rate, format="WAV", subtype="PCM_U8")
    return buf.getvalue()


def test_long_audio_is_413_naming_the_limit(client, good_row):
    data = base64.b64encode(_wav(61)).decode()
    _bad(
        client,
        413,
        "row 0, column 'audio'",
        "61.0 s",
        "max_audio_seconds",
        json={"rows": [{**good_row, "audio": data}]},
    )
    ok = base64.b64encode(_wav(2)).decode()
    assert client.post("/predict", json={"rows": [{**good_row, "audio": ok}]}).status_code == 200


def test_decoded_bytes_per_request_is_413(predictor, good_row):
    cfg = ServeConfig(max_decoded_bytes=10_000, max_wait_ms=1)
    with TestClient(create_app(predictor, cfg)) as c:
        _bad(c, 413, "max_decoded_bytes", json={"rows": [good_row] * 8})
        assert c.post("/predict", json={"rows": [{**good_row, "image": None, "audio": None}]}).status_code == 200


# --- malformed multipart ------------------------------------------------------------------------------------------


PART = b'Content-Disposition: form-data; name="text"\r\n\r\nhi'


@pytest.mark.parametrize(
    "body, ctype, needle",
    [
        (b"--x--\r\n", "boundary=x", "no fields"),  # no parts: was accepted as an all-absent row
        (b"garbage", "boundary=x", "malformed"),  # no boundary at all: was an all-absent row too
        (b"", "boundary=x", "malformed"),
        (b"--x\r\n" + PART, "boundary=x", "malformed"),  # truncated: no closing boundary
        (b"--x\r\n" + PART + b"\r\n--x--\r\n", "", "no boundary"),
        (b"--y\r\n" + PART + b"\r\n--y--\r\n", "boundary=x", "malformed"),  # another boundary
    ],
)
def test_malformed_multipart_is_400(client, body, ctype, needle):
    _bad(client, 400, needle, content=body, headers={"content-type": f"multipart/form-data; {ctype}".strip("; ")})


def test_empty_form_is_400(client):
    _bad(client, 400, "no fields", content=b"", headers={"content-type": "application/x-www-form-urlencoded"})


# --- the bounded decode pool ----------------------------------------------------------------------------------------


def test_work_pool_refuses_past_its_queue():
    import asyncio

    release = threading.Event()

    async def main():
        pool = WorkPool(workers=1, max_queue=1)
        first = asyncio.ensure_future(pool.run(release.wait, 10))
        second = asyncio.ensure_future(pool.run(lambda: 2))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as e:
            await pool.run(lambda: 3)
        assert e.value.status == 503 and e.value.headers == {"Retry-After": "1"}
        release.set()
        assert await first is True and await second == 2
        assert pool.pending == 0
        assert await pool.run(lambda: 4) == 4  # room again
        pool.shutdown()

    asyncio.run(main())


def test_full_pool_is_503_with_retry_after_and_slow_request_times_out(predictor, good_row, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real = app_module.check_work

    def slow_check(*args):
        entered.set()
        release.wait(20)
        return real(*args)

    monkeypatch.setattr(app_module, "check_work", slow_check)
    cfg = ServeConfig(decode_workers=1, max_queue=0, request_timeout_s=60, max_wait_ms=1)
    row = {**good_row, "image": None, "audio": None}
    with TestClient(create_app(predictor, cfg)) as c:
        results = []
        t = threading.Thread(target=lambda: results.append(c.post("/predict", json={"rows": [row]})))
        t.start()
        assert entered.wait(20)
        r = _bad(c, 503, "busy", "max_queue=0", json={"rows": [row]})
        assert r.headers["retry-after"] == "1"
        release.set()
        t.join(30)
        assert results[0].status_code == 200
    entered.clear()
    release.clear()
    cfg = ServeConfig(request_timeout_s=0.3, max_wait_ms=1)
    with TestClient(create_app(predictor, cfg)) as c:
        r = _bad(c, 504, "--request-timeout", json={"rows": [row]})
        assert "retry-after" in r.headers
        release.set()


# --- a real server: slow bodies, disconnects, a busy port ----------------------------------------------------------


def _raw(port: int, head: bytes, body: bytes, read: bool) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head + body)
        if not read:
            return b""
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_real_server_slow_body_disconnect_and_busy_port(run_dir, cli):
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "polymodal.cli", "serve", str(run_dir), "--port", str(port), "--threads", "1"]
    proc = subprocess.Popen(
        [*cmd, "--request-timeout", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(proc, base)
        head = (
            b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        # a body that stalls: answered 408 once body_timeout_s passes, the connection not held forever
        answer = _raw(port, head, b'{"rows": [', read=True)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"body_timeout_s" in answer
        # clients that go away mid-body
        for _ in range(3):
            _raw(port, head, b'{"rows": [', read=False)
        time.sleep(1.5)
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200

        # the port is busy now: a second server says so and exits 2, without announcing itself
        second = subprocess.run([*cmd], capture_output=True, text=True, env=env, timeout=120)
        assert second.returncode == 2, second.stderr
        assert f"port {port} on 127.0.0.1 is already in use" in second.stderr and "--port" in second.stderr
        assert "serving" not in second.stderr
    finally:
        stop(proc)
    log = proc.stderr.read().decode()
    assert "Traceback" not in log and "ClientDisconnect" not in log, log
