"""Micro-batching: concurrent requests are queued and run together, up to ``max_batch`` rows, the first of them
waiting at most ``max_wait_ms`` for others to join.

The model runs in one worker thread, so the event loop keeps accepting (and decoding) requests while a batch runs;
those form the next batch. With ``max_batch=1`` every request runs alone (batch-1 serving).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatcherStats:
    requests: int = 0
    batches: int = 0
    rows: int = 0


class MicroBatcher(Generic[T, R]):
    """``await submit(item)`` → ``run([...items])[i]``; ``size(item)`` rows count towards ``max_batch``."""

    def __init__(
        self,
        run: Callable[[list[T]], list[R]],
        max_batch: int,
        max_wait_ms: float,
        size: Callable[[T], int] = lambda _: 1,
    ):
        self.run, self.max_batch, self.max_wait, self.size = run, max_batch, max_wait_ms / 1000.0, size
        self.stats = BatcherStats()
        self._queue: asyncio.Queue | None = None
        self._carry: tuple[T, asyncio.Future] | None = None
        self._task: asyncio.Task | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="polymodal-model")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def submit(self, item: T) -> R:
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        fut = asyncio.get_running_loop().create_future()
        self.stats.requests += 1
        await self._queue.put((item, fut))
        return await fut

    async def _next(self, timeout: float | None) -> tuple[T, asyncio.Future] | None:
        if self._carry is not None:
            nxt, self._carry = self._carry, None
            return nxt
        assert self._queue is not None
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            try:
                return self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def _collect(self) -> list[tuple[T, asyncio.Future]]:
        loop = asyncio.get_running_loop()
        first = await self._next(None)
        assert first is not None, "waiting without a timeout always gives an item"
        group, rows = [first], self.size(first[0])
        deadline = loop.time() + self.max_wait
        while rows < self.max_batch:
            nxt = await self._next(deadline - loop.time())
            if nxt is None:
                break
            if rows + self.size(nxt[0]) > self.max_batch:
                self._carry = nxt  # starts the next batch
                break
            group.append(nxt)
            rows += self.size(nxt[0])
        return group

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            group = await self._collect()
            live = [(item, fut) for item, fut in group if not fut.done()]  # clients that went away are dropped
            if not live:
                continue
            self.stats.batches += 1
            self.stats.rows += sum(self.size(item) for item, _ in live)
            try:
                results = await loop.run_in_executor(self._executor, self.run, [item for item, _ in live])
            except Exception as e:  # every request of the batch gets the error; the loop goes on
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (_, fut), res in zip(live, results):
                if not fut.done():
                    fut.set_result(res)
