"""The server's guard and metrics: API keys (401/200), per-client rate and concurrency limits (429), CORS off by
default, no internal details in a 500, /metrics in Prometheus text format, and POST /predict/stream (NDJSON)."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from test_serving import json_rows

from polymodal.errors import ConfigError
from polymodal.pipeline import FittedPipeline
from polymodal.serving import app as app_module
from polymodal.serving.app import create_app
from polymodal.serving.metrics import ServerMetrics
from polymodal.serving.schemas import ServeConfig
from polymodal.serving.security import Guard, load_api_keys, parse_rate

KEY = "k-0123456789abcdef-first"
OTHER = "k-0123456789abcdef-second"


@pytest.fixture(scope="module")
def pipeline(run_dir) -> FittedPipeline:
    return FittedPipeline.load(run_dir, verbose=False)


@pytest.fixture(scope="module")
def rows(pipeline, data_dir) -> list[dict]:
    frame = pd.read_csv(data_dir / "test.csv").head(4)
    return json_rows(frame, data_dir, pipeline.schema.input_columns())


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text(f"# serving keys\n{KEY}\n\n{OTHER}\n", encoding="utf-8")
    return path


# --- a strict parser of the Prometheus text exposition format (0.0.4) ---------------------------------------------
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(rf"^({_NAME})(\{{(?:{_LABEL})(?:,{_LABEL})*\}})? (-?(?:[0-9.e+-]+|\+Inf|-Inf|NaN))$")
_META = re.compile(rf"^# (HELP|TYPE) ({_NAME}) (.+)$")


def parse_prometheus(text: str) -> dict[str, dict[str, float]]:
    """{metric family: {sample name + labels: value}}; raises on any line that is not valid exposition text, a
    sample of an undeclared family, or a histogram whose buckets are not cumulative."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    families: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            m = _META.match(line)
            assert m, f"bad comment line: {line!r}"
            if m.group(1) == "TYPE":
                assert m.group(3) in ("counter", "gauge", "histogram", "summary", "untyped"), line
                types[m.group(2)] = m.group(3)
            continue
        m = _SAMPLE.match(line)
        assert m, f"bad sample line: {line!r}"
        name = m.group(1)
        family = next((f for f in types if name == f or (types[f] == "histogram" and name.startswith(f + "_"))), None)
        assert family is not None, f"sample of an undeclared family: {line!r}"
        families.setdefault(family, {})[name + (m.group(2) or "")] = float(m.group(3))
    for family, kind in types.items():
        if kind == "histogram":
            buckets = [v for k, v in families.get(family, {}).items() if "_bucket{" in k]
            assert buckets == sorted(buckets) or len({k.split('le="')[0] for k in families[family]}) > 1
    return families


def test_api_keys_401_without_200_with_either_header(pipeline, rows, key_file):
    cfg = ServeConfig(api_key_file=str(key_file), max_wait_ms=1)
    with TestClient(create_app(pipeline, cfg)) as c:
        assert c.get("/health").status_code == 200  # probes need no key
        for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789"}, {"X-API-Key": KEY[:-1]}):
            r = c.post("/predict", json={"rows": rows[:1]}, headers=headers)
            assert r.status_code == 401 and "API key" in r.json()["error"]
            assert r.headers["www-authenticate"] == "Bearer"
        assert c.get("/metadata").status_code == 401 and c.get("/metrics").status_code == 401
        r = c.post("/predict", json={"rows": rows[:1]}, headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 200 and len(r.json()["predictions"]) == 1
        assert c.post("/predict", json={"rows": rows[:1]}, headers={"X-API-Key": OTHER}).status_code == 200
        metrics = parse_prometheus(c.get("/metrics", headers={"X-API-Key": KEY}).text)
        assert metrics["polymodal_rejected_total"]['polymodal_rejected_total{reason="unauthorized"}'] == 5


def test_bad_key_files_are_config_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ConfigError, match="holds no keys"):
        load_api_keys(empty)
    short = tmp_path / "short.txt"
    short.write_text("abc\n")
    with pytest.raises(ConfigError, match="shorter than 16"):
        load_api_keys(short)
    with pytest.raises(ConfigError, match="cannot read"):
        load_api_keys(tmp_path / "missing.txt")


