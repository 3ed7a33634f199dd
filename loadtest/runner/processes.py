"""Workers in processes of their own on this host (``--workers N``): the backend, the child's
main, and the coordinator's fleet of children.

Each child runs one :class:`~loadtest.engine.worker.Worker` on its own uvloop loop with its
own aiohttp session, and talks to the coordinator over one pipe, in plain data:

    child -> coordinator   ("ready", None)            set up (probe, pool): waiting for the start
                           ("tick", (figures, progress))   every second: what is new (Figures
                                                       as plain data), and the live counters
                           ("report", report)         the end: the whole WorkerReport
                           ("error", (exit_code, message))  it could not run (e.g. unreachable)
    coordinator -> child   ("start", epoch_ns)        the common t0, wall clock
                           ("stop", None) / ("abort", None)   a first / second Ctrl-C

A child ignores SIGINT (a terminal's Ctrl-C reaches the whole process group: the coordinator
relays it) and ends when the pipe closes (the coordinator is gone) or, on Linux, when the
coordinator dies (parent-death signal). Its request rows go to a part file of the run
directory, which the fleet appends to ``requests.csv`` when it closes (a lost child's rows
included). The ticks are what a coordinator keeps of a child that dies: its data up to the loss.

One worker needs no process of its own: :data:`PROCESSES` runs it in the coordinator's
process (:mod:`~loadtest.runner.inprocess`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from loadtest.engine.limits import available_cores, ensure_open_files
from loadtest.engine.loop import run_loop
from loadtest.engine.result import Progress
from loadtest.engine.worker import Worker, WorkerSpec, share
from loadtest.errors import LoadtestError
from loadtest.metrics.figures import Figures
from loadtest.rundir.writer import RequestCsv
from loadtest.runner import inprocess
from loadtest.runner.fleet import (
    Fleet,
    RowSink,
    WorkerView,
    no_session,
    report_from_plain,
    report_to_plain,
    tick_to_plain,
)

__all__ = ["PROCESSES", "Processes", "child_main"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


# ---------------------------------------------------------------------------- the child


def child_main(spec: WorkerSpec, conn: Connection, run_dir: str | None, secret: str | None) -> None:
    """The entry point of a worker process (multiprocessing, spawn)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    sink = None if run_dir is None else RequestCsv(Path(run_dir), secret=secret, worker=spec.index, part=True)
    try:
        run_loop(_child(spec, conn, sink))
    finally:
        if sink is not None:
            sink.close_part()
        conn.close()


async def _child(spec: WorkerSpec, conn: Connection, sink: RequestCsv | None) -> None:
    loop = asyncio.get_running_loop()
    start: asyncio.Future[int | None] = loop.create_future()

    def tick(figures: Figures, progress: Progress) -> None:
        conn.send(("tick", tick_to_plain(figures, progress)))

    async def ready() -> int | None:
        conn.send(("ready", None))
        return await start

    def command(kind: str, arg: Any) -> None:
        if kind == "start":
            if not start.done():
                start.set_result(arg)
            return
        if not start.done():
            start.set_result(None)
        worker.abort() if kind == "abort" else worker.stop()

    def read() -> None:  # a thread: the coordinator's commands, until the pipe closes
        try:
            while True:
                kind, arg = conn.recv()
                loop.call_soon_threadsafe(command, kind, arg)
        except (EOFError, OSError):  # the coordinator is gone: stop at once
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(command, "abort", None)

    worker = Worker(spec, request_sink=sink, on_tick=tick, ready=ready)
    threading.Thread(target=read, name="worker-commands", daemon=True).start()
    try:
        report = await worker.run()
    except LoadtestError as exc:
        conn.send(("error", (exc.exit_code, str(exc))))
        return
    conn.send(("report", report_to_plain(report)))


# ---------------------------------------------------------------------------- the coordinator's side


class _Child(WorkerView):
    """One worker process as the coordinator sees it."""

    def __init__(self, index: int, process: Any, conn: Connection) -> None:
        super().__init__(index)
        self.process = process  # multiprocessing.Process
        self.conn = conn

    def on_message(self, kind: str, arg: Any) -> None:
        if kind == "ready":
            self.on_ready()
        elif kind == "tick":
            self.on_plain_tick(arg)
        elif kind == "report":
            self.on_report(report_from_plain(arg))
        elif kind == "error":
            self.on_error(*arg)


