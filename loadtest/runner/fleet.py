"""The backend interface: a :class:`Fleet` runs one run's workers somewhere, a :class:`Backend`
makes fleets. In-process (:mod:`~loadtest.runner.inprocess`), worker processes on this host
(:mod:`~loadtest.runner.processes`) and Ray actors across hosts (:mod:`~loadtest.runner.rayactors`)
are three implementations; the coordinator (:mod:`loadtest.runner.coordinator`) drives each the
same way and never asks which it has (Locust's ``Runner`` shape). A new backend is one file: a
``Fleet`` subclass and a ``Backend``, named in :data:`loadtest.runner.coordinator.BACKEND_MODULES`.

The coordinator calls, in order::

    await fleet.launch()        every worker set up (probe, pool): ready, or done (it failed)
    fleet.begin(at_epoch_ns)    the common t0 (wall clock) that the workers' windows share
    await fleet.wait(on_second) until every worker is done; on_second() about once a second
    await fleet.close()         processes joined, actors killed, rows brought home: always called
    fleet.collect()             the reports (a lost worker's: what it streamed before the loss)

and, at any moment, ``stop()`` (a first Ctrl-C: stop starting work, drain) or ``abort()`` (a
second: end the drain). Those are called from signal handlers, so :meth:`Fleet._send` must not
block; a stop that comes before a worker reports in is remembered and sent to it then.

While the run goes, each worker streams interval snapshots: a tick of what is new in its
:class:`~loadtest.metrics.figures.Figures` (closed interval snapshots, settled seconds, the
counters so far) and its live :class:`~loadtest.engine.result.Progress`, kept per worker in a
:class:`WorkerView`. The live line merges them (:meth:`Fleet.progress`); a worker that is lost
keeps what its ticks brought, so its data up to the loss is merged into the run.

What crosses a process or host boundary is plain data: :func:`report_to_plain` /
:func:`report_from_plain`, :func:`tick_to_plain`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from loadtest.engine.result import Progress, WorkerHealth
from loadtest.engine.worker import WorkerReport, WorkerSpec
from loadtest.errors import LoadtestError, error_for
from loadtest.metrics.collector import RequestRecord
from loadtest.metrics.figures import Figures
from loadtest.metrics.seconds import SecondRow
from loadtest.metrics.tags import TagFigures

__all__ = [
    "Backend",
    "Fleet",
    "RowSink",
    "WorkerView",
    "merged_progress",
    "report_from_plain",
    "report_to_plain",
    "tick_to_plain",
]

#: where request rows go (the run directory's ``requests.csv``): ``sink(record, t0_ns)``
RowSink = Callable[[RequestRecord, int], None]


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


def tick_to_plain(figures: Figures, progress: Progress) -> tuple[dict[str, Any], dict[str, Any]]:
    return figures.to_plain(), dataclasses.asdict(progress)


@dataclass
class WorkerView:
    """The coordinator's view of one worker: what it streamed, and how it ended."""

    index: int
    ready: bool = False
    progress: Progress | None = None
    report: WorkerReport | None = None
    error: LoadtestError | None = None
    lost: str = ""
    # what the ticks brought: the latest counters, every interval and settled second
    partial: Figures = field(default_factory=Figures)

    def on_ready(self) -> None:
        self.ready = True

    def on_tick(self, figures: Figures, progress: Progress) -> None:
        self.progress = progress
        p = self.partial
        p.counts, p.errors, p.drain = figures.counts, figures.errors, figures.drain
        p.failed_samples, p.chunks_per_answer, p.error_samples = (figures.failed_samples, figures.chunks_per_answer,
                                                                  figures.error_samples)
        p.turns_per_conversation = figures.turns_per_conversation
        p.warmup_s, p.window_end_s = figures.warmup_s, figures.window_end_s
        p.intervals.extend(figures.intervals)
        p.tags_folded = figures.tags_folded
        for tag, tf in figures.tags.items():  # counters are cumulative, intervals new since the last tick
            mine = p.tags.setdefault(tag, TagFigures())
            mine.counts, mine.errors = tf.counts, tf.errors
            mine.intervals.extend(tf.intervals)
        for s, row in figures.seconds.items():
            p.seconds.setdefault(s, SecondRow()).add(row)

    def on_plain_tick(self, tick: Any) -> None:
        figures, progress = tick
        self.on_tick(Figures.from_plain(figures), Progress(**progress))

    def on_report(self, report: WorkerReport) -> None:
        self.report = report

    def on_error(self, exit_code: int, message: str) -> None:
        """The worker could not run (unreachable, bad input on its host): ``exit_code`` and why."""
        self.error = error_for(int(exit_code), str(message))

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


