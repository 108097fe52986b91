"""``GET /metrics``: the server's counters in the Prometheus text exposition format (version 0.0.4).

Written here rather than with prometheus-client: three metric families do not justify a dependency, and the
format is small. Label values are bounded (known routes, HTTP status codes), so the series count stays bounded
whatever the clients send. Updated from the event loop and the model thread, hence the lock.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Histogram:
    """Cumulative buckets, sum and count, as Prometheus histograms are exposed."""

    def __init__(self, buckets: Sequence[float]):
        self.bounds = tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.n += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            running += count
            le = "+Inf" if bound == float("inf") else _num(bound)
            out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {running}')
        braces = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{braces} {_num(self.total)}")
        out.append(f"{name}_count{braces} {self.n}")
        return out


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class ServerMetrics:
    """Requests by route and status, request latency by route, and the rows of each model batch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.batch_rows = Histogram(BATCH_BUCKETS)
        self.rejected: dict[str, int] = defaultdict(int)

    def request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, status)] += 1
            self.latency.setdefault(route, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def batch(self, rows: int) -> None:
        with self._lock:
            self.batch_rows.observe(rows)

    def reject(self, reason: str) -> None:
        """A request refused before the app saw it (``unauthorized``, ``rate_limited``, ``too_many_concurrent``)."""
        with self._lock:
            self.rejected[reason] += 1

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP polymodal_requests_total HTTP requests answered, by route and status code.",
                "# TYPE polymodal_requests_total counter",
            ]
            for (route, status), n in sorted(self.requests.items()):
                lines.append(f'polymodal_requests_total{{route="{_escape(route)}",status="{status}"}} {n}')
            lines += [
                "# HELP polymodal_request_duration_seconds Time from the request's arrival to its last response byte.",
                "# TYPE polymodal_request_duration_seconds histogram",
            ]
            for route, h in sorted(self.latency.items()):
                lines += h.lines("polymodal_request_duration_seconds", f'route="{_escape(route)}"')
            lines += [
                "# HELP polymodal_batch_rows Rows in each batch the model ran (micro-batching).",
                "# TYPE polymodal_batch_rows histogram",
                *self.batch_rows.lines("polymodal_batch_rows", ""),
                "# HELP polymodal_rejected_total Requests refused by the server's guard, by reason.",
                "# TYPE polymodal_rejected_total counter",
            ]
            for reason, n in sorted(self.rejected.items()):
                lines.append(f'polymodal_rejected_total{{reason="{_escape(reason)}"}} {n}')
            return "\n".join(lines) + "\n"
