"""One worker in the coordinator's own process and event loop: the fleet of a one-worker run.

No pipe and no plain data: the worker's ticks reach its :class:`~loadtest.runner.fleet.WorkerView`
as objects, its report as it is, and an error it raises (TargetUnreachable, …) is re-raised by
:meth:`~loadtest.runner.fleet.Fleet.collect` unchanged. An injected clock (``RunOptions.clock``)
is honoured here, for virtual-time tests of a whole worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from loadtest.clock import Clock
from loadtest.engine.worker import Worker, WorkerSpec
from loadtest.errors import LoadtestError
from loadtest.runner.fleet import Fleet, RowSink, WorkerView

__all__ = ["InProcess"]


class InProcess(Fleet):
    """The one worker of ``spec``, on the running loop."""

    def __init__(self, spec: WorkerSpec, *, sink: RowSink | None, clock: Clock | None = None) -> None:
        view = WorkerView(spec.index)
        super().__init__([view])
        self._view = view
        loop = asyncio.get_running_loop()
        self._start: asyncio.Future[int | None] = loop.create_future()
        self._set_up = asyncio.Event()
        self._worker = Worker(spec, clock=clock, request_sink=sink, on_tick=view.on_tick, ready=self._ready)
        self._task: asyncio.Task[None] | None = None

    async def _ready(self) -> int | None:
        self._view.on_ready()
        self._set_up.set()
        return await self._start

    async def _run(self) -> None:
        try:
            self._view.on_report(await self._worker.run())
        except LoadtestError as exc:
            self._view.error = exc

    async def launch(self) -> None:
        self._task = asyncio.create_task(self._run())
        waiter = asyncio.create_task(self._set_up.wait())
        await asyncio.wait([self._task, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()

    def begin(self, at_epoch_ns: int) -> None:
        # one worker needs no common instant: its t0 is now
        if not self._start.done():
            self._start.set_result(None)

    async def wait(self, on_second: Callable[[], None] | None = None) -> None:
        assert self._task is not None
        while not self._task.done():
            await asyncio.wait([self._task], timeout=1.0)
            if on_second is not None and not self._task.done():
                on_second()
        await self._task  # a bug in the worker surfaces here, with its traceback

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self.abort()
            with contextlib.suppress(Exception):
                await self._task

    def _send(self, kind: str) -> None:
        if not self._start.done():
            self._start.set_result(None)
        self._worker.abort() if kind == "abort" else self._worker.stop()


def fleet(specs: list[WorkerSpec], *, sink: RowSink | None, options: Any) -> InProcess:
    return InProcess(specs[0], sink=sink, clock=options.clock)
