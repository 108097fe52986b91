"""A bounded worker pool for the CPU work of requests (decoding files): a few threads and a short queue; a request
arriving when the queue is full is refused at once (503 with Retry-After) instead of piling up memory and latency.

A slot is held until the work itself ends, not until its request gives up: a request that times out while its
decode runs does not free room for more work than the pool's threads can do.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from .payload import RequestError

R = TypeVar("R")


class Overloaded(RequestError):
    """The server is busy (503); the client should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(503, message)
        self.headers = {"Retry-After": str(retry_after)}


class WorkPool:
    """``await pool.run(fn, *args)`` in one of ``workers`` threads, with at most ``max_queue`` more waiting."""

    def __init__(self, workers: int, max_queue: int):
        self.workers, self.max_queue = workers, max_queue
        self.pending = 0  # running + waiting; touched only on the event loop's thread
        self._executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="polymodal-decode")

    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        if self.pending >= self.workers + self.max_queue:
            raise Overloaded(
                f"the server is busy: {self.pending} requests are being decoded or waiting (decode_workers="
                f"{self.workers}, max_queue={self.max_queue}); retry shortly"
            )
        loop = asyncio.get_running_loop()
        self.pending += 1
        work = self._executor.submit(functools.partial(fn, *args))

        def done(_: concurrent.futures.Future) -> None:
            try:
                loop.call_soon_threadsafe(self._release)
            except RuntimeError:  # the loop closed (server shutdown): nothing left to count
                pass

        work.add_done_callback(done)
        return await asyncio.wrap_future(work)

    def _release(self) -> None:
        self.pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
