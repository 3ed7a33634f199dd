"""Persistent authenticated connections for open-loop load: checkout, FIFO queue, drop, replace.

The scheduler hands every arrival to :meth:`Pool.submit` (synchronous, the hot path). The
request then

1. takes an idle connection at once (``queue_ns`` stays 0), else
2. waits in the FIFO queue while a new connection is opened for it (the pool grows on demand
   up to ``max_connections``; the connect time is queue time: it waited for a connection), else
3. waits in the FIFO queue for the next connection to come free, else
4. is **dropped** when ``max_queue`` requests are already waiting beyond the connections
   being opened: outcome ``dropped``, reported through ``collector.on_request`` (never silent).

Queue wait (``rec.queue_ns``) runs from ``submit`` to the moment the request gets its
connection, so the collector's ``schedule_lag`` = ``t_send - queue_ns - t_intended`` is the
harness's own lateness: the dispatcher's wake-up plus the hand-over to the connection.

A connection serves requests in one task (a *lease*) for as long as the queue holds work, then
goes back to the idle stack (LIFO: the most recently used, warmest socket is reused first). A
connection left ``broken`` by a failed request is closed and replaced in that task, with capped,
jittered exponential backoff (:func:`loadtest.schedule.backoff.backoff`), counted by
``collector.on_reconnect``; every failed connect attempt goes to ``collector.on_failure``.
Once the run is stopping, no connection is opened or replaced any more.

No orphan tasks: every lease runs in the run's TaskGroup, and :meth:`Pool.close` cancels and
awaits them, closes every socket, and reports as ``cancelled`` each request that never
finished: queued ones that never got a connection, and leased ones whose task was cancelled
before it could report. Every arrival handed to ``submit`` is therefore reported exactly once:
ok, failed, dropped or cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from loadtest.clock import Clock
from loadtest.engine.connection import Connection
from loadtest.errors import ConnectionFailure
from loadtest.metrics.collector import Collector, RequestRecord
from loadtest.schedule.backoff import backoff

__all__ = ["Pool", "PoolContext"]


class PoolContext(Protocol):
    """What the pool needs from the run (``loadtest.engine.users.RunContext`` provides it)."""

    collector: Collector
    active_sessions: int
    stopping: asyncio.Event
    clock: Clock

    async def open_connection(self) -> Connection: ...

    async def gen(self, conn: Connection, frame: str, rec: RequestRecord) -> None: ...

    async def sleep(self, seconds: float) -> None: ...


@dataclass(slots=True)
class _Job:
    rec: RequestRecord
    frame: str
    t_enqueued: int
    runner: Runner | None = None


class Runner(Protocol):
    """What serves a job instead of one gen: a conversation (loadtest.engine.conversation),
    its first turn being the job's request, the rest on the same connection."""

    async def run(self, conn: Connection, first: tuple[RequestRecord, str] | None = None) -> None: ...

    def report(self, end_ns: int, outcome: str | None = None) -> None: ...


