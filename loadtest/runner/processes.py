"""Workers in processes of their own on this host (``--workers N``): the backend, the child's
main, and the coordinator's fleet of children.

Each child runs one :class:`~loadtest.engine.worker.Worker` on its own uvloop loop with its
own aiohttp session, and talks to the coordinator over one socket pair, in plain data:

    child -> coordinator   ("ready", None)            set up (probe, pool): waiting for the start
                           ("tick", (figures, progress, rows_at))   every second: what is new
                                                       (Figures as plain data), the live counters,
                                                       and how far its rows are on disk
                           ("report", (report, rows_at))   the end: the whole WorkerReport
                           ("error", (exit_code, message))  it could not run (e.g. unreachable)
    coordinator -> child   ("start", epoch_ns)        the common t0, wall clock
                           ("stop", None) / ("abort", None)   a first / second Ctrl-C

A child's messages are pickles behind an 8-byte length (:func:`_frame`), which the coordinator
reads without ever blocking its loop (:class:`_Inbox`: uvloop makes a watched socket
non-blocking, so a message can arrive in pieces). A child ignores SIGINT (a terminal's Ctrl-C
reaches the whole process group: the coordinator relays it) and ends when the pipe closes (the
coordinator is gone) or, on Linux, when the coordinator dies (parent-death signal).

Its request rows go to a part file of the run directory (:class:`_Part`), flushed at every tick
and at the end: ``rows_at`` is how many bytes of whole rows the part holds at that instant. The
fleet appends each part to ``requests.csv`` when it closes, up to the last ``rows_at`` the child
sent, so the rows agree with the figures merged: a finished worker's all, a lost worker's up
to its last streamed second.

A child is lost only when its process has ended (the socket closed, or the process is gone)
and everything it sent before has been read and taken in, without its report: a worker that
reported and exited is never lost, and a killed one keeps its figures and rows up to its last
tick.

One worker needs no process of its own: :data:`PROCESSES` runs it in the coordinator's
process (:mod:`~loadtest.runner.inprocess`).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import pickle
import signal
import socket
import struct
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
from loadtest.metrics.collector import RequestRecord
from loadtest.metrics.figures import Figures
from loadtest.rundir.writer import RequestCsv, request_row
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
_HEADER = struct.Struct("!Q")  # a child's message: its pickle's length, then the pickle
_READ_CHUNK = 1 << 18


def _frame(kind: str, arg: Any) -> bytes:
    data = pickle.dumps((kind, arg), protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def _part_path(run_dir: Path, index: int) -> Path:
    return run_dir / f".requests-w{index}.part"


# ---------------------------------------------------------------------------- the child


class _Part:
    """A child's request rows: a headerless part of ``requests.csv`` in the run directory.
    :meth:`flush` puts every row written so far on disk and says how many bytes of whole rows
    the part holds; after a failed write (disk full) rows are dropped and that stays where it was."""

    def __init__(self, path: Path, *, secret: str | None, worker: int) -> None:
        self._bytes = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._f = io.TextIOWrapper(self._bytes, encoding="utf-8", newline="")
        self._w = csv.writer(self._f)
        self._secret = secret
        self._worker = worker
        self._at = 0
        self._failed = False

    def __call__(self, r: RequestRecord, t0: int) -> None:
        if not self._failed:
            try:
                self._w.writerow(request_row(r, t0, secret=self._secret, worker=self._worker))
            except OSError:
                self._failed = True

    def flush(self) -> int:
        if not self._failed:
            try:
                self._f.flush()
                self._at = self._bytes.tell()
            except OSError:
                self._failed = True
        return self._at

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._f.close()


def child_main(spec: WorkerSpec, conn: Connection, run_dir: str | None, secret: str | None) -> None:
    """The entry point of a worker process (multiprocessing, spawn)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    part = None if run_dir is None else _Part(_part_path(Path(run_dir), spec.index), secret=secret,
                                              worker=spec.index)
    out = socket.socket(fileno=os.dup(conn.fileno()))  # the child's messages, in _frame()s
    try:
        run_loop(_child(spec, conn, out, part))
    finally:
        if part is not None:
            part.close()
        out.close()
        conn.close()


