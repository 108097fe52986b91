"""The server's guard, an ASGI middleware in front of every route: API keys (401), a per-client request rate and
concurrency limit (429), the request metrics (``/metrics``) and an optional JSON access log.

Pure ASGI rather than Starlette's BaseHTTPMiddleware: that one buffers streamed responses, which would defeat
``/predict/stream``. Keys are compared with :func:`hmac.compare_digest` against every configured key (no early
exit), so the time taken says nothing about how close a guess was. ``/health`` stays open (load balancers probe it
without credentials); everything else, ``/metrics`` and the API docs included, needs a key when keys are set.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .metrics import ServerMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/health"})
#: routes named in metrics and logs; any other path counts as "other" (clients must not create series at will)
ROUTES = frozenset({"/predict", "/predict/stream", "/health", "/metadata", "/metrics", "/docs", "/openapi.json"})
access_log = logging.getLogger("polymodal.access")


def load_api_keys(path: str | Path) -> list[bytes]:
    """The keys in ``path``, one per line (blank lines and lines starting with ``#`` ignored)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read the API key file {p}: {e.strerror or e}; pass a readable file") from None
    keys = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if not keys:
        raise ConfigError(f"the API key file {p} holds no keys: write one key per line")
    short = [i for i, k in enumerate(keys, 1) if len(k) < 16]
    if short:
        raise ConfigError(
            f"the API key file {p} has keys shorter than 16 characters (key {short[0]}); use long random keys, "
            "e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return [k.encode() for k in keys]


def parse_rate(value: str) -> tuple[float, float]:
    """``"N/s"``, ``"N/min"`` or ``"N/h"`` as (requests per second, burst): a client may send N requests at once,
    then one per 1/rate seconds (a token bucket holding N)."""
    count, _, unit = value.strip().partition("/")
    per = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}
    try:
        n = float(count)
    except ValueError:
        n = math.nan
    if unit.strip().lower() not in per or not math.isfinite(n) or n <= 0:
        raise ValueError(f"rate limit '{value}' is not of the form N/s, N/min or N/h with N > 0 (e.g. 20/s)")
    return n / per[unit.strip().lower()], max(1.0, n)


class _Bucket:
    __slots__ = ("active", "stamp", "tokens")

    def __init__(self, tokens: float, stamp: float):
        self.tokens, self.stamp, self.active = tokens, stamp, 0


class Guard:
    """Wraps the app: authentication, per-client limits, metrics and the access log for every HTTP request."""

    MAX_CLIENTS = 10_000  # buckets kept (least recently seen dropped first): memory stays bounded

    def __init__(
        self,
        app: ASGIApp,
        metrics: ServerMetrics,
        keys: list[bytes] | None = None,
        rate: tuple[float, float] | None = None,
        client_concurrency: int | None = None,
        json_log: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.app, self.metrics, self.keys = app, metrics, keys or []
        self.rate, self.burst = rate if rate is not None else (0.0, 0.0)
        self.client_concurrency, self.json_log, self.clock = client_concurrency, json_log, clock
        self._clients: OrderedDict[str, _Bucket] = OrderedDict()

    def _key(self, scope: Scope) -> bytes | None:
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer ":
            return auth[7:].strip()
        return headers.get(b"x-api-key", b"").strip() or None

    def _authorized(self, given: bytes | None) -> bool:
        ok = False
        for key in self.keys:  # every key is compared: the time does not depend on which one matched
            ok |= hmac.compare_digest(given or b"", key)
        return ok and given is not None

    def _client(self, scope: Scope, given: bytes | None) -> str:
        if given is not None and self.keys:  # limits follow the key, not the address (clients behind one proxy)
            return "key:" + hmac.new(b"polymodal", given, "sha256").hexdigest()[:16]
        client = scope.get("client")
        return f"ip:{client[0]}" if client else "ip:unknown"

    def _bucket(self, client: str) -> _Bucket:
        b = self._clients.get(client)
        if b is None:
            b = self._clients[client] = _Bucket(self.burst, self.clock())
            while len(self._clients) > self.MAX_CLIENTS:
                oldest = next(iter(self._clients))
                if self._clients[oldest].active:
                    break
                del self._clients[oldest]
        self._clients.move_to_end(client)
        return b

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope.get("path", "")
        route = path if path in ROUTES else "other"
        status = 500
        given = self._key(scope)

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        bucket: _Bucket | None = None
        try:
            if self.keys and path not in OPEN_PATHS and not self._authorized(given):
                self.metrics.reject("unauthorized")
                await _refuse(
                    sending,
                    401,
                    "missing or wrong API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                    {"www-authenticate": "Bearer"},
                )
                return
            if path not in OPEN_PATHS and (self.rate or self.client_concurrency):
                bucket = self._bucket(self._client(scope, given))
                refusal = self._limit(bucket)
                if refusal is not None:
                    self.metrics.reject(refusal[0])
                    await _refuse(sending, 429, refusal[1], {"retry-after": str(refusal[2])})
                    bucket = None
                    return
                bucket.active += 1
            await self.app(scope, receive, sending)
        finally:
            if bucket is not None:
                bucket.active -= 1
            seconds = time.perf_counter() - start
            self.metrics.request(route, status, seconds)
            if self.json_log:
                client = scope.get("client")
                access_log.info(
                    json.dumps(
                        {
                            "time": round(time.time(), 3),
                            "client": client[0] if client else None,
                            "method": scope.get("method"),
                            "path": path,
                            "status": status,
                            "duration_ms": round(seconds * 1000, 2),
                        }
                    )
                )

    def _limit(self, bucket: _Bucket) -> tuple[str, str, int] | None:
        if self.client_concurrency is not None and bucket.active >= self.client_concurrency:
            return (
                "too_many_concurrent",
                f"too many concurrent requests from this client (at most {self.client_concurrency}; "
                "--client-concurrency); wait for one to finish",
                1,
            )
        if self.rate:
            now = self.clock()
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
            if bucket.tokens < 1.0:
                wait = math.ceil((1.0 - bucket.tokens) / self.rate)
                return (
                    "rate_limited",
                    f"rate limit exceeded ({_rate(self.rate)}; --rate-limit); retry after {wait} s",
                    max(1, wait),
                )
            bucket.tokens -= 1.0
        return None


def _rate(per_s: float) -> str:
    return f"{per_s:g}/s" if per_s >= 1 else f"{per_s * 60:g}/min"


async def _refuse(send: Send, status: int, message: str, headers: dict[str, str]) -> None:
    body = json.dumps({"error": message, "issues": []}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