def test_rate_limit_429_with_retry_after_per_client(pipeline, rows, key_file):
    cfg = ServeConfig(api_key_file=str(key_file), rate_limit="2/min", max_wait_ms=1)
    with TestClient(create_app(pipeline, cfg)) as c:
        first = {"X-API-Key": KEY}
        codes = [c.post("/predict", json={"rows": rows[:1]}, headers=first).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = c.post("/predict", json={"rows": rows[:1]}, headers=first)
        assert r.status_code == 429 and "--rate-limit" in r.json()["error"] and int(r.headers["retry-after"]) >= 1
        # another key is another client
        assert c.post("/predict", json={"rows": rows[:1]}, headers={"X-API-Key": OTHER}).status_code == 200
        assert c.get("/health").status_code == 200  # never limited


def test_rate_specs():
    assert parse_rate("20/s") == (20.0, 20.0)
    assert parse_rate("120/min") == (2.0, 120.0)
    for bad in ("10", "0/s", "-1/min", "x/s", "5/day", "nan/s"):
        with pytest.raises(ValueError, match="N/s, N/min or N/h"):
            parse_rate(bad)
    with pytest.raises(ValueError, match="rate limit"):
        ServeConfig(rate_limit="fast")


def test_client_concurrency_limit_is_429():
    release = asyncio.Event()

    async def slow_app(scope, receive, send):
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    guard = Guard(slow_app, ServerMetrics(), client_concurrency=1)

    async def main():
        transport = httpx.ASGITransport(app=guard)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            first = asyncio.create_task(client.get("/predict"))
            await asyncio.sleep(0.05)
            second = await client.get("/predict")
            release.set()
            return (await first).status_code, second

    first, second = asyncio.run(main())
    assert first == 200 and second.status_code == 429 and "--client-concurrency" in second.json()["error"]


def test_cors_off_by_default_and_on_for_named_origins(pipeline):
    origin = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(pipeline, ServeConfig())) as c:
        r = c.get("/health", headers=origin)
        assert "access-control-allow-origin" not in r.headers
        assert c.options("/predict", headers=origin).status_code == 405
    with TestClient(create_app(pipeline, ServeConfig(cors_origins=["https://app.example"]))) as c:
        assert c.get("/health", headers=origin).headers["access-control-allow-origin"] == "https://app.example"
        assert c.options("/predict", headers=origin).status_code == 200
        other = c.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_unexpected_errors_leak_nothing(pipeline, rows, monkeypatch):
    def broken(*args):
        raise ValueError("secret detail /home/user/model")

    monkeypatch.setattr(app_module, "check_work", broken)
    with TestClient(create_app(pipeline, ServeConfig(max_wait_ms=1)), raise_server_exceptions=False) as c:
        r = c.post("/predict", json={"rows": rows[:1]})
    assert r.status_code == 500
    assert "secret" not in r.text and "Traceback" not in r.text and "incident" in r.json()["error"]


def test_metrics_count_requests_latency_and_batches(pipeline, rows):
    with TestClient(create_app(pipeline, ServeConfig(max_wait_ms=1))) as c:
        for _ in range(2):
            assert c.post("/predict", json={"rows": rows[:3]}).status_code == 200
        assert c.post("/predict", json={"rows": []}).status_code == 422
        c.get("/no-such-route")
        r = c.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    m = parse_prometheus(r.text)
    req = m["polymodal_requests_total"]
    assert req['polymodal_requests_total{route="/predict",status="200"}'] == 2
    assert req['polymodal_requests_total{route="/predict",status="422"}'] == 1
    assert req['polymodal_requests_total{route="other",status="404"}'] == 1
    lat = m["polymodal_request_duration_seconds"]
    assert lat['polymodal_request_duration_seconds_count{route="/predict"}'] == 3
    assert lat['polymodal_request_duration_seconds_bucket{route="/predict",le="+Inf"}'] == 3
    batches = m["polymodal_batch_rows"]
    assert batches["polymodal_batch_rows_count"] == 2 and batches["polymodal_batch_rows_sum"] == 6
    assert batches['polymodal_batch_rows_bucket{le="2"}'] == 0 and batches['polymodal_batch_rows_bucket{le="4"}'] == 2


def test_predict_stream_ndjson_in_order_with_error_objects(pipeline, rows):
    with TestClient(create_app(pipeline, ServeConfig(max_wait_ms=1))) as c:
        expected = c.post("/predict", json={"rows": rows}).json()["predictions"]
        bad_cell = dict(rows[0], image="not base64!")
        lines = [json.dumps(rows[0]), "{broken", json.dumps(rows[1]), "", json.dumps(bad_cell), json.dumps(rows[2])]

        def body():
            for line in lines:  # a chunked body, a line at a time
                yield (line + "\n").encode()

        r = c.post("/predict/stream", content=body(), headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    out = [json.loads(line) for line in r.text.splitlines()]
    assert [o["row"] for o in out] == [0, 1, 2, 4, 5]  # the blank line 3 is skipped, numbers kept
    assert out[1]["column"] is None and "JSON" in out[1]["problem"]
    assert out[3]["column"] == "image" and "base64" in out[3]["problem"]
    for o, e in zip([out[0], out[2], out[4]], expected[:3]):
        assert o["prediction"] == e["prediction"]
        assert o["probabilities"] == pytest.approx(e["probabilities"], abs=1e-5)


def test_serve_cli_refuses_bad_security_options(cli, run_dir, tmp_path):
    r = cli("serve", run_dir, "--api-key-file", tmp_path / "missing.txt", "--port", "0", "--quiet")
    assert r.exit_code == 2 and "cannot read the API key file" in r.stderr
    r = cli("serve", run_dir, "--rate-limit", "fast", "--port", "0", "--quiet")
    assert r.exit_code == 2 and "N/s, N/min or N/h" in r.stderr
    r = cli("serve", run_dir, "--access-log", "xml", "--port", "0", "--quiet")
    assert r.exit_code == 2 and "access_log" in r.stderr


def test_predict_stream_over_long_line_is_one_error_object(pipeline, rows):
    cfg = ServeConfig(max_wait_ms=1, max_body_bytes=200_000)
    with TestClient(create_app(pipeline, cfg)) as c:

        def body():
            yield (json.dumps(rows[0]) + "\n").encode()
            yield b'{"text": "' + b"x" * 150_000
            yield b"y" * 150_000  # the same line goes on past the limit
            yield b"z" * 150_000 + b'"}\n'
            yield (json.dumps(rows[1]) + "\n").encode()

        r = c.post("/predict/stream", content=body(), headers={"content-type": "application/x-ndjson"})
    out = [json.loads(line) for line in r.text.splitlines()]
    assert [o["row"] for o in out] == [0, 1, 2]
    assert "prediction" in out[0] and "prediction" in out[2]
    assert "longer than 200,000 bytes" in out[1]["problem"]