class Processes(Fleet):
    """The worker processes of one run, driven from the coordinator's event loop."""

    start_delay_s = 0.25

    def __init__(self, specs: list[WorkerSpec], *, sink: RowSink | None) -> None:
        import multiprocessing

        self._sink = sink if isinstance(sink, RequestCsv) else None
        run_dir = None if self._sink is None else str(self._sink.path.parent)
        secret = specs[0].api_key
        mp = multiprocessing.get_context("spawn")  # no fork of a running event loop
        children: list[_Child] = []
        for spec in specs:
            parent, child = mp.Pipe()
            proc = mp.Process(target=child_main, args=(spec, child, run_dir, secret),
                              name=f"loadtest-worker-{spec.index}", daemon=True)
            proc.start()
            child.close()
            children.append(_Child(spec.index, proc, parent))
        super().__init__(list(children))
        self._children = children
        self._changed = asyncio.Event()
        loop = asyncio.get_running_loop()
        for ch in children:
            loop.add_reader(ch.conn.fileno(), self._readable, ch)

    def _readable(self, ch: _Child) -> None:
        try:
            kind, arg = ch.conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(ch.conn.fileno())
            if not ch.done:
                ch.process.join(timeout=1.0)
                ch.lost = f"worker {ch.index} process ended without a report (exit code {ch.process.exitcode})"
        else:
            ch.on_message(kind, arg)
        self._changed.set()

    def _send(self, kind: str, arg: Any = None) -> None:
        for ch in self._children:
            if not ch.done:
                with contextlib.suppress(OSError, ValueError):
                    ch.conn.send((kind, arg))

    async def _until(self, done: Callable[[], bool], on_second: Callable[[], None] | None = None) -> None:
        while not done():
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._changed.wait()
            for ch in self._children:  # a child killed before its pipe said so
                if not ch.done and not ch.process.is_alive() and not ch.conn.poll():
                    ch.lost = f"worker {ch.index} process died (exit code {ch.process.exitcode})"
            if on_second is not None:
                on_second()

    async def launch(self) -> None:
        await self._until(lambda: all(ch.ready or ch.done for ch in self._children))

    def begin(self, at_epoch_ns: int) -> None:
        self._send("start", at_epoch_ns)
        if self.stopping:
            self._send(self.stopping)

    async def wait(self, on_second: Callable[[], None] | None = None) -> None:
        await self._until(lambda: all(ch.done for ch in self._children), on_second)

    async def close(self) -> None:
        self._send("abort")  # a child still running (the run failed early) stops at once
        for ch in self._children:
            await asyncio.to_thread(ch.process.join, 5)
            if ch.process.is_alive():
                ch.process.kill()
                await asyncio.to_thread(ch.process.join, 5)
            with contextlib.suppress(OSError, ValueError):
                asyncio.get_running_loop().remove_reader(ch.conn.fileno())
            ch.conn.close()
        if self._sink is not None:
            for ch in self._children:  # every row a worker wrote, a lost worker's included
                self._sink.absorb(self._sink.path.parent / f".requests-w{ch.index}.part")


class _ProcessBackend:
    """Processes on this host; ``auto`` = the usable cores minus one (half of that against a
    local target, which needs cores too). One worker runs in this process."""

    session = staticmethod(no_session)

    def resolve_workers(self, sc: Any, requested: int | str) -> int:
        url = sc.target.url
        local = url == "mock" or any(h in url for h in ("://127.", "://localhost", "://[::1]"))
        load = sc.load.model_copy(update={"workers": requested})
        return int(load.worker_count(cores=available_cores(), local_target=local))

    def preflight(self, sc: Any, options: Any, *, apply: bool = True) -> list[str]:
        # each worker process holds its share of the connections (and inherits the raised limit)
        workers = self.resolve_workers(sc, options.workers_for(sc))
        note = ensure_open_files(share(sc.load.peak_connections, 0, workers), apply=apply)
        return [note] if note else []

    def fleet(self, specs: list[WorkerSpec], *, sink: RowSink | None, options: Any) -> Fleet:
        if len(specs) == 1:
            return inprocess.fleet(specs, sink=sink, options=options)
        return Processes(specs, sink=sink)


PROCESSES = _ProcessBackend()
