"""Micro-batching: concurrent requests are queued and run together, up to ``max_batch`` rows, the first of them
waiting at most ``max_wait_ms`` for others to join.

The model runs in one worker thread, so the event loop keeps accepting requests while a batch runs; those form the
next batch. With ``max_batch=1`` every request runs alone (batch-1 serving).

With a ``prepare`` stage (the server's decoding: base64 files to arrays) the batcher is a two-stage pipeline. Stage
one takes whatever requests are queued (up to ``max_batch`` rows) and prepares them together in one call in its own
thread, so a group pays the thread hand-off once and the event loop never decodes; stage two merges prepared
requests (up to ``max_batch`` rows) into one model call. The stages overlap: the next requests are decoded while the
model runs, and stage one pauses once a full batch is prepared and waiting, so it never runs far ahead of the model.
A request whose preparation fails gets its own error; the others of its group go on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
#: prepares a group of queued items together: one result per item, an Exception for an item that failed
Prepare = Callable[[list[Any]], list[Any]]


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
        prepare: Prepare | None = None,
    ):
        """``prepare``: a stage run on the queued items before ``run`` (see the module's docstring); ``run`` and
        ``size`` then see the prepared items. Without it, items go to ``run`` as they were submitted."""
        self.run, self.max_batch, self.max_wait, self.size = run, max_batch, max_wait_ms / 1000.0, size
        self.prepare = prepare
        self.stats = BatcherStats()
        self.preparing = 0  # submitted items not prepared yet (admission control reads it); event loop only
        self._queue: asyncio.Queue | None = None
        self._carry: tuple[T, asyncio.Future] | None = None
        self._tasks: list[asyncio.Task] = []
        self._ready: deque[tuple[Any, asyncio.Future]] = deque()  # prepared, waiting for the model
        self._ready_rows = 0
        self._has_ready: asyncio.Event | None = None
        self._has_room: asyncio.Event | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="polymodal-model")
        self._prepare_executor = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="polymodal-decode")
            if prepare is not None
            else None
        )

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        if self.prepare is None:
            self._tasks = [asyncio.create_task(self._loop())]
        else:
            self._has_ready, self._has_room = asyncio.Event(), asyncio.Event()
            self._has_room.set()
            self._tasks = [asyncio.create_task(self._prepare_loop()), asyncio.create_task(self._model_loop())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._prepare_executor is not None:
            self._prepare_executor.shutdown(wait=True)
        self._executor.shutdown(wait=True)

    async def submit(self, item: T, prepared: bool = False) -> R:
        """``run([...item...])``'s result for ``item``. ``prepared``: the item is already what ``prepare`` makes (it
        skips stage one and joins the next model batch)."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        fut = asyncio.get_running_loop().create_future()
        self.stats.requests += 1
        if prepared and self.prepare is not None:
            self._add_ready(item, fut)
        else:
            if self.prepare is not None:
                self.preparing += 1
            await self._queue.put((item, fut))
        return await fut

    def _add_ready(self, item: Any, fut: asyncio.Future) -> None:
        assert self._has_ready is not None and self._has_room is not None
        self._ready.append((item, fut))
        self._ready_rows += self.size(item)
        self._has_ready.set()
        if self._ready_rows >= self.max_batch:
            self._has_room.clear()

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
        size = self.size if self.prepare is None else (lambda _: 1)  # unprepared items: rows unknown, count 1
        group, rows = [first], size(first[0])
        deadline = loop.time() + self.max_wait
        while rows < self.max_batch:
            nxt = await self._next(deadline - loop.time())
            if nxt is None:
                break
            if rows + size(nxt[0]) > self.max_batch:
                self._carry = nxt  # starts the next batch
                break
            group.append(nxt)
            rows += size(nxt[0])
        return group

    async def _loop(self) -> None:
        while True:
            group = await self._collect()
            live = [(item, fut) for item, fut in group if not fut.done()]  # clients that went away are dropped
            if not live:
                continue
            await self._run_model(live, sum(self.size(item) for item, _ in live))

    async def _run_model(self, live: list[tuple[Any, asyncio.Future]], rows: int) -> None:
        """One model call for ``live`` (``rows`` rows in all) on the model thread; each request gets its result, or
        every request of the batch the error (the calling loop goes on)."""
        self.stats.batches += 1
        self.stats.rows += rows
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.run, [item for item, _ in live]
            )
        except Exception as e:
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(e)
            return
        for (_, fut), res in zip(live, results):
            if not fut.done():
                fut.set_result(res)

    async def _prepare_loop(self) -> None:
        """Stage one: queued requests → prepared, a group per call, while the model runs the previous batch."""
        loop = asyncio.get_running_loop()
        assert self.prepare is not None and self._has_ready is not None and self._has_room is not None
        while True:
            await self._has_room.wait()  # a full batch is already waiting for the model: decode no further ahead
            group = await self._collect()
            live = [(item, fut) for item, fut in group if not fut.done()]
            self.preparing -= len(group) - len(live)
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self._prepare_executor, self.prepare, [i for i, _ in live])
            except Exception as e:  # the stage itself failed: every request of the group gets the error
                results = [e] * len(live)
            finally:
                self.preparing -= len(live)
            for (_, fut), res in zip(live, results):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                    continue
                self._add_ready(res, fut)

    async def _model_loop(self) -> None:
        """Stage two: prepared requests, merged up to ``max_batch`` rows, → one model call."""
        assert self._has_ready is not None and self._has_room is not None
        while True:
            await self._has_ready.wait()
            live: list[tuple[Any, asyncio.Future]] = []
            rows = 0
            while self._ready:
                item, fut = self._ready[0]
                n = self.size(item)
                if live and rows + n > self.max_batch:
                    break
                self._ready.popleft()
                self._ready_rows -= n
                if not fut.done():  # clients that went away are dropped
                    live.append((item, fut))
                    rows += n
            if not self._ready:
                self._has_ready.clear()
            if self._ready_rows < self.max_batch:
                self._has_room.set()
            if not live:
                continue
            await self._run_model(live, rows)
