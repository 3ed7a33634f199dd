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
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from loadtest.engine.result import Progress, WorkerHealth
from loadtest.engine.tls import ssl_context_for
from loadtest.engine.worker import Worker, WorkerReport, WorkerSpec
from loadtest.errors import LoadtestError
from loadtest.metrics.figures import Figures
from loadtest.metrics.seconds import SecondRow
from loadtest.rundir.writer import RequestCsv

__all__ = ["Child", "child_main", "report_from_plain", "report_to_plain"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def report_to_plain(r: WorkerReport) -> dict[str, Any]:
    return {"index": r.index, "figures": r.figures.to_plain(), "started_at_epoch_ns": r.started_at_epoch_ns,
            "duration_s": r.duration_s, "drain_s": r.drain_s, "health": dataclasses.asdict(r.health),
            "cpu_percents": r.cpu_percents}


def report_from_plain(d: dict[str, Any]) -> WorkerReport:
    h = dict(d["health"])
    h["saturation"] = tuple(h["saturation"])
    return WorkerReport(index=d["index"], figures=Figures.from_plain(d["figures"]),
                        started_at_epoch_ns=d["started_at_epoch_ns"], duration_s=d["duration_s"],
                        drain_s=d["drain_s"], health=WorkerHealth(**h), cpu_percents=list(d["cpu_percents"]))


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
class Child:
    """The coordinator's view of one worker process: what it streamed, and how it ended."""

    index: int
    process: Any  # multiprocessing.Process
    conn: Connection
    ready: bool = False
    progress: Progress | None = None
    report: WorkerReport | None = None
    error: tuple[int, str] | None = None
    lost: str = ""
    # what the ticks brought: the latest counters, every interval and settled second
    partial: Figures = field(default_factory=Figures)

    def on_message(self, kind: str, arg: Any) -> None:
        if kind == "ready":
            self.ready = True
        elif kind == "tick":
            figures, progress = arg
            self.progress = Progress(**progress)
            self._absorb(Figures.from_plain(figures))
        elif kind == "report":
            self.report = report_from_plain(arg)
        elif kind == "error":
            self.error = (int(arg[0]), str(arg[1]))

    def _absorb(self, new: Figures) -> None:
        p = self.partial
        p.counts, p.errors, p.drain = new.counts, new.errors, new.drain
        p.failed_samples, p.chunks_per_answer, p.error_samples = (new.failed_samples, new.chunks_per_answer,
                                                                  new.error_samples)
        p.warmup_s, p.window_end_s = new.warmup_s, new.window_end_s
        p.intervals.extend(new.intervals)
        for s, row in new.seconds.items():
            p.seconds.setdefault(s, SecondRow()).add(row)

    @property
    def done(self) -> bool:
        return self.report is not None or self.error is not None or bool(self.lost)

    def final(self) -> WorkerReport:
        """The worker's report, or for a lost worker what it streamed before the loss."""
        if self.report is not None:
            return self.report
        health = WorkerHealth(index=self.index, loop="?", cpu_percent=None, loop_lag_p99_ms=None,
                              lost=self.lost or "no report")
        return WorkerReport(index=self.index, figures=self.partial, started_at_epoch_ns=0, duration_s=0.0,
                            drain_s=0.0, health=health)


class Children:
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
            self.children.append(Child(spec.index, proc, parent))
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

    def stop(self) -> None:
        self._stopping = self._stopping or "stop"
        self._send("stop")

    def abort(self) -> None:
        self._stopping = "abort"
        self._send("abort")

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
        """The live line of the whole run: counters summed; TTFT percentiles of the workers'
        settled seconds merged (never averaged), over the last five of them."""
        from loadtest.metrics.recorder import Recorder

        latest = [ch.progress for ch in self.children if ch.progress is not None]
        ttft = Recorder()
        last = max((s for ch in self.children for s in ch.partial.seconds), default=-1)
        for ch in self.children:
            for s in range(max(0, last - 4), last + 1):
                row = ch.partial.seconds.get(s)
                h = None if row is None else row.histogram("ttft")
                if h is not None and h.count:
                    ttft.add(h)
        p50, p99 = (ttft.percentile_us(50), ttft.percentile_us(99)) if ttft.count else (None, None)
        first = latest[0] if latest else None
        return Progress(
            elapsed_s=max((p.elapsed_s for p in latest), default=0.0), total_s=first.total_s if first else 0.0,
            active_sessions=sum(p.active_sessions for p in latest), in_flight=sum(p.in_flight for p in latest),
            completed=sum(p.completed for p in latest), failed=sum(p.failed for p in latest),
            errors=sum(p.errors for p in latest), ttft_p50_ms=None if p50 is None else p50 / 1000,
            ttft_p99_ms=None if p99 is None else p99 / 1000, phase=first.phase if first else "warmup",
        )
