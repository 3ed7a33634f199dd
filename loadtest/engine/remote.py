"""What crosses a process (or host) boundary between a worker and its coordinator, whatever runs
the worker (:mod:`loadtest.workerproc`: processes on this host; :mod:`loadtest.rayworkers`: Ray
actors across hosts): the report as plain data, and the coordinator's view of one remote worker
(what its ticks brought, how it ended) with the live line of several merged."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from loadtest.engine.result import Progress, WorkerHealth
from loadtest.engine.worker import WorkerReport
from loadtest.metrics.figures import Figures
from loadtest.metrics.seconds import SecondRow

__all__ = ["RemoteWorker", "StopRelay", "merged_progress", "report_from_plain", "report_to_plain"]


class StopRelay:
    """A coordinator's stop and abort, relayed to its remote workers (processes or Ray actors)
    that are not done, and remembered so that a worker that reports in later gets it too.
    Safe from signal handlers: :meth:`_send` must not block."""

    _stopping: str = ""  # "", "stop" or "abort"

    def _send(self, kind: str) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stopping = self._stopping or "stop"
        self._send("stop")

    def abort(self) -> None:
        self._stopping = "abort"
        self._send("abort")


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


@dataclass
class RemoteWorker:
    """The coordinator's view of one worker elsewhere: what it streamed, and how it ended."""

    index: int
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


def merged_progress(workers: list[RemoteWorker]) -> Progress:
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