async def _child(spec: WorkerSpec, conn: Connection, out: socket.socket, part: _Part | None) -> None:
    loop = asyncio.get_running_loop()
    start: asyncio.Future[int | None] = loop.create_future()

    def send(kind: str, arg: Any) -> None:
        out.sendall(_frame(kind, arg))

    def rows_at() -> int:
        return 0 if part is None else part.flush()

    def tick(figures: Figures, progress: Progress) -> None:
        send("tick", (*tick_to_plain(figures, progress), rows_at()))  # the rows of the same instant

    async def ready() -> int | None:
        send("ready", None)
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

    worker = Worker(spec, request_sink=part, on_tick=tick, ready=ready)
    threading.Thread(target=read, name="worker-commands", daemon=True).start()
    try:
        report = await worker.run()
    except LoadtestError as exc:
        send("error", (exc.exit_code, str(exc)))
        return
    send("report", (report_to_plain(report), rows_at()))


# ---------------------------------------------------------------------------- the coordinator's side


class _Inbox:
    """The messages of one child, read from its non-blocking socket as they come, in pieces."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.closed = False  # the child's end is closed: nothing more will come
        self._buf = bytearray()

    def read(self, *, chunks: int | None = 16) -> list[tuple[str, Any]]:
        """The whole messages that arrived: up to ``chunks`` reads (the rest on the next call,
        so a chatty child cannot hold the loop), None: until nothing is left. A message cut
        short by the child's death is never returned."""
        n = 0
        while not self.closed and (chunks is None or n < chunks):
            n += 1
            try:
                data = os.read(self.fd, _READ_CHUNK)
            except BlockingIOError:
                break
            except OSError:  # e.g. ECONNRESET: the child is gone
                data = b""
            if not data:
                self.closed = True
                break
            self._buf += data
        messages, pos, buf = [], 0, self._buf
        while len(buf) - pos >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buf, pos)
            if len(buf) - pos - _HEADER.size < size:
                break
            pos += _HEADER.size
            messages.append(pickle.loads(buf[pos:pos + size]))
            pos += size
        del buf[:pos]
        return messages


class _Child(WorkerView):
    """One worker process as the coordinator sees it."""

    def __init__(self, index: int, process: Any, conn: Connection) -> None:
        super().__init__(index)
        self.process = process  # multiprocessing.Process
        self.conn = conn
        self.inbox = _Inbox(conn.fileno())
        self.rows_at = 0  # bytes of its part that hold the rows its figures so far count

    def on_message(self, kind: str, arg: Any) -> None:
        if kind == "ready":
            self.on_ready()
        elif kind == "tick":
            figures, progress, self.rows_at = arg
            self.on_plain_tick((figures, progress))
        elif kind == "report":
            report, self.rows_at = arg
            self.on_report(report_from_plain(report))
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

    def _readable(self, ch: _Child, *, chunks: int | None = 16) -> None:
        if ch.inbox.closed:
            return
        for kind, arg in ch.inbox.read(chunks=chunks):
            ch.on_message(kind, arg)
        if ch.inbox.closed:
            with contextlib.suppress(OSError, ValueError):
                asyncio.get_running_loop().remove_reader(ch.conn.fileno())
        self._changed.set()

    async def _settle(self, ch: _Child) -> None:
        """A child whose process ended (its socket closed, or it is gone): what it sent is all in
        the socket, so read it all; lost only if that held no report (or error)."""
        if ch.done or not (ch.inbox.closed or not ch.process.is_alive()):
            return
        self._readable(ch, chunks=None)
        if ch.done:
            return
        await asyncio.to_thread(ch.process.join, 2.0)  # its exit code, off the loop
        self._readable(ch, chunks=None)  # (what came while it exited, if the socket had been open)
        if not ch.done:
            ch.lost = f"worker {ch.index} process ended without a report (exit code {ch.process.exitcode})"

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
            for ch in self._children:
                await self._settle(ch)
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
            await asyncio.to_thread(ch.process.join, 5)  # its messages are read meanwhile
            if ch.process.is_alive():
                ch.process.kill()
                await asyncio.to_thread(ch.process.join, 5)
            self._readable(ch, chunks=None)  # the last of what it sent
            with contextlib.suppress(OSError, ValueError):
                asyncio.get_running_loop().remove_reader(ch.conn.fileno())
            ch.conn.close()
        if self._sink is not None:
            for ch in self._children:  # every worker's rows that its figures count, a lost one's too
                _absorb(self._sink, _part_path(self._sink.path.parent, ch.index), ch.rows_at)


def _absorb(sink: RequestCsv, part: Path, size: int) -> None:
    """Append a child's part to ``requests.csv`` up to ``size`` bytes (whole rows: those its
    figures count), then delete it."""
    with contextlib.suppress(OSError):
        if part.stat().st_size > size:
            os.truncate(part, size)
    sink.absorb(part)


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
