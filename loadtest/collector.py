"""Turns measured events into a run's figures. Pure: every time is passed in (ns).

The I/O layer (connection, session, scheduler) reports what happened; the collector
decides what counts where:

- A request belongs to the phase of its *intended* start: ``warmup`` requests appear
  in the time series and requests.csv, never in the histograms or summary counts.
- Only successful requests feed the latency histograms (ttft, itl, tpot, e2e); a
  failure is counted by category and keeps its own timings in requests.csv.
- Per whole second since the run start, a time-series row; per second of the
  measured phase, one interval snapshot of every histogram (for the .hlog files and
  for exact merging by a coordinator).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loadtest.errors import ERROR_CATEGORIES
from loadtest.metrics import IntervalSnapshot, MetricSet, Recorder

__all__ = ["TIMESERIES_COLUMNS", "Collector", "RequestRecord", "SecondRow"]

_NS_PER_US = 1_000
_NS_PER_S = 1_000_000_000
_MAX_SAMPLES = 5
# A per-second row keeps its histograms (~190 KB each) this long, for the live view's
# rolling window (the last 5 s); older rows keep only the percentiles timeseries.csv
# shows. Unfrozen, three recorders a second grew a 1-hour run by ~2 GB (bench_soak.py).
_LIVE_ROW_S = 10
_ROW_PERCENTILES: tuple[tuple[str, float], ...] = (("ttft", 50), ("ttft", 99), ("e2e", 99), ("loop_lag", 99))

TIMESERIES_COLUMNS: tuple[str, ...] = (
    "t_s", "phase", "offered", "achieved", "active_sessions", "in_flight", "completions",
    "failures", "dropped", *(f"err_{c}" for c in ERROR_CATEGORIES), "unknown_events",
    "chunks", "chars", "ttft_p50_ms", "ttft_p99_ms", "e2e_p99_ms", "loop_lag_p99_ms",
)


@dataclass(slots=True)
class RequestRecord:
    """Everything measured about one ``gen``; times are ``perf_counter_ns`` values (0 = not reached)."""

    request_id: int
    user: int
    phase: str = "measure"
    connection: int = -1
    t_intended: int = 0
    t_send: int = 0
    t_conv: int = 0
    t_first: int = 0
    t_last: int = 0
    t_stop: int = 0
    queue_ns: int = 0
    scheduled: bool = False  # t_intended came from a schedule (open loop, paced user)
    chunks: int = 0
    chars: int = 0
    unknown_events: int = 0
    gaps_ns: list[int] = field(default_factory=list)
    outcome: str = ""  # ok | failed | dropped | cancelled
    error_category: str = ""
    error_message: str = ""
    conversation_id: str = ""
    message_id: str = ""
    prompt_chars: int = 0


@dataclass(slots=True)
class SecondRow:
    """Counters of one whole second of the run."""

    offered: int = 0
    achieved: int = 0
    completions: int = 0
    failures: int = 0
    dropped: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    unknown_events: int = 0
    chunks: int = 0
    chars: int = 0
    active_sessions: int = 0
    in_flight: int = 0
    ttft: Recorder | None = None
    e2e: Recorder | None = None
    loop_lag: Recorder | None = None
    #: set when the row is frozen: {"ttft_p50": ms, ...}; the recorders are then dropped
    frozen: dict[str, float | None] | None = None

    def freeze(self) -> None:
        """Keep the percentiles of this row and release its histograms."""
        if self.frozen is None:
            self.frozen = {f"{n}_p{p:g}": _pct_ms(getattr(self, n), p) for n, p in _ROW_PERCENTILES}
            self.ttft = self.e2e = self.loop_lag = None

    def pct_ms(self, name: str, p: float) -> float | None:
        if self.frozen is not None:
            return self.frozen[f"{name}_p{p:g}"]
        return _pct_ms(getattr(self, name), p)


def _rec(row: SecondRow, name: str) -> Recorder:
    r: Recorder | None = getattr(row, name)
    if r is None:
        r = Recorder()
        setattr(row, name, r)
    return r


class Collector:
    """Accumulates one worker's measurements. Not thread-safe; one event loop feeds it."""

    def __init__(
        self,
        *,
        t0_ns: int,
        warmup_s: float,
        request_sink: Callable[[RequestRecord, int], None] | None = None,
    ) -> None:
        self.t0_ns = t0_ns
        self.warmup_ns = round(warmup_s * _NS_PER_S)
        self.metrics = MetricSet()
        self.intervals: list[IntervalSnapshot] = []
        self.seconds: dict[int, SecondRow] = {}
        self._sink = request_sink
        self._next_interval_s = 0
        self._next_freeze_s = 0
        # summary counters (measured phase only)
        self.started = 0
        self.completed = 0
        self.failed = 0
        self.dropped = 0
        self.cancelled = 0
        self.errors: Counter[str] = Counter({c: 0 for c in ERROR_CATEGORIES})
        self.unknown_events = 0
        self.error_samples: dict[str, list[str]] = {}
        self.reconnects = 0
        self.chunks = 0
        self.chars = 0
        self.chunks_per_answer: Counter[int] = Counter()
        self.offered = 0
        self.achieved = 0

    # ------------------------------------------------------------------ helpers

    def second(self, t_ns: int) -> SecondRow:
        s = max(0, (t_ns - self.t0_ns) // _NS_PER_S)
        row = self.seconds.get(s)
        if row is None:
            row = self.seconds[s] = SecondRow()
        return row

    def phase_of(self, t_ns: int) -> str:
        return "warmup" if t_ns - self.t0_ns < self.warmup_ns else "measure"

    def _sample(self, category: str, message: str) -> None:
        samples = self.error_samples.setdefault(category, [])
        if len(samples) < _MAX_SAMPLES and message not in samples:
            samples.append(message[:300])

    # ------------------------------------------------------------------ events

    def on_offered(self, t_intended_ns: int) -> None:
        """The schedule intended a request at this time (open loop, or a paced user)."""
        self.second(t_intended_ns).offered += 1
        if self.phase_of(t_intended_ns) == "measure":
            self.offered += 1

    def on_sent(self, rec: RequestRecord) -> None:
        row = self.second(rec.t_send)
        row.achieved += 1
        if not rec.scheduled:
            # an unpaced closed loop has no schedule: what the users issued is what was offered
            row.offered += 1
        if rec.phase == "measure":
            self.started += 1
            self.achieved += 1

    def on_setup(self, *, connect_ns: int = 0, auth_ns: int = 0, set_model_ns: int = 0, at_ns: int) -> None:
        """A connection was set up (connect → auth → set-model).

        Recorded in every phase: connections are mostly opened at the start, inside the
        warmup, and their setup time is a figure users want, not a transient to discard.
        """
        m = self.metrics
        if connect_ns:
            m.record("connect", connect_ns / _NS_PER_US)
        if auth_ns:
            m.record("auth", auth_ns / _NS_PER_US)
        if set_model_ns:
            m.record("set_model", set_model_ns / _NS_PER_US)

    def on_ping(self, rtt_ns: int, at_ns: int) -> None:
        if self.phase_of(at_ns) == "measure":
            self.metrics.record("ping_rtt", rtt_ns / _NS_PER_US)

    def on_loop_lag(self, lag_ns: int, at_ns: int) -> None:
        _rec(self.second(at_ns), "loop_lag").record_us(lag_ns / _NS_PER_US)
        if self.phase_of(at_ns) == "measure":
            self.metrics.record("loop_lag", lag_ns / _NS_PER_US)

    def on_failure(self, category: str, message: str, at_ns: int) -> None:
        """A failure outside a request (connect, auth, ping): counted by category only."""
        self.second(at_ns).errors[category] += 1
        if self.phase_of(at_ns) == "measure":
            self.errors[category] += 1
            self._sample(category, message)

    def on_reconnect(self) -> None:
        self.reconnects += 1

    def on_request(self, rec: RequestRecord, now_ns: int) -> None:
        """A request ended (ok, failed, dropped or cancelled). Records and forwards it."""
        measured = rec.phase == "measure"
        row = self.second(rec.t_stop or now_ns)
        if rec.unknown_events:
            row.unknown_events += rec.unknown_events
            if measured:
                self.unknown_events += rec.unknown_events
        row.chunks += rec.chunks
        row.chars += rec.chars
        if measured:
            self.chunks += rec.chunks
            self.chars += rec.chars
        if rec.outcome == "ok":
            row.completions += 1
            start = rec.t_intended or rec.t_send
            if rec.t_first:
                _rec(row, "ttft").record_us((rec.t_first - start) / _NS_PER_US)
            _rec(row, "e2e").record_us((rec.t_stop - start) / _NS_PER_US)
            if measured:
                self.completed += 1
                self._record_success(rec, start)
        elif rec.outcome == "failed":
            row.failures += 1
            row.errors[rec.error_category] += 1
            if measured:
                self.failed += 1
                self.errors[rec.error_category] += 1
                self._sample(rec.error_category, rec.error_message)
        elif rec.outcome == "dropped":
            row.dropped += 1
            if measured:
                self.dropped += 1
        elif measured:
            self.cancelled += 1
        if self._sink is not None:
            self._sink(rec, self.t0_ns)

    def _record_success(self, rec: RequestRecord, start: int) -> None:
        m = self.metrics
        if rec.t_first:
            m.record("ttft", (rec.t_first - start) / _NS_PER_US)
            m.record("ttft_uncorrected", (rec.t_first - rec.t_send) / _NS_PER_US)
        m.record("e2e", (rec.t_stop - start) / _NS_PER_US)
        m.record("e2e_uncorrected", (rec.t_stop - rec.t_send) / _NS_PER_US)
        if rec.scheduled:
            # a lag or queue wait below 1 µs is 0 within the histogram's resolution: record
            # it as 1 µs rather than let it count as out of range
            lag_ns = rec.t_send - rec.queue_ns - rec.t_intended
            m.record("schedule_lag", max(_NS_PER_US, lag_ns) / _NS_PER_US)
            m.record("queue", max(_NS_PER_US, rec.queue_ns) / _NS_PER_US)
        # every gap, one value each, in one pass (same rounding and clamping as record_us)
        m.interval("itl").record_ns_many(rec.gaps_ns)
        if rec.chunks > 1 and rec.t_last > rec.t_first:
            m.record("tpot", (rec.t_last - rec.t_first) / (rec.chunks - 1) / _NS_PER_US)
        self.chunks_per_answer[rec.chunks] += 1

    # ------------------------------------------------------------------ time

    def tick(self, now_ns: int, *, active_sessions: int, in_flight: int) -> None:
        """Call about once a second: samples gauges and closes whole measured seconds."""
        row = self.second(now_ns)
        row.active_sessions = max(row.active_sessions, active_sessions)
        row.in_flight = max(row.in_flight, in_flight)
        self.close_intervals(now_ns)
        # samples are recorded at "now", so a row this far behind gets no more of them
        upto = (now_ns - self.t0_ns) // _NS_PER_S - _LIVE_ROW_S
        while self._next_freeze_s < upto:
            old = self.seconds.get(self._next_freeze_s)
            if old is not None:
                old.freeze()
            self._next_freeze_s += 1

    def close_intervals(self, now_ns: int, *, final: bool = False) -> None:
        """Snapshot every whole measured second that has ended (all of them when final)."""
        elapsed_s = (now_ns - self.t0_ns) / _NS_PER_S
        warm_s = self.warmup_ns / _NS_PER_S
        while True:
            start = max(warm_s, float(self._next_interval_s))
            end = float(self._next_interval_s + 1)
            if end > elapsed_s:
                if final and start < elapsed_s:
                    self.intervals.append(self.metrics.snapshot(start, elapsed_s))
                    self._next_interval_s += 1
                return
            if end > warm_s:
                self.intervals.append(self.metrics.snapshot(start, end))
            self._next_interval_s += 1

    # ------------------------------------------------------------------ output

    def timeseries(self) -> list[dict[str, Any]]:
        if not self.seconds:
            return []
        rows = []
        warm_s = self.warmup_ns / _NS_PER_S
        for s in range(0, max(self.seconds) + 1):
            r = self.seconds.get(s) or SecondRow()
            row: dict[str, Any] = {
                "t_s": s,
                "phase": "warmup" if s < warm_s else "measure",
                "offered": r.offered,
                "achieved": r.achieved,
                "active_sessions": r.active_sessions,
                "in_flight": r.in_flight,
                "completions": r.completions,
                "failures": r.failures,
                "dropped": r.dropped,
            }
            for c in ERROR_CATEGORIES:
                row[f"err_{c}"] = r.errors.get(c, 0)
            row["unknown_events"] = r.unknown_events
            row["chunks"] = r.chunks
            row["chars"] = r.chars
            row["ttft_p50_ms"] = r.pct_ms("ttft", 50)
            row["ttft_p99_ms"] = r.pct_ms("ttft", 99)
            row["e2e_p99_ms"] = r.pct_ms("e2e", 99)
            row["loop_lag_p99_ms"] = r.pct_ms("loop_lag", 99)
            rows.append(row)
        return rows


def _pct_ms(r: Recorder | None, p: float) -> float | None:
    if r is None or r.count == 0:
        return None
    v = r.percentile_us(p)
    return None if v is None else round(v / 1000, 3)
