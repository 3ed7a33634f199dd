"""Workers as Ray actors across hosts (``--backend ray``): the actor, and the coordinator's side.

Ray is optional (``pip install 'loadtest[ray]'``): it is imported inside functions only, so
loadtest imports without it. Each actor (:class:`RayWorker`, one CPU, never restarted) runs one
:class:`~loadtest.engine.worker.Worker` on the actor's own event loop (Ray runs async actors on
uvloop when it is installed; the loop class is recorded in ``WorkerHealth.loop``). The actors
are spread over the nodes (``SPREAD``). The coordinator drives them with remote calls, in plain
data:

    clock()          the actor's wall clock and node id: placement is awaited with a timeout
                     (an actor the cluster cannot place ends the run: exit 3), and the clock
                     offset is measured (remote - midpoint of the round trip, best of a few)
    ready()          set up (probe, pool): {"ready": True}, or {"error": (exit_code, message)}
    start(epoch_ns)  the common t0, on the actor's own clock (the coordinator's + the offset)
    poll()           what is new since the last poll: the ticks (partial Figures and Progress,
                     as plain data) and the request rows as CSV text; ``done`` once the run ended.
                     A long poll (it returns when a tick comes, or after a second): the
                     coordinator keeps exactly one outstanding per actor and ``ray.wait``\\ s on
                     them with a timeout, so the live view and signals are served meanwhile
    result()         {"report": WorkerReport as plain data} or {"error": ...}
    stop() / abort() a first / second Ctrl-C

Request rows: the actor formats them (:func:`~loadtest.rundir.writer.request_row`, worker
column set) into CSV text that the polls bring back; the coordinator appends them to the one
``requests.csv``. Nothing is written on the actors' hosts, so no shared file system is needed,
and a lost actor's rows up to its last poll are kept. A lost actor (it died, or its node did):
what its polls brought is merged, and the run names it in ``lost`` (verdict incomplete, exit 5).

Without an address a local Ray is started and stopped here; with one (``--ray-address``,
or ``RAY_ADDRESS``) the cluster is connected to and never stopped. Usage reporting and the
dashboard are off.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadtest.engine.result import Progress
from loadtest.engine.worker import Worker, WorkerReport, WorkerSpec
from loadtest.errors import BadInput, LoadtestError, WorkersUnavailable
from loadtest.metrics.collector import RequestRecord
from loadtest.metrics.figures import Figures
from loadtest.rundir.writer import RequestCsv, request_row
from loadtest.runner.fleet import (
    Fleet,
    RowSink,
    WorkerView,
    report_from_plain,
    report_to_plain,
    tick_to_plain,
)
from loadtest.runner.raysession import check_versions, local_version, ray_session, require_ray

__all__ = ["RAY", "READY_TIMEOUT_ENV", "RayFleet", "RayWorker", "ray_session", "require_ray"]

#: seconds to wait for every actor to be placed (default 60); a cluster without the CPUs: exit 3
READY_TIMEOUT_ENV = "LOADTEST_RAY_READY_TIMEOUT"
_READY_TIMEOUT_S = 60.0
#: after every actor is set up, t0 is this far ahead: time for the start to reach them
_START_DELAY_S = 0.5
_POLL_S = 1.0  # an actor's long poll returns after this at the latest
_WAIT_S = 0.25  # the coordinator's ray.wait timeout
_CLOCK_ROUNDS = 5


# ---------------------------------------------------------------------------- the actor


class RayWorker:
    """One worker in a Ray actor (created by :class:`RayFleet` with ``ray.remote``)."""

    def __init__(self, spec: WorkerSpec, secret: str | None) -> None:
        self._spec = spec
        self._secret = secret
        self._ticks: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self._rows = io.StringIO()
        self._csv = csv.writer(self._rows)
        self._task: asyncio.Task[WorkerReport] | None = None
        self._worker: Worker | None = None
        self._start: asyncio.Future[int | None] | None = None
        self._set_up: asyncio.Event | None = None
        self._news: asyncio.Event | None = None

    async def clock(self) -> dict[str, Any]:
        import ray

        return {"time_ns": time.time_ns(), "node": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                "version": local_version()}

    def _row(self, r: RequestRecord, t0: int) -> None:
        self._csv.writerow(request_row(r, t0, secret=self._secret, worker=self._spec.index))

    def _tick(self, figures: Figures, progress: Progress) -> None:
        self._ticks.append(tick_to_plain(figures, progress))
        if self._news is not None:
            self._news.set()

    async def _ready_hook(self) -> int | None:
        assert self._set_up is not None and self._start is not None
        self._set_up.set()
        return await self._start

    async def ready(self) -> dict[str, Any]:
        """Start the worker (probe, pool) and return once it is set up, or could not run."""
        from loadtest.engine.limits import ensure_open_files
        from loadtest.engine.worker import share

        spec = self._spec
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._start, self._set_up, self._news = loop.create_future(), asyncio.Event(), asyncio.Event()
            try:
                ensure_open_files(share(spec.scenario.load.peak_connections, spec.index, spec.workers))
            except LoadtestError as exc:
                return {"error": (exc.exit_code, str(exc))}
            self._worker = Worker(spec, request_sink=self._row, on_tick=self._tick, ready=self._ready_hook)
            self._task = asyncio.create_task(self._worker.run())
            self._task.add_done_callback(lambda _t: self._news.set() if self._news is not None else None)
        assert self._set_up is not None
        waiter = asyncio.create_task(self._set_up.wait())
        await asyncio.wait([self._task, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._task.done():
            return await self.result()
        return {"ready": True}

    async def start(self, epoch_ns: int | None) -> None:
        if self._start is not None and not self._start.done():
            self._start.set_result(epoch_ns)

    async def stop(self) -> None:
        await self.start(None)
        if self._worker is not None:
            self._worker.stop()

    async def abort(self) -> None:
        await self.start(None)
        if self._worker is not None:
            self._worker.abort()

    async def poll(self) -> dict[str, Any]:
        """What is new since the last poll; waits up to a second for a tick."""
        done = self._task is None or self._task.done()
        if not done and not self._ticks and self._news is not None:
            self._news.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_POLL_S):
                    await self._news.wait()
        # no await from here on: the rows and the done flag are of the same instant
        ticks, self._ticks = self._ticks, []
        rows = self._rows.getvalue()
        self._rows.seek(0)
        self._rows.truncate()
        return {"ticks": ticks, "rows": rows, "done": self._task is None or self._task.done()}

    async def result(self) -> dict[str, Any]:
        if self._task is None:
            return {"error": (70, "the worker was never started")}
        try:
            report = await self._task
        except LoadtestError as exc:
            return {"error": (exc.exit_code, str(exc))}
        return {"report": report_to_plain(report)}


# ---------------------------------------------------------------------------- the coordinator's side


@dataclass
class _Actor(WorkerView):
    """One Ray actor as the coordinator sees it."""

    handle: Any = None
    node: str = ""
    offset_ns: int = 0
    pending: Any = None  # the one outstanding call (an ObjectRef)
    kind: str = ""  # what it is: "ready", "poll" or "result"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


class RayFleet(Fleet):
    """The actors of one run, driven from the coordinator's event loop."""

    start_delay_s = 0.5

    def __init__(self, specs: list[WorkerSpec], *, sink: RequestCsv | None, secret: str | None,
                 ready_timeout_s: float | None = None) -> None:
        ray = self._ray = require_ray()
        if ready_timeout_s is None:
            try:
                ready_timeout_s = float(os.environ.get(READY_TIMEOUT_ENV) or _READY_TIMEOUT_S)
            except ValueError:
                raise BadInput(f"{READY_TIMEOUT_ENV} must be a number of seconds") from None
        self._timeout_s = ready_timeout_s
        self._sink = sink
        cls = ray.remote(num_cpus=1, max_restarts=0)(RayWorker)
        self.actors = [_Actor(s.index, handle=cls.options(scheduling_strategy="SPREAD",
                                                          name=None).remote(s, secret)) for s in specs]
        super().__init__(list(self.actors))

    # -- commands (from signal handlers too: .remote() does not block)

    def _send(self, kind: str) -> None:
        for a in self.actors:
            if not a.done:
                with contextlib.suppress(Exception):
                    getattr(a.handle, kind).remote()

    # -- the run

    async def _wait(self, refs: list[Any], timeout: float) -> list[Any]:
        ready, _ = await asyncio.to_thread(self._ray.wait, refs, num_returns=len(refs), timeout=timeout)
        return list(ready)

    async def _place(self) -> None:
        """Every actor placed (within the timeout) and its clock offset measured."""
        ray = self._ray
        refs = {a.handle.clock.remote(): a for a in self.actors}
        deadline = time.monotonic() + self._timeout_s
        placed: list[Any] = []
        while len(placed) < len(refs) and time.monotonic() < deadline and not self._stopping:
            placed += await self._wait([r for r in refs if r not in placed],
                                       min(_WAIT_S * 4, max(0.0, deadline - time.monotonic())))
        if len(placed) < len(refs):
            if self._stopping:
                raise KeyboardInterrupt
            cpus = ray.cluster_resources().get("CPU", 0)
            free = ray.available_resources().get("CPU", 0)
            raise WorkersUnavailable(
                f"{len(refs) - len(placed)} of {len(refs)} Ray workers could not be placed within "
                f"{self._timeout_s:g} s: each needs 1 CPU, the cluster has {cpus:g} CPUs ({free:g} free). "
                f"Ask for fewer --workers, add nodes, or raise {READY_TIMEOUT_ENV}."
            )
        versions: dict[int, str] = {}
        for ref, a in refs.items():
            try:
                info = await asyncio.to_thread(ray.get, ref)
            except Exception as exc:  # the actor died while being created
                raise WorkersUnavailable(f"Ray worker {a.index} could not start: {_short(exc)}") from None
            a.node, versions[a.index] = info["node"], str(info.get("version", "?"))
        check_versions(versions)  # a host with another loadtest: exit 3 naming both
        await asyncio.to_thread(self._measure_clocks)

    def _measure_clocks(self) -> None:
        """offset = remote clock - the midpoint of the round trip; the round trip kept is the
        shortest of a few (the least queueing, so the tightest bound on the error)."""
        for a in self.actors:
            best: tuple[int, int] | None = None
            for _ in range(_CLOCK_ROUNDS):
                before = time.time_ns()
                remote = self._ray.get(a.handle.clock.remote())["time_ns"]
                after = time.time_ns()
                if best is None or after - before < best[0]:
                    best = (after - before, remote - (before + after) // 2)
            a.offset_ns = best[1] if best else 0

    def _absorb(self, a: _Actor, kind: str, value: Any) -> None:
        if kind == "ready":
            if "error" in value:
                a.on_error(*value["error"])
            else:
                a.on_ready()
        elif kind == "poll":
            for tick in value["ticks"]:
                a.on_plain_tick(tick)
            if self._sink is not None:
                self._sink.append_text(value["rows"])
        elif "report" in value:
            a.on_report(report_from_plain(value["report"]))
        else:
            a.on_error(*value["error"])

    async def _drive(self, until: Callable[[], bool], on_round: Callable[[], None] | None = None) -> None:
        """Keep one call outstanding per actor (the next poll, or its result) until ``until()``."""
        ray = self._ray
        while not until():
            pending = {a.pending: a for a in self.actors if a.pending is not None and not a.done}
            if not pending:
                return
            for ref in await self._wait(list(pending), _WAIT_S):
                a = pending[ref]
                kind, a.pending = a.kind, None
                try:
                    value = await asyncio.to_thread(ray.get, ref)
                except Exception as exc:  # RayActorError (the actor or its node died), or a bug in it
                    a.lost = f"worker {a.index} (Ray actor on node {a.node[:12]}) was lost: {_short(exc)}"
                    continue
                self._absorb(a, kind, value)
                if a.done or kind == "ready":  # set up: it waits for the start
                    continue
                a.kind = "result" if value["done"] else "poll"
                a.pending = getattr(a.handle, a.kind).remote()
            if on_round is not None:
                on_round()

    async def launch(self) -> None:
        """Every actor placed (exit 3 if the cluster cannot), then set up (probe, pool)."""
        await self._place()
        for a in self.actors:
            a.kind, a.pending = "ready", a.handle.ready.remote()
        await self._drive(lambda: all(a.ready or a.done for a in self.actors))

    def begin(self, at_epoch_ns: int) -> None:
        for a in self.actors:
            if a.ready and not a.done:
                a.handle.start.remote(at_epoch_ns + a.offset_ns)  # on the actor's own clock
                a.kind, a.pending = "poll", a.handle.poll.remote()
        if self.stopping:
            self._send(self.stopping)

    async def wait(self, on_second: Callable[[], None] | None = None) -> None:
        await self._drive(lambda: all(a.done for a in self.actors), on_round=on_second)

    async def close(self) -> None:
        for a in self.actors:
            with contextlib.suppress(Exception):
                self._ray.kill(a.handle, no_restart=True)

    def collect(self) -> tuple[list[WorkerReport], list[str]]:
        reports, lost = super().collect()
        by_index = {a.index: a for a in self.actors}
        return [self._final(by_index[r.index], r) for r in reports], lost

    @staticmethod
    def _final(a: _Actor, r: WorkerReport) -> WorkerReport:
        """A report on the coordinator's clock, naming the node it ran on."""
        offset_ms = round(a.offset_ns / 1e6, 3)
        r.health = dataclasses.replace(r.health, node=a.node, clock_offset_ms=offset_ms)
        if r.started_at_epoch_ns:  # on the coordinator's clock
            r.started_at_epoch_ns -= a.offset_ns
        return r


class _RayBackend:
    """Ray actors across a cluster's hosts (``--backend ray``, ``--ray-address``)."""

    def session(self, sc: Any, options: Any) -> contextlib.AbstractContextManager[Any]:
        return ray_session(options.ray_address, workers=options.workers_for(sc))

    def resolve_workers(self, sc: Any, workers: int | str) -> int:
        """How many actors: a number, or ``auto`` (the cluster's CPUs minus one); never more
        than the closed loop's users."""
        ray = require_ray()
        n = max(1, int(ray.cluster_resources().get("CPU", 1)) - 1) if workers == "auto" else int(workers)
        if sc.load.mode == "closed":
            n = min(n, max(1, sc.load.peak_connections))
        return max(1, n)

    def preflight(self, sc: Any, options: Any, *, apply: bool = True) -> list[str]:
        require_ray()  # each actor checks its own host's open-file limit
        return []

    def fleet(self, specs: list[WorkerSpec], *, sink: RowSink | None, options: Any) -> Fleet:
        return RayFleet(specs, sink=sink if isinstance(sink, RequestCsv) else None, secret=options.api_key)


RAY = _RayBackend()
