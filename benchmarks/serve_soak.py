"""Soak test of `polymodal serve` on loopback (issue 19, acceptance 4): zero 5xx and flat memory under a long mix of
valid, invalid and oversized requests.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_soak.py                # 10 minutes
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_soak.py --minutes 3

A tiny model is fitted on a generated demo table (seconds), served by a `polymodal serve` process on 127.0.0.1 at a
free port, and sent requests by --clients concurrent keep-alive clients (httpx, one thread each) until --minutes
have passed; then the server is stopped. Only loopback addresses are used; the loop is bounded by time.

The mix (weights in MIX): valid JSON rows (1-8 per request), valid multipart rows, invalid requests (bad JSON, a
misspelt field, a wrong type, a 5,000-digit number, JSON nested 50,000 deep, a path instead of a file, an
undecodable file, malformed multipart, an unsupported content type) and oversized ones (a 39.7 M-pixel PNG of 40 kB,
61 s of audio, a body over --max-body-mb, too many rows). Every answer is counted by status; latency p50/p99 per
kind; the server's RSS (psutil when installed, else /proc/PID/status) sampled every --sample-s seconds.

Asserts (exit 1 otherwise): no 5xx, no transport error, and the RSS at the end within 10% of the RSS after warm-up
(--warmup-fraction of the run). Writes benchmarks/results/serve_soak.json, docs/figures/serve_soak.png and the
serve_soak section of docs/DEPLOYMENT.md.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section

from polymodal import Predictor
from polymodal.datasets.synthetic import make_demo
from polymodal.plotting import png_bytes, subplots

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
PLOT = ROOT / "docs" / "figures" / "serve_soak.png"
HOST = "127.0.0.1"  # loopback only
CONFIG = {
    "training": {"max_epochs": 2, "batch_size": 16},
    "encoders": {
        "image": {"name": "image_cnn", "width": 8, "dim": 16, "stages": 2},
        "audio": {"name": "audio_cnn", "width": 8, "dim": 16, "stages": 2},
        "text": {"name": "text_rnn", "hidden": 16, "embedding_dim": 16, "dim": 16},
        "tabular": {"name": "tabular_mlp", "hidden": 16, "dim": 16},
    },
    "fusion": {"dim": 32},
}
MIX = {"valid_json": 45, "valid_multipart": 10, "invalid": 30, "large": 15}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def rss_bytes(pid: int) -> int:
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("cannot read the server's RSS")


def blank_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of any size in a few kB (a decompression bomb for the server's pixel limit)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def long_wav(seconds: float) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * 1000), dtype=np.float32), 1000, format="WAV", subtype="PCM_U8")
    return buf.getvalue()


class Requests:
    """The request mix: (kind, expected status family, httpx request kwargs)."""

    def __init__(self, data: Path, frame: pd.DataFrame, max_body: int):
        self.rows, self.files = [], []
        for r in frame.itertuples():
            row = {"text": r.text if isinstance(r.text, str) else None, "region": r.region}
            row["reading"] = None if pd.isna(r.reading) else float(r.reading)
            files = {}
            for c in ("image", "audio"):
                v = getattr(r, c)
                files[c] = (data / v).read_bytes() if isinstance(v, str) else None
                row[c] = None if files[c] is None else base64.b64encode(files[c]).decode()
            self.rows.append(row)
            self.files.append(files)
        good = self.rows[0]
        bomb = base64.b64encode(blank_png(6300, 6300)).decode()
        long = base64.b64encode(long_wav(61)).decode()
        j = {"content-type": "application/json"}
        self.invalid = [
            {"content": b'{"rows": [', "headers": j},
            {"json": {"rows": [{**good, "txet": "x"}]}},
            {"json": {"rows": [{**good, "reading": "high"}]}},
            {"content": ('{"rows": [{"reading": ' + "9" * 5000 + "}]}").encode(), "headers": j},
            {"content": ('{"rows": ' + "[" * 50_000 + "]" * 50_000 + "}").encode(), "headers": j},
            {"json": {"rows": [{**good, "image": "images/train_00001.png"}]}},
            {"json": {"rows": [{**good, "audio": base64.b64encode(b"RIFF0000WAVEjunk").decode()}]}},
            {"content": b"--x--\r\n", "headers": {"content-type": "multipart/form-data; boundary=x"}},
            {"content": b"garbage", "headers": {"content-type": "multipart/form-data; boundary=x"}},
            {"content": b"hello", "headers": {"content-type": "text/plain"}},
        ]
        self.large = [
            {"json": {"rows": [{**good, "image": bomb}]}},
            {"json": {"rows": [{**good, "audio": long}]}},
            {"content": b"x" * (max_body + 1), "headers": j},
            {"json": {"rows": [{**good, "image": None, "audio": None}] * 65}},
        ]

    def draw(self, rng: random.Random) -> tuple[str, dict]:
        kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
        if kind == "valid_json":
            return kind, {"json": {"rows": rng.sample(self.rows, rng.randint(1, 8))}}
        if kind == "valid_multipart":
            i = rng.randrange(len(self.rows))
            row, files = self.rows[i], self.files[i]
            fields = {c: str(row[c]) for c in ("text", "reading", "region") if row[c] is not None}
            parts = {c: (c, b) for c, b in files.items() if b is not None}
            return kind, {"data": fields, "files": parts} if parts else {"data": fields or {"text": ""}}
        return kind, rng.choice(self.invalid if kind == "invalid" else self.large)


def client_loop(base: str, reqs: Requests, seed: int, until: float, log: list, lock: threading.Lock) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=base, timeout=60) as client:
        while time.monotonic() < until:
            kind, kwargs = reqs.draw(rng)
            t0 = time.perf_counter()
            try:
                status = client.post("/predict", **kwargs).status_code
            except httpx.TransportError as e:
                status = f"transport:{type(e).__name__}"
            with lock:
                log.append((time.monotonic(), kind, status, time.perf_counter() - t0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="how long to send requests (default 10)")
    ap.add_argument("--clients", type=int, default=4, help="concurrent keep-alive clients")
    ap.add_argument("--sample-s", type=float, default=2.0, help="seconds between RSS samples")
    ap.add_argument("--warmup-fraction", type=float, default=0.2, help="share of the run before the reference RSS")
    ap.add_argument("--max-body-mb", type=float, default=2.0, help="the server's body limit")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/DEPLOYMENT.md")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="serve_soak_"))
    paths = make_demo(work / "data", n_train=160, n_test=40, seed=0)
    print("fitting a tiny model ...", flush=True)
    run = Predictor("label", config=CONFIG, verbose=False, seed=0, preset="fast").fit(paths.train).save(work / "run")
    port = free_port()
    cmd = [sys.executable, "-m", "polymodal.cli", "serve", str(run), "--host", HOST, "--port", str(port)]
    cmd += ["--threads", "1", "--max-body-mb", str(args.max_body_mb), "--quiet"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise SystemExit(f"the server exited: {server.stderr.read().decode() if server.stderr else ''}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start within 120 s")
            time.sleep(0.3)
        reqs = Requests(paths.root, pd.read_csv(paths.test), int(args.max_body_mb * 1_000_000))
        start = time.monotonic()
        until = start + args.minutes * 60
        log: list = []
        lock = threading.Lock()
        threads = [
            threading.Thread(target=client_loop, args=(base, reqs, seed, until, log, lock), daemon=True)
            for seed in range(args.clients)
        ]
        load_before = os.getloadavg()
        for t in threads:
            t.start()
        rss: list[tuple[float, int]] = []
        while time.monotonic() < until:
            rss.append((time.monotonic() - start, rss_bytes(server.pid)))
            time.sleep(min(args.sample_s, max(0.0, until - time.monotonic())))
        for t in threads:
            t.join(120)
        rss.append((time.monotonic() - start, rss_bytes(server.pid)))
        load_after = os.getloadavg()
        health = httpx.get(f"{base}/health", timeout=10).json()
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    server_log = server.stderr.read().decode() if server.stderr else ""

    statuses = Counter(str(s) for _, _, s, _ in log)
    by_kind: dict[str, Counter] = defaultdict(Counter)
    lat: dict[str, list[float]] = defaultdict(list)
    for _, kind, status, seconds in log:
        by_kind[kind][str(status)] += 1
        lat[kind].append(seconds)
    all_lat = [s for _, _, _, s in log]
    warm_t = args.minutes * 60 * args.warmup_fraction
    warm_rss = next(b for t, b in rss if t >= warm_t)
    end_rss = rss[-1][1]
    five = sum(n for s, n in statuses.items() if s.startswith("5"))
    transport = sum(n for s, n in statuses.items() if s.startswith("transport"))
    result = {
        "minutes": args.minutes,
        "clients": args.clients,
        "requests": len(log),
        "requests_per_s": len(log) / (args.minutes * 60),
        "statuses": dict(sorted(statuses.items())),
        "by_kind": {k: dict(sorted(v.items())) for k, v in by_kind.items()},
        "latency_ms": {
            k: {"p50": 1000 * float(np.percentile(v, 50)), "p99": 1000 * float(np.percentile(v, 99))}
            for k, v in [("all", all_lat), *sorted(lat.items())]
        },
        "rss_mb": [[round(t, 1), round(b / 1e6, 1)] for t, b in rss],
        "rss_after_warmup_mb": warm_rss / 1e6,
        "rss_end_mb": end_rss / 1e6,
        "rss_change": end_rss / warm_rss - 1,
        "server_5xx": five,
        "transport_errors": transport,
        "server_tracebacks": server_log.count("Traceback"),
        "health": health,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "machine": machine(),
        "date": date.today().isoformat(),
        "command": "python benchmarks/serve_soak.py --minutes " + f"{args.minutes:g}",
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "serve_soak.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot(result, log, start, PLOT)
    if not args.no_docs:
        write_docs(result)
    print(json.dumps({k: v for k, v in result.items() if k != "rss_mb"}, indent=2))
    ok = five == 0 and transport == 0 and abs(result["rss_change"]) <= 0.10
    print("PASS" if ok else "FAIL", f"5xx={five} transport={transport} rss change={result['rss_change']:+.1%}")
    return 0 if ok else 1


def plot(result: dict, log: list, start: float, path: Path) -> None:
    fig, (ax1, ax2) = subplots(2, 1, figsize=(8, 6), sharex=True)
    t, mb = zip(*result["rss_mb"])
    ax1.plot(t, mb, color="tab:blue")
    ax1.axvline(result["minutes"] * 60 * 0.2, color="grey", ls=":", label="end of warm-up")
    ax1.set_ylabel("server RSS (MB)")
    ax1.set_ylim(0, max(mb) * 1.2)
    ax1.legend(loc="lower right")
    ax1.set_title(f"polymodal serve soak: {result['requests']:,} requests, {result['server_5xx']} 5xx")
    times = np.array([x[0] - start for x in log])
    secs = np.array([x[3] for x in log]) * 1000
    edges = np.arange(0, result["minutes"] * 60 + 10, 10)
    idx = np.digitize(times, edges)
    mids, p50, p99 = [], [], []
    for i in np.unique(idx):
        sel = secs[idx == i]
        mids.append(edges[i - 1] + 5)
        p50.append(np.percentile(sel, 50))
        p99.append(np.percentile(sel, 99))
    ax2.plot(mids, p50, label="p50")
    ax2.plot(mids, p99, label="p99")
    ax2.set_yscale("log")
    ax2.set_ylabel("latency per 10 s (ms)")
    ax2.set_xlabel("seconds since start")
    ax2.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(fig))


def write_docs(r: dict) -> None:
    lines = [
        "| kind | requests | statuses | p50 (ms) | p99 (ms) |",
        "| --- | ---: | --- | ---: | ---: |",
    ]
    for kind, counts in sorted(r["by_kind"].items()):
        lat = r["latency_ms"][kind]
        st = ", ".join(f"{s}: {n}" for s, n in counts.items())
        lines.append(f"| {kind} | {sum(counts.values()):,} | {st} | {lat['p50']:.0f} | {lat['p99']:.0f} |")
    a = r["latency_ms"]["all"]
    lines.append(f"| all | {r['requests']:,} | 5xx: {r['server_5xx']} | {a['p50']:.0f} | {a['p99']:.0f} |")
    body = (
        f"{r['minutes']:g} minutes, {r['clients']} concurrent keep-alive clients on loopback, "
        f"{r['requests']:,} requests ({r['requests_per_s']:.1f}/s): **{r['server_5xx']} 5xx**, "
        f"{r['transport_errors']} transport errors, {r['server_tracebacks']} tracebacks in the server's log. "
        f"Server RSS {r['rss_after_warmup_mb']:.0f} MB after warm-up, {r['rss_end_mb']:.0f} MB at the end "
        f"({r['rss_change']:+.1%}).\n\n" + "\n".join(lines) + "\n\n![soak](figures/serve_soak.png)\n\n"
        f"Measured by `{r['command']}` on {r['machine']}; load average (1/5/15 min) "
        f"{'/'.join(f'{x:.2f}' for x in r['load_average_before'])} before, "
        f"{'/'.join(f'{x:.2f}' for x in r['load_average_after'])} after (a shared machine)."
    )
    write_section(ROOT / "docs" / "DEPLOYMENT.md", "serve_soak", body, title="# Deployment\n")


if __name__ == "__main__":
    raise SystemExit(main())
