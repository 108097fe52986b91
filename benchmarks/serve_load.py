"""Load test of `polymodal serve` on loopback: batch-1 serving vs micro-batching, torch vs ONNX vs ONNX int8.

    .venv/bin/python benchmarks/serve_load.py             # ~5 minutes on 2 CPU cores

For each configuration a server process (`polymodal serve`) is started on 127.0.0.1 at a free port, warmed up with
a few requests, then sent --requests requests of one AV-digits test row each (PNG and WAV base64-encoded in JSON)
by --concurrency concurrent keep-alive connections (a minimal asyncio HTTP/1.1 client, one process) — bounded by
count and by --max-seconds per configuration — and stopped. Only loopback addresses are used. Reported: throughput
(requests/s), latency p50/p95/p99 (ms), errors (anything but HTTP 200), the mean rows per model batch (from
/health), and the CPU time per request of the server process and of the load generator (from /proc and
time.process_time: on a machine shared with other jobs, wall-clock throughput moves with their load, CPU time per
request much less).

The load generator shares the machine's cores with the server, so it is kept cheap, to measure the server and not
itself: request bodies are encoded once before the clock starts (JSON with base64 files, bytes ready to send), and
requests go out on raw asyncio sockets (a minimal HTTP/1.1 keep-alive client, ~0.1 ms of CPU per request, where
httpx would cost a few ms), all from one process; its CPU time per request is reported next to the server's.

Model: the export directory written by benchmarks/deploy_onnx.py (benchmarks/results/deploy/export: model.onnx and a
static-int8 model.int8.onnx) when present, else the run it would use, exported here.
Writes benchmarks/results/serve_load.json and the serve_load section of docs/BENCHMARKS.md and docs/DEPLOYMENT.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _avdigits import ROOT, ensure_data
from _report import machine, write_section

EXPORT = ROOT / "benchmarks" / "results" / "deploy" / "export"
HOST = "127.0.0.1"  # loopback only


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def payloads(data: Path, n: int) -> list[bytes]:
    frame = pd.read_csv(data / "test.csv").head(n)
    enc = {}

    def b64(rel: str) -> str:
        if rel not in enc:
            enc[rel] = base64.b64encode((data / rel).read_bytes()).decode()
        return enc[rel]

    return [json.dumps({"rows": [{"image": b64(r.image), "audio": b64(r.audio)}]}).encode() for r in frame.itertuples()]


def start_server(model: Path, backend: str, max_batch: int, max_wait_ms: float, threads: int | None) -> tuple:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "polymodal.cli",
        "serve",
        str(model),
        "--host",
        HOST,
        "--port",
        str(port),
        "--backend",
        backend,
        "--max-batch",
        str(max_batch),
        "--max-wait-ms",
        str(max_wait_ms),
        "--quiet",
    ]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {' '.join(cmd)}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start within 120 s")


class Connection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams. httpx's AsyncClient costs a few ms of CPU per
    request, which on 2 shared cores throttles the load itself; this one costs ~0.1 ms (like wrk or hey would)."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        payload = await self.reader.readexactly(length)
        return int(status_line.split()[1]), payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


async def load(
    base: str, bodies: list[bytes], n: int, concurrency: int, max_seconds: float, server_pid: int | None = None
) -> dict:
    port = int(base.rsplit(":", 1)[1])
    latencies: list[float] = []
    errors = 0
    sent = 0
    stop_at = time.perf_counter() + max_seconds

    async def worker() -> None:
        nonlocal sent, errors
        conn = Connection(port)
        try:
            while sent < n and time.perf_counter() < stop_at:
                body = bodies[sent % len(bodies)]
                sent += 1
                t0 = time.perf_counter()
                try:
                    status, _ = await conn.post("/predict", body)
                    ok = status == 200
                except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                    ok = False
                    conn.close()
                    conn = Connection(port)
                latencies.append(time.perf_counter() - t0)
                errors += not ok
        finally:
            conn.close()

    before = httpx.get(f"{base}/health", timeout=10).json()
    server_cpu = cpu_seconds(server_pid) if server_pid else float("nan")
    client_cpu = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    client_cpu = time.process_time() - client_cpu
    server_cpu = (cpu_seconds(server_pid) if server_pid else float("nan")) - server_cpu
    health = httpx.get(f"{base}/health", timeout=10).json()
    batches, rows = health["batches"] - before["batches"], health["rows"] - before["rows"]
    lat = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(wall, 2),
        "throughput": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p95_ms": round(float(np.percentile(lat, 95)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "mean_batch_rows": round(rows / max(batches, 1), 1),
        "server_cpu_ms_per_request": round(server_cpu * 1000 / max(len(latencies), 1), 2),
        "client_cpu_ms_per_request": round(client_cpu * 1000 / max(len(latencies), 1), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "avdigits")
    ap.add_argument("--model", type=Path, default=None, help="run or export directory (default: see above)")
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-seconds", type=float, default=60.0, help="per configuration")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="server model threads (default 1: on 2 cores the other one decodes requests and runs the load generator)",
    )
    ap.add_argument("--backends", default="torch,onnx,onnx-int8")
    ap.add_argument(
        "--no-write",
        action="store_true",
        help="print the results only: write neither benchmarks/results/serve_load.json nor the docs' sections",
    )
    a = ap.parse_args()
    ensure_data(a.data)
    model = a.model or EXPORT
    if not (model / "model.safetensors").is_file():
        sys.exit(f"error: {model} is not a run/export directory; run benchmarks/deploy_onnx.py first or pass --model")
    bodies = payloads(a.data, 200)
    results = []
    for backend in a.backends.split(","):
        for max_batch in (1, a.max_batch):
            proc, base = start_server(model, backend, max_batch, a.max_wait_ms, a.threads)
            try:
                asyncio.run(load(base, bodies, 20, 4, 30))  # warm-up
                r = asyncio.run(load(base, bodies, a.requests, a.concurrency, a.max_seconds, proc.pid))
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            r = {"backend": backend, "max_batch": max_batch, **r}
            results.append(r)
            print(json.dumps(r), flush=True)
    record = {
        "machine": machine(),
        "model": str(model.relative_to(ROOT)) if model.is_relative_to(ROOT) else str(model),
        "concurrency": a.concurrency,
        "max_wait_ms": a.max_wait_ms,
        "threads": a.threads,
        "results": results,
    }
    body = report(record)
    print(body)
    if not a.no_write:
        out = ROOT / "benchmarks" / "results" / "serve_load.json"
        out.write_text(json.dumps(record, indent=2) + "\n")
        write_section(ROOT / "docs" / "BENCHMARKS.md", "serve_load", body)
        write_section(ROOT / "docs" / "DEPLOYMENT.md", "serve_load", body, title="# Deployment\n")


def report(r: dict) -> str:
    lines = [
        "## Serving: batch-1 vs micro-batching, torch vs ONNX vs ONNX int8 (load test on loopback)",
        "",
        "| backend | max batch | requests | errors | throughput (req/s) | p50 (ms) | p95 (ms) | p99 (ms) | "
        "rows per model batch | throughput vs batch-1 | server CPU ms/request | client CPU ms/request |",
        "|---" * 12 + "|",
    ]
    base = {x["backend"]: x["throughput"] for x in r["results"] if x["max_batch"] == 1}
    for x in r["results"]:
        ratio = x["throughput"] / base[x["backend"]] if base.get(x["backend"]) else float("nan")
        lines.append(
            f"| {x['backend']} | {x['max_batch']} | {x['requests']} | {x['errors']} | {x['throughput']:.1f} | "
            f"{x['p50_ms']:.1f} | {x['p95_ms']:.1f} | {x['p99_ms']:.1f} | {x['mean_batch_rows']:.1f} | "
            f"{ratio:.2f}× | {x.get('server_cpu_ms_per_request', float('nan')):.2f} | "
            f"{x.get('client_cpu_ms_per_request', float('nan')):.2f} |"
        )
    lines += [
        "",
        f"One AV-digits row (PNG + WAV, base64 JSON) per request, {r['concurrency']} concurrent keep-alive "
        f"connections from one asyncio process on the same machine, server and clients on loopback; max wait "
        f"{r['max_wait_ms']:g} ms; model threads {r['threads']}; model: `{r['model']}`. Measured by `python benchmarks/serve_load.py` on "
        f"{r['machine']}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
