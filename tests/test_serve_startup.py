"""`polymodal serve` says what it is doing at once: its first line comes before the imports and the model load."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time

from conftest import free_port, stop


def test_serve_prints_its_first_line_before_loading(run_dir):
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "polymodal.cli", "serve", str(run_dir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # the log lines are on stderr; anything else too, in order
        env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "2000"},
        text=True,
    )
    lines: queue.Queue[tuple[float, str]] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put((time.monotonic() - started, line.rstrip())) for line in proc.stdout], daemon=True
    ).start()
    try:
        seen: list[tuple[float, str]] = []
        while not any(line.startswith("serving ") for _, line in seen):
            seen.append(lines.get(timeout=120))
        print("\n".join(f"{t:6.2f} s  {line}" for t, line in seen))  # the measurement, shown with -s
        first_at, first = seen[0]
        assert first == f"loading {run_dir} ...", seen
        assert first_at < 10, seen  # about 0.2 s on an idle machine; generous for a loaded one
        order = [next(i for i, (_, line) in enumerate(seen) if line.startswith(p)) for p in ("loading", "model loaded")]
        assert order == sorted(order) and seen[order[1]][0] > first_at, seen
    finally:
        stop(proc)
