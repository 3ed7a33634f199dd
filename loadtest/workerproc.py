"""Workers in processes of their own on this host (``--workers N``): the child's main, and the
coordinator's handle on each child.

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
directory, which the coordinator appends to ``requests.csv`` (a lost child's rows included).
The ticks are what a coordinator keeps of a child that dies: its data up to the loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from loadtest.engine.remote import (
    RemoteWorker,
    StopRelay,
    merged_progress,
    report_from_plain,
    report_to_plain,
)
from loadtest.engine.result import Progress
from loadtest.engine.tls import ssl_context_for
from loadtest.engine.worker import Worker, WorkerReport, WorkerSpec
from loadtest.errors import LoadtestError
from loadtest.metrics.figures import Figures
from loadtest.rundir.writer import RequestCsv

__all__ = ["Child", "child_main", "report_from_plain", "report_to_plain"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


# ---------------------------------------------------------------------------- the child


def child_main(spec: WorkerSpec, conn: Connection, run_dir: str | None, secret: str | None) -> None:
    """The entry point of a worker process (multiprocessing, spawn)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    import uvloop

    sink = None if run_dir is None else RequestCsv(Path(run_dir), secret=secret, worker=spec.index, part=True)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_child(spec, conn, sink))
    finally:
        if sink is not None:
            sink.close_part()
        conn.close()


async def _child(spec: WorkerSpec, conn: Connection, sink: RequestCsv | None) -> None:
    loop = asyncio.get_running_loop()
    start: asyncio.Future[int | None] = loop.create_future()
    ssl_ctx = ssl_context_for(spec.url, ca_file=spec.ca_file, insecure=spec.insecure)

    def tick(figures: Figures, progress: Progress) -> None:
        conn.send(("tick", (figures.to_plain(), dataclasses.asdict(progress))))

    async def ready() -> int | None:
        conn.send(("ready", None))
        return await start

    worker = Worker(spec, ssl_context=ssl_ctx, request_sink=sink, on_tick=tick, ready=ready)

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

    threading.Thread(target=read, name="worker-commands", daemon=True).start()
    try:
        report = await worker.run()
    except LoadtestError as exc:
        conn.send(("error", (exc.exit_code, str(exc))))
        return
    conn.send(("report", report_to_plain(report)))


# ---------------------------------------------------------------------------- the coordinator's side


@dataclass
class Child(RemoteWorker):
    """The coordinator's view of one worker process: what it streamed, and how it ended."""

    process: Any = None  # multiprocessing.Process
    conn: Any = None  # multiprocessing.connection.Connection


class Children(StopRelay):
    """The worker processes of one run, driven from the coordinator's event loop."""

    def __init__(self, specs: list[WorkerSpec], *, run_dir: Path | None, secret: str | None) -> None:
        import multiprocessing

        mp = multiprocessing.get_context("spawn")  # no fork of a running event loop
        self.children: list[Child] = []
        for spec in specs:
            parent, child = mp.Pipe()
            proc = mp.Process(target=child_main, args=(spec, child, None if run_dir is None else str(run_dir), secret),
                              name=f"loadtest-worker-{spec.index}", daemon=True)
            proc.start()
            child.close()
            self.children.append(Child(spec.index, process=proc, conn=parent))
        self._changed = asyncio.Event()
        self._stopping = ""  # "", "stop" or "abort": relayed to children that are not done
        loop = asyncio.get_running_loop()
        for ch in self.children:
            loop.add_reader(ch.conn.fileno(), self._readable, ch)

    def _readable(self, ch: Child) -> None:
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
        for ch in self.children:
            if not ch.done:
                with contextlib.suppress(OSError, ValueError):
                    ch.conn.send((kind, arg))

    async def _until(self, done: Any, on_second: Any = None) -> None:
        while not done():
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._changed.wait()
            for ch in self.children:  # a child killed before its pipe said so
                if not ch.done and not ch.process.is_alive() and not ch.conn.poll():
                    ch.lost = f"worker {ch.index} process died (exit code {ch.process.exitcode})"
            if on_second is not None:
                on_second()

    async def run(self, *, start_delay_s: float, progress: Any = None) -> list[WorkerReport]:
        """Wait until every child is set up, give them one common start, relay progress, and
        return every worker's report (a lost worker's: what it streamed before the loss)."""
        import time

        await self._until(lambda: all(ch.ready or ch.done for ch in self.children))
        self._send("start", time.time_ns() + round(start_delay_s * 1e9))
        if self._stopping:
            self._send(self._stopping)
        await self._until(lambda: all(ch.done for ch in self.children),
                          on_second=(lambda: progress(self.progress())) if progress else None)
        for ch in self.children:
            ch.process.join(timeout=5)
            if ch.process.is_alive():
                ch.process.kill()
                ch.process.join(timeout=5)
            with contextlib.suppress(OSError, ValueError):
                asyncio.get_running_loop().remove_reader(ch.conn.fileno())
            ch.conn.close()
        return [ch.final() for ch in self.children if ch.error is None]

    def errors(self) -> list[tuple[int, str]]:
        return [ch.error for ch in self.children if ch.error is not None]

    def lost(self) -> list[str]:
        return [ch.lost or f"worker {ch.index}: {ch.error[1] if ch.error else 'no report'}"
                for ch in self.children if ch.report is None]

    def progress(self) -> Progress:
        """The live line of the whole run (:func:`~loadtest.engine.remote.merged_progress`)."""
        return merged_progress(list(self.children))