class Pool:
    """Connections shared by open-loop requests. One event loop; not thread-safe.

    Call :meth:`start` (before the measured clock starts, to open the initial connections),
    then :meth:`attach` with the run's TaskGroup, then :meth:`submit` per arrival; finally
    :meth:`drain` (optional) and always :meth:`close`.
    """

    def __init__(self, ctx: PoolContext, *, max_connections: int, max_queue: int, seed: int = 1) -> None:
        if max_connections < 1 or max_queue < 0:
            raise ValueError("max_connections must be >= 1 and max_queue >= 0")
        self.ctx = ctx
        self.max_connections = max_connections
        self.max_queue = max_queue
        self._rng = random.Random(seed * 7_919 + 17)
        self._tg: asyncio.TaskGroup | None = None
        self._idle: list[Connection] = []
        self._queue: deque[_Job] = deque()
        self._conns: set[Connection] = set()  # every open socket, idle or leased
        self._size = 0  # connections open or being opened/replaced (<= max_connections)
        self._pending = 0  # connections being opened or replaced: capacity on its way
        self._tasks: set[asyncio.Task[None]] = set()
        self._leased: dict[int, RequestRecord] = {}  # request_id -> rec handed to a lease
        self._runners: dict[int, Runner] = {}  # request_id -> the conversation that rec starts
        self._quiet = asyncio.Event()  # set when no lease runs and nothing is queued
        self._quiet.set()
        self._closed = False
        # figures for tests and reports
        self.peak_size = 0
        self.peak_queue = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def size(self) -> int:
        return self._size

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def start(self, n: int) -> int:
        """Open up to ``n`` connections concurrently; returns how many opened (failures are counted)."""
        n = min(n, self.max_connections - self._size)
        self._size += n
        results = await asyncio.gather(*(self._open_once() for _ in range(n)))
        opened = 0
        for conn in results:
            if conn is None:
                self._size -= 1
            else:
                self._idle.append(conn)
                opened += 1
        self.peak_size = max(self.peak_size, self._size)
        return opened

    def attach(self, tg: asyncio.TaskGroup) -> None:
        """Run every lease in ``tg`` (the run's TaskGroup)."""
        self._tg = tg

    def cancel_queued(self) -> None:
        """Report every queued request as ``cancelled`` (the run was stopped early)."""
        self._cancel_queued(self.ctx.clock.now_ns())
        if not self._tasks:
            self._quiet.set()

    async def drain(self) -> None:
        """Wait until nothing is queued and no request is in flight."""
        await self._quiet.wait()

    async def close(self) -> None:
        """Cancel what is left, report it as ``cancelled``, close every socket. Idempotent."""
        self._closed = True
        now = self.ctx.clock.now_ns()
        self._cancel_queued(now)
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        c = self.ctx.collector
        for rec in self._leased.values():  # leases cancelled before they could report
            if not rec.outcome:
                rec.outcome = "cancelled"
                c.on_request(rec, now)
        self._leased.clear()
        for runner in self._runners.values():  # conversations that never got to run (reported once)
            runner.report(now, "unfinished")
        self._runners.clear()
        conns = list(self._conns)
        self._conns.clear()
        self._idle.clear()
        self.ctx.active_sessions -= len(conns)
        if conns:
            await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)
        self._quiet.set()

    # ------------------------------------------------------------------ hot path

    def submit(self, rec: RequestRecord, frame: str, runner: Runner | None = None) -> bool:
        """Hand one request (or, with ``runner``, a conversation whose first turn it is) to the
        pool; it is reported whatever happens (see the module doc). False: dropped."""
        if self._closed or self._tg is None:
            raise RuntimeError("submit() needs an attached, open pool")
        if runner is not None:
            self._runners[rec.request_id] = runner
        if self._idle:
            self._leased[rec.request_id] = rec
            self._spawn(self._lease(self._idle.pop(), rec, frame))
            return True
        queue = self._queue
        if self._size < self.max_connections and not self.ctx.stopping.is_set():
            # grow: a new connection is opened; this request waits for it (or for any that frees first)
            self._size += 1
            self._pending += 1
            if self._size > self.peak_size:
                self.peak_size = self._size
            queue.append(_Job(rec, frame, self.ctx.clock.now_ns(), runner))
            self._spawn(self._grow())
        elif len(queue) < self.max_queue + self._pending:
            queue.append(_Job(rec, frame, self.ctx.clock.now_ns(), runner))
        else:
            rec.outcome = "dropped"
            now = self.ctx.clock.now_ns()
            self.ctx.collector.on_request(rec, now)
            if runner is not None:
                del self._runners[rec.request_id]
                runner.report(now, "dropped")
            return False
        if len(queue) > self.peak_queue:
            self.peak_queue = len(queue)
        return True

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._tg is not None
        task = self._tg.create_task(coro)
        self._tasks.add(task)
        self._quiet.clear()
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            # nothing can serve the queue any more (the run is stopping): report it now
            self._cancel_queued(self.ctx.clock.now_ns())
            self._quiet.set()

    def _cancel_queued(self, now: int) -> None:
        c = self.ctx.collector
        queue = self._queue
        while queue:
            job = queue.popleft()
            job.rec.outcome = "cancelled"
            job.rec.queue_ns = now - job.t_enqueued
            c.on_request(job.rec, now)
            if job.runner is not None:
                self._runners.pop(job.rec.request_id, None)
                job.runner.report(now, "unfinished")

    # ------------------------------------------------------------------ leases

    async def _lease(self, conn: Connection, rec: RequestRecord, frame: str) -> None:
        """Serve ``rec`` on ``conn``, then the queue while it holds work; then go idle."""
        leased = self._leased
        gen = self.ctx.gen
        queue = self._queue
        runners = self._runners
        while True:
            # rec is in self._leased from the hand-over on: a lease cancelled before it
            # started still gets its request reported (by close())
            runner = runners.pop(rec.request_id, None) if runners else None
            try:
                if runner is None:
                    await gen(conn, frame, rec)
                else:  # a conversation: this turn, then the rest on the same connection
                    await runner.run(conn, (rec, frame))
            finally:
                leased.pop(rec.request_id, None)
            if conn.broken:
                replaced = await self._replace(conn)
                if replaced is None:
                    return
                conn = replaced
            if not queue:
                break
            job = queue.popleft()
            rec, frame = job.rec, job.frame
            rec.queue_ns = self.ctx.clock.now_ns() - job.t_enqueued
            leased[rec.request_id] = rec
        self._idle.append(conn)

    async def _grow(self) -> None:
        """Open one more connection (its slot is already counted), then serve the queue."""
        conn = await self._open_retrying()
        self._pending -= 1
        if conn is None:
            self._size -= 1
            return
        self._serve_or_idle(conn)

    def _serve_or_idle(self, conn: Connection) -> None:
        if self._queue:
            job = self._queue.popleft()
            job.rec.queue_ns = self.ctx.clock.now_ns() - job.t_enqueued
            self._leased[job.rec.request_id] = job.rec
            self._spawn(self._lease(conn, job.rec, job.frame))
        else:
            self._idle.append(conn)

    async def _replace(self, conn: Connection) -> Connection | None:
        """Close a broken connection and open its replacement (None: the run is stopping)."""
        self._conns.discard(conn)
        self.ctx.active_sessions -= 1
        await conn.close()
        self._pending += 1
        try:
            if self.ctx.stopping.is_set():
                self._size -= 1
                return None
            self.ctx.collector.on_reconnect()
            # a connection we retired ourselves (frames of a failed stream may follow) is
            # replaced at once; one the target broke waits a backoff first
            new = await self._open_retrying(first_delay=not conn.retired)
            if new is None:
                self._size -= 1
            return new
        finally:
            self._pending -= 1

    async def _open_retrying(self, *, first_delay: bool = False) -> Connection | None:
        """Open a connection, retrying with capped jittered backoff until the run stops."""
        delays = backoff(rng=self._rng)
        if first_delay:
            # a server that dropped many connections at once must not see them all return at once
            await self.ctx.sleep(next(delays))
        while not self.ctx.stopping.is_set():
            conn = await self._open_once()
            if conn is not None:
                return conn
            await self.ctx.sleep(next(delays))
        return None

    async def _open_once(self) -> Connection | None:
        try:
            conn = await self.ctx.open_connection()
        except ConnectionFailure as exc:
            self.ctx.collector.on_failure(exc.category, str(exc), self.ctx.clock.now_ns())
            return None
        if self._closed:
            with contextlib.suppress(Exception):
                await conn.close()
            return None
        self._conns.add(conn)
        self.ctx.active_sessions += 1
        return conn
