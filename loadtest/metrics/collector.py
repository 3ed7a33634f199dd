"""Turns measured events into a run's figures. Pure: every time is passed in (ns).

The I/O layer (connection, session, scheduler) reports what happened; the collector
decides what counts where:

- **The measured window** is ``[t0 + warmup, t0 + duration)``, cut short at the moment the
  run was stopped early (signal, request cap; :meth:`Collector.end_window`). Every *rate*
  counts events whose own time lies inside it (a send by ``t_send``, an answer by
  ``t_stop``, a chunk by its arrival) and is divided by the window's length. What ends after
  the window (in-flight streams finishing, queued requests still sent) is the *drain*: it
  is counted on its own and in no rate.
- **The cohort**: a request belongs to the phase of its *intended* start. ``warmup``
  requests appear in the time series and requests.csv, never in the histograms or the
  summary's request counts; requests intended inside the window are the run's requests
  (``offered`` = ``completed + failed + dropped + cancelled``), wherever they end.
- Latency histograms hold the cohort's requests. ``e2e`` and ``tpot`` only completed
  answers; ``ttft`` and ``itl`` also what a request that failed after its first token
  really observed (counted apart in ``failed_samples``). The generator's own figures
  (``schedule_lag``, ``send_lag``, ``queue``) hold every sent request, whatever its outcome.
- Per whole second since the run start, a time-series row (events by their own time); per
  second from the end of warmup, one interval snapshot of every histogram (for the .hlog
  files and for exact merging by a coordinator). A sample goes to the interval of the time
  it was taken: the intervals it has passed are closed first, so a loop stall cannot pile
  samples of a later second into an earlier one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from loadtest.errors import ERROR_CATEGORIES
from loadtest.metrics.conversations import ConversationTally
from loadtest.metrics.figures import COUNTS, MAX_ERROR_SAMPLES, Figures
from loadtest.metrics.goodput import GoodputRule
from loadtest.metrics.metricset import IntervalSnapshot, MetricSet
from loadtest.metrics.placement import place_chunks
from loadtest.metrics.record import RequestRecord, tpot_ns
from loadtest.metrics.samples import record_observed, record_success
from loadtest.metrics.seconds import TIMESERIES_COLUMNS, SecondRow, timeseries_rows
from loadtest.metrics.tags import TagFigures, TagTable

__all__ = ["TIMESERIES_COLUMNS", "Collector", "RequestRecord", "SecondRow", "tpot_ns"]

_NS_PER_US = 1_000
_NS_PER_S = 1_000_000_000
_MAX_SAMPLES = MAX_ERROR_SAMPLES
_FAR_FUTURE_NS = 1 << 62
# A per-second row keeps its histograms (~190 KB each) this long, for the live view's
# rolling window (the last 5 s); older rows keep only the percentiles timeseries.csv
# shows. Unfrozen, three recorders a second grew a 1-hour run by ~2 GB (bench_soak.py).
_LIVE_ROW_S = 10

class Collector:
    """Accumulates one worker's measurements. Not thread-safe; one event loop feeds it.

    ``duration_s`` ends the measured window (None: open-ended until :meth:`end_window`).
    """

    def __init__(
        self,
        *,
        t0_ns: int,
        warmup_s: float,
        duration_s: float | None = None,
        request_sink: Callable[[RequestRecord, int], None] | None = None,
        goodput: GoodputRule | None = None,
        mirror_tags: frozenset[str] = frozenset(),
    ) -> None:
        self.warmup_ns = round(warmup_s * _NS_PER_S)
        self._duration_ns = None if duration_s is None else round(duration_s * _NS_PER_S)
        self.metrics = MetricSet()
        self.intervals: list[IntervalSnapshot] = []
        self.seconds: dict[int, SecondRow] = {}
        self._sink = request_sink
        self._goodput = goodput
        #: per ``key=value``: counters and latency histograms of the cohort's requests
        self.tags = TagTable(mirror_tags)
        self._tag_intervals_sent: dict[str, int] = {}
        self._next_interval_s = 0
        self._next_close_ns = 0
        self._next_freeze_s = 0
        self._rows_sent = 0
        self._intervals_sent = 0
        self.start(t0_ns)
        # the cohort: requests intended inside the window, wherever they end
        self.started = 0
        self.completed = 0
        self.failed = 0
        self.dropped = 0
        self.cancelled = 0
        self.offered = 0  # scheduled arrivals (open loop, paced users) intended in the window
        self.sent_after_window = 0
        self.early_sends = 0
        self.errors: Counter[str] = Counter({c: 0 for c in ERROR_CATEGORIES})
        self.unknown_events = 0
        self.error_samples: dict[str, list[str]] = {}
        self.reconnects = 0
        self.chunks_per_answer: Counter[int] = Counter()
        self.abandoned = 0  # the cohort's answers the user stopped reading
        self.conversations = ConversationTally()
        #: latency samples taken from requests that then failed: {"ttft": n, "itl": n}
        self.failed_samples: Counter[str] = Counter()
        # events inside the window, by their own time (the numerators of every rate)
        self.sent_in_window = 0
        self.ok_in_window = 0
        self.chunks = 0
        self.chars = 0
        # goodput and tokens (the cohort's completed answers; output tokens in the window by chunk arrival)
        self.good = self.good_in_window = self.answers_tokenized = self.output_tokens = self.output_tokens_in_window = 0
        self.prompt_tokens = self.tokenized_chunks = 0
        # session steps (connection set-ups, pings, set-models) inside the window
        self.steps = 0
        self.steps_failed = 0
        # requests that ended after the window (the drain)
        self.drain: Counter[str] = Counter({"completed": 0, "failed": 0, "cancelled": 0})

    # ------------------------------------------------------------------ the window

    def start(self, t0_ns: int) -> None:
        """(Re)start the run's clock at ``t0_ns``: the window is measured from here."""
        self.t0_ns = t0_ns
        self.window_start_ns = t0_ns + self.warmup_ns
        self.window_end_ns = _FAR_FUTURE_NS if self._duration_ns is None else t0_ns + self._duration_ns
        self._next_close_ns = t0_ns + (self._next_interval_s + 1) * _NS_PER_S

    def end_window(self, at_ns: int) -> None:
        """The run stopped early (signal, request cap): the window ends at ``at_ns``.

        Exact for on-the-fly counting: every event counted so far happened before ``at_ns``
        (times never run ahead of the clock), every later one is tested against the new end.
        """
        self.window_end_ns = max(self.window_start_ns, min(self.window_end_ns, at_ns))

    @property
    def window_s(self) -> float:
        """Length of the measured window in seconds (0 if it never opened)."""
        if self.window_end_ns >= _FAR_FUTURE_NS:
            raise ValueError("the window has no end yet: end_window() or duration_s")
        return max(0, self.window_end_ns - self.window_start_ns) / _NS_PER_S

    def in_window(self, t_ns: int) -> bool:
        return self.window_start_ns <= t_ns < self.window_end_ns

    # ------------------------------------------------------------------ helpers

    def second(self, t_ns: int) -> SecondRow:
        s = max(0, (t_ns - self.t0_ns) // _NS_PER_S)
        row = self.seconds.get(s)
        if row is None:
            row = self.seconds[s] = SecondRow()
        return row

    def phase_of(self, t_ns: int) -> str:
        """The phase of a request intended at ``t_ns``: ``warmup`` or ``measure``."""
        return "warmup" if t_ns < self.window_start_ns else "measure"

    def _sample(self, category: str, message: str) -> None:
        samples = self.error_samples.setdefault(category, [])
        if len(samples) < _MAX_SAMPLES and message not in samples:
            samples.append(message[:300])

    def _at(self, t_ns: int) -> None:
        """A sample taken at ``t_ns`` is about to be recorded: close the intervals it passed."""
        if t_ns >= self._next_close_ns:
            self.close_intervals(t_ns)

    # ------------------------------------------------------------------ events

    def on_offered(self, t_intended_ns: int) -> None:
        """The schedule intended a request at this time (open loop, or a paced user)."""
        self.second(t_intended_ns).offered += 1
        if self.in_window(t_intended_ns):
            self.offered += 1

    def on_sent(self, rec: RequestRecord) -> None:
        if rec.turn > 1:  # a later turn of a conversation: the schedule offers conversations
            if rec.phase == "measure":
                self.started += 1
            return
        row = self.second(rec.t_send)
        row.achieved += 1
        if not rec.scheduled:
            # an unpaced closed loop has no schedule: what the users issued is what was offered
            row.offered += 1
        if rec.phase == "measure":
            self.started += 1
        if self.in_window(rec.t_send):
            self.sent_in_window += 1

    def on_setup(self, *, connect_ns: int = 0, auth_ns: int = 0, set_model_ns: int = 0, at_ns: int) -> None:
        """A connection was set up (connect → auth → set-model): one session step served.

        The set-up times are recorded in every phase: connections are mostly opened at the
        start, inside the warmup, and their setup time is a figure users want.
        """
        self._at(at_ns)
        m = self.metrics
        if connect_ns:
            m.record("connect", connect_ns / _NS_PER_US)
        if auth_ns:
            m.record("auth", auth_ns / _NS_PER_US)
        if set_model_ns:
            m.record("set_model", set_model_ns / _NS_PER_US)
        self.on_step(at_ns)

    def on_step(self, at_ns: int) -> None:
        """A session step (set-up, ping, set-model) the target served."""
        if self.in_window(at_ns):
            self.steps += 1

    def on_ping(self, rtt_ns: int, at_ns: int) -> None:
        self._at(at_ns)
        if self.in_window(at_ns):
            self.metrics.record("ping_rtt", rtt_ns / _NS_PER_US)
        self.on_step(at_ns)

    def on_loop_lag(self, lag_ns: int, at_ns: int) -> None:
        self._at(at_ns)
        self.second(at_ns).recorder("loop_lag").record_us(lag_ns / _NS_PER_US)
        if self.in_window(at_ns):
            self.metrics.record("loop_lag", lag_ns / _NS_PER_US)

    def on_failure(self, category: str, message: str, at_ns: int) -> None:
        """A session step the target failed to serve (connect, auth, ping, set-model).

        Counted by category and in the session error rate (steps inside the window).
        """
        self.second(at_ns).errors[category] += 1
        if self.in_window(at_ns):
            self.errors[category] += 1
            self.steps += 1
            self.steps_failed += 1
            self._sample(category, message)

    def on_reconnect(self) -> None:
        self.reconnects += 1

    def on_conversation(self, outcome: str, *, start_ns: int, end_ns: int, turns: int) -> None:
        """A conversation ended (:class:`~loadtest.metrics.conversations.ConversationTally`)."""
        self._at(end_ns)
        # the cohort: conversations started inside the window (none can start in the drain,
        # but a user reconnecting at the window's end may reach the collector just after it)
        measured = self.window_start_ns <= start_ns < self.window_end_ns
        if self.conversations.count(outcome, measured=measured, in_window=self.in_window(end_ns), turns=turns) \
                and measured:
            self.metrics.record("conversation", max(_NS_PER_US, end_ns - start_ns) / _NS_PER_US)

    def on_request(self, rec: RequestRecord, now_ns: int) -> None:
        """A request ended (ok, failed, dropped or cancelled). Records and forwards it."""
        measured = rec.phase == "measure"
        t_end = rec.t_stop or now_ns
        self._at(t_end)
        row = self.second(t_end)
        if rec.unknown_events:
            row.unknown_events += rec.unknown_events
            if measured:
                self.unknown_events += rec.unknown_events
        outcome = rec.outcome
        if outcome == "ok" and rec.output_tokens >= 0:
            self._count_tokens(rec)
        win_chunks = win_chars = win_tokens = 0
        if rec.chunks:
            win_chunks, win_chars, win_tokens = place_chunks(rec, self.second, t0_ns=self.t0_ns,
                                                             window=(self.window_start_ns, self.window_end_ns))
            self.chunks += win_chunks
            self.chars += win_chars
            self.output_tokens_in_window += win_tokens
        after = t_end >= self.window_end_ns
        ok_in_window = False
        good = False
        if outcome == "ok":
            row.completions += 1
            start = rec.t_intended or rec.t_send
            if rec.t_first:
                row.recorder("ttft").record_us((rec.t_first - start) / _NS_PER_US)
            row.recorder("e2e").record_us((rec.t_stop - start) / _NS_PER_US)
            good = self._goodput is not None and self._goodput.good(rec)
            if self.in_window(t_end):
                self.ok_in_window += 1
                self.good_in_window += good
                ok_in_window = True
            elif after:
                self.drain["completed"] += 1
            if measured:
                self.completed += 1
                self.good += good
                record_success(rec, self.metrics)
                self.chunks_per_answer[rec.chunks] += 1
        elif outcome == "failed":
            row.failures += 1
            row.errors[rec.error_category] += 1
            if after:
                self.drain["failed"] += 1
            if measured:
                self.failed += 1
                self.errors[rec.error_category] += 1
                self._sample(rec.error_category, rec.error_message)
                self.failed_samples.update(record_observed(rec, self.metrics))
        elif outcome == "dropped":
            row.dropped += 1
            if measured:
                self.dropped += 1
        elif outcome == "abandoned":  # the user stopped reading: not an error, not in e2e/tpot
            if measured:
                self.abandoned += 1
                record_observed(rec, self.metrics)
        else:
            if after:
                self.drain["cancelled"] += 1
            if measured:
                self.cancelled += 1
        if measured and rec.t_send:
            self._record_send(rec)
        if rec.tags:
            self.tags.count(rec, measured=measured, ok_in_window=ok_in_window, good=good,
                            chunks=win_chunks, chars=win_chars, tokens=win_tokens)
        if self._sink is not None:
            self._sink(rec, self.t0_ns)

    def _count_tokens(self, rec: RequestRecord) -> None:
        """A completed answer's tokens (counted by the engine, off the loop: metrics.tokens)."""
        if rec.phase == "measure":
            self.answers_tokenized += 1
            self.output_tokens += rec.output_tokens
            self.prompt_tokens += rec.prompt_tokens
            self.tokenized_chunks += rec.chunks

    def _record_send(self, rec: RequestRecord) -> None:
        """The generator's own timing of a sent request of the cohort (any outcome)."""
        if rec.t_send >= self.window_end_ns:
            self.sent_after_window += 1
        if not rec.scheduled:
            return
        m = self.metrics
        lag_ns = rec.t_send - rec.queue_ns - rec.t_intended
        if lag_ns < 0:
            # uvloop timers can wake ~1 ms early; the dispatcher re-checks, so this should not
            # happen: count it rather than hide it in the histogram's lowest bucket
            self.early_sends += 1
        # a lag or queue wait below 1 µs is 0 within the histogram's resolution: recorded
        # as 1 µs rather than counted as out of range
        m.record("schedule_lag", max(_NS_PER_US, lag_ns) / _NS_PER_US)
        m.record("queue", max(_NS_PER_US, rec.queue_ns) / _NS_PER_US)
        m.record("send_lag", max(_NS_PER_US, rec.t_send - rec.t_intended) / _NS_PER_US)

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
        """Snapshot every whole second since the end of warmup that has ended (all when final)."""
        elapsed_s = (now_ns - self.t0_ns) / _NS_PER_S
        warm_s = self.warmup_ns / _NS_PER_S
        while True:
            start = max(warm_s, float(self._next_interval_s))
            end = float(self._next_interval_s + 1)
            if end > elapsed_s:
                if final and start < elapsed_s:
                    self.intervals.append(self.metrics.snapshot(start, elapsed_s))
                    self.tags.snapshot(start, elapsed_s)
                    self._next_interval_s += 1
                break
            if end > warm_s:
                self.intervals.append(self.metrics.snapshot(start, end))
                self.tags.snapshot(start, end)
            self._next_interval_s += 1
        self._next_close_ns = self.t0_ns + (self._next_interval_s + 1) * _NS_PER_S

    # ------------------------------------------------------------------ output

    def row_phase(self, s: int) -> str:
        """``warmup``, ``measure`` or ``drain``: where second ``s`` of the run starts."""
        at = self.t0_ns + s * _NS_PER_S
        if at < self.window_start_ns:
            return "warmup"
        return "measure" if at < self.window_end_ns else "drain"

    def timeseries(self) -> list[dict[str, Any]]:
        return timeseries_rows(self.seconds, self.row_phase)

    def take_partial(self, now_ns: int) -> Figures:
        """What is new since the last call, for a coordinator's live view and for a worker that
        may be lost: the counters so far (cumulative), the interval snapshots closed since, and
        the per-second rows of the seconds that ended at least a second ago (settled)."""
        settled = max(0, (now_ns - self.t0_ns) // _NS_PER_S - 1)
        rows = {s: SecondRow.from_plain(self.seconds[s].to_plain())
                for s in range(self._rows_sent, settled) if s in self.seconds}
        self._rows_sent = max(self._rows_sent, settled)
        intervals = self.intervals[self._intervals_sent:]
        self._intervals_sent = len(self.intervals)
        return self._figures(intervals, rows, self.tags.figures(self._tag_intervals_sent, intervals))

    def export(self) -> Figures:
        """Everything this collector measured, as plain data a coordinator merges exactly.

        Call after ``close_intervals(final=True)``: the totals are then all in the snapshots.
        """
        return self._figures(list(self.intervals),
                             {s: SecondRow.from_plain(row.to_plain()) for s, row in self.seconds.items()},
                             self.tags.figures(run_intervals=self.intervals))

    def _figures(self, intervals: list[IntervalSnapshot], seconds: dict[int, SecondRow],
                 tags: dict[str, TagFigures]) -> Figures:
        return Figures(
            counts={name: getattr(self, name) for name in COUNTS if not name.startswith("conv_")}
            | self.conversations.counts(),
            errors=dict(self.errors), drain=dict(self.drain), failed_samples=dict(self.failed_samples),
            chunks_per_answer=dict(self.chunks_per_answer),
            turns_per_conversation=dict(self.conversations.turns),
            error_samples={k: list(v) for k, v in self.error_samples.items()},
            intervals=intervals, seconds=seconds, tags=tags, tags_folded=dict(self.tags.folded),
            warmup_s=self.warmup_ns / _NS_PER_S,
            window_end_s=(min(self.window_end_ns, _FAR_FUTURE_NS) - self.t0_ns) / _NS_PER_S,
        )