class Fleet:
    """One run's workers, wherever they run (the order of calls: the module docstring)."""

    #: after every worker is set up, t0 is this far ahead: time for the start to reach them all
    start_delay_s: float = 0.0

    def __init__(self, views: list[WorkerView]) -> None:
        self.views = views
        self._stopping = ""  # "", "stop" or "abort": relayed to workers that are not done

    async def launch(self) -> None:
        raise NotImplementedError

    def begin(self, at_epoch_ns: int) -> None:
        raise NotImplementedError

    async def wait(self, on_second: Callable[[], None] | None = None) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def _send(self, kind: str) -> None:
        """Relay ``"stop"`` or ``"abort"`` to every worker that is not done; never blocks."""
        raise NotImplementedError

    # -- shared by every backend

    @property
    def stopping(self) -> str:
        return self._stopping

    def stop(self) -> None:
        self._stopping = self._stopping or "stop"
        self._send("stop")

    def abort(self) -> None:
        self._stopping = "abort"
        self._send("abort")

    def progress(self) -> Progress:
        """The live line of the whole run (:func:`merged_progress`)."""
        return merged_progress(self.views)

    def collect(self) -> tuple[list[WorkerReport], list[str]]:
        """Every worker's report that can be merged (a lost worker's: what its ticks brought), and
        one line per worker whose report is missing. Raises the first worker's error when no
        worker could run at all (e.g. TargetUnreachable, exit 3)."""
        reports = [v.final() for v in self.views if v.error is None]
        if not reports:
            errors = [v.error for v in self.views if v.error is not None]
            raise errors[0] if errors else LoadtestError("no worker reported")
        lost = [v.lost or f"worker {v.index}: {v.error or 'no report'}" for v in self.views if v.report is None]
        return reports, lost


class Backend(Protocol):
    """Makes the fleets of one kind of backend (one object per module, e.g. ``PROCESSES``)."""

    def session(self, sc: Any, options: Any) -> contextlib.AbstractContextManager[Any]:
        """Held around the run: e.g. connected to a Ray cluster (nothing for local processes)."""
        ...

    def resolve_workers(self, sc: Any, requested: int | str) -> int:
        """How many workers: a number, or ``auto`` as this backend reads it (inside the session)."""
        ...

    def preflight(self, sc: Any, options: Any, *, apply: bool = True) -> list[str]:
        """Checks before anything connects (BadInput, exit 2); returns note lines. ``apply``
        False: only say what a run would change (``loadtest validate``)."""
        ...

    def fleet(self, specs: list[WorkerSpec], *, sink: RowSink | None, options: Any) -> Fleet:
        """The fleet that runs ``specs`` (called on the running event loop)."""
        ...


@contextlib.contextmanager
def no_session(_sc: Any, _options: Any) -> Iterator[None]:
    yield


def merged_progress(workers: list[WorkerView]) -> Progress:
    """The live line of the whole run: counters summed; TTFT percentiles of the workers'
    settled seconds merged (never averaged), over the last five of them."""
    from loadtest.metrics.recorder import Recorder

    latest = [w.progress for w in workers if w.progress is not None]
    ttft = Recorder()
    last = max((s for w in workers for s in w.partial.seconds), default=-1)
    for w in workers:
        for s in range(max(0, last - 4), last + 1):
            row = w.partial.seconds.get(s)
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
