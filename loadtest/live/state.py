"""The run as the live exporters see it: one :class:`LiveSnapshot` a second, from the interval
snapshots the workers already stream to the coordinator, and a final one from the merged result.

Only what merges is exported: counters and histograms (Prometheus and OTLP add them up across
scrapes, workers and runs), never percentiles (k6's p99 gauges were averaged by dashboards
into numbers nobody measured). The final snapshot is built from the run's merged
:class:`~loadtest.metrics.figures.Figures`, the same data summary.json is written from, so
what a scraper stored last equals the run directory: ``loadtest_requests_total{outcome="ok"}``
is ``requests.completed``, a histogram's ``_count`` is ``latency_ms.<metric>.count`` and
``_sum / _count`` its ``mean``.

Counters follow the collector's definitions: requests and latency samples of the measured
cohort (nothing during warmup), chunks and output tokens counted inside the measured window.
Tags are kept per ``key=value`` as in ``by_tag``; a key holds at most
:data:`~loadtest.metrics.tags.MAX_VALUES_PER_KEY` values here too, later ones folded into
``key=other``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt

from loadtest.engine.result import Progress, RunResult
from loadtest.engine.selfwatch import LAG_LIMIT_MS
from loadtest.metrics.figures import Figures
from loadtest.metrics.metricset import IntervalSnapshot
from loadtest.metrics.recorder import Recorder
from loadtest.metrics.tags import MAX_VALUES_PER_KEY, parse_tag

__all__ = ["LIVE_METRICS", "OUTCOMES", "LiveHistogram", "LiveSeries", "LiveSnapshot", "LiveState", "bound_indices"]

#: the latency histograms exported (the request's own; µs inside, seconds outside)
LIVE_METRICS: tuple[str, ...] = ("ttft", "itl", "tpot", "e2e")
#: ``outcome`` label → the collector's counter of it (the cohort's requests, as summary.json's ``requests``)
OUTCOMES: dict[str, str] = {"ok": "completed", "failed": "failed", "dropped": "dropped",
                            "cancelled": "cancelled", "abandoned": "abandoned"}


class LiveHistogram:
    """One cumulative latency histogram, frozen: HdrHistogram's non-empty buckets as count
    indices and counts (the indices' values: :meth:`~loadtest.metrics.recorder.Recorder.values`),
    which every exporter re-buckets its own way. Each sample counts at its bucket's
    median-equivalent value, so ``sum_us / count`` is summary.json's ``mean`` to the bit.
    Derived figures are computed on first use, on the exporter's thread, not on the loop."""

    __slots__ = ("__dict__", "counts", "indices")

    def __init__(self, indices: npt.NDArray[np.int64] | None = None, counts: npt.NDArray[np.int64] | None = None) -> None:
        self.indices = indices if indices is not None else np.zeros(0, dtype=np.int64)
        self.counts = counts if counts is not None else np.zeros(0, dtype=np.int64)

    @classmethod
    def of(cls, rec: Recorder) -> LiveHistogram:
        return cls(*rec.nonzero())

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, LiveHistogram) and np.array_equal(self.indices, other.indices)
                and np.array_equal(self.counts, other.counts))

    __hash__ = None  # type: ignore[assignment]

    @cached_property
    def arrays(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """``(values_us, counts)`` of the non-empty buckets, in increasing order of value."""
        return Recorder.values()[self.indices], self.counts

    @cached_property
    def bins(self) -> tuple[tuple[int, int], ...]:
        values, counts = self.arrays
        return tuple(zip(values.tolist(), counts.tolist(), strict=True))

    @cached_property
    def count(self) -> int:
        return int(self.counts.sum())

    @cached_property
    def sum_us(self) -> int:
        values, counts = self.arrays
        if not len(values) or int(values[-1]) * self.count < 2**63:  # int64 is exact below that
            return int(np.dot(values, counts))
        return sum(v * n for v, n in zip(values.tolist(), counts.tolist(), strict=True))

    @property
    def min_us(self) -> int | None:
        values, _ = self.arrays
        return int(values[0]) if len(values) else None

    @property
    def max_us(self) -> int | None:
        values, _ = self.arrays
        return int(values[-1]) if len(values) else None

    def cumulative(self, upto: npt.NDArray[np.int64]) -> list[int]:
        """Samples at or below each bound, as Prometheus buckets: ``upto`` holds, per bound, the
        first count index whose value lies above it (:func:`bound_indices`)."""
        below = np.searchsorted(self.indices, upto)  # non-empty buckets under each bound
        total = np.concatenate(([0], np.cumsum(self.counts)))
        cumulative: list[int] = total[below].tolist()
        return cumulative


def bound_indices(bounds_us: Sequence[float]) -> npt.NDArray[np.int64]:
    """Per bound, the first HdrHistogram count index whose value lies above it (a bucket counts
    at its value: :meth:`~loadtest.metrics.recorder.Recorder.values`)."""
    values = Recorder.values()
    upto = np.searchsorted(values, np.asarray(bounds_us, dtype=np.float64), side="right")
    if not (upto[0] > 0 and np.all(np.diff(upto) > 0) and upto[-1] < len(values)):
        raise ValueError("bounds must increase, each past the histogram's resolution and inside its range")
    return upto


@dataclass(frozen=True)
class LiveSeries:
    """The counters and cumulative histograms of the run, or of one tag."""

    requests: Mapping[str, int]  # outcome → requests
    errors: Mapping[str, int]  # category → failed requests
    chunks: int
    output_tokens: int
    histograms: Mapping[str, LiveHistogram]  # LIVE_METRICS → cumulative, µs


@dataclass(frozen=True)
class LiveSnapshot:
    """What every exporter publishes at one moment of the run."""

    elapsed_s: float
    phase: str  # warmup, measure, drain, or done (the final snapshot)
    run: LiveSeries
    tags: Mapping[str, LiveSeries] = field(default_factory=dict)
    users: int = 0
    in_flight: int = 0
    #: requests offered / sent in the last settled second (the final snapshot: over the window)
    offered_rate: float = 0.0
    achieved_rate: float = 0.0
    #: the worst loop lag of any worker in the last settled second, seconds
    loop_lag_s: float = 0.0
    saturated: bool = False
    tokenized: bool = False  # output tokens are counted (a tokenizer is set)
    final: bool = False


def _series(counts: Mapping[str, int], errors: Mapping[str, int], histograms: Mapping[str, Recorder]) -> LiveSeries:
    errors = dict(errors)
    if "unknown_events" in counts:  # as summary.json's ``errors``: unknown events beside the failures
        errors["unknown_events"] = counts["unknown_events"]
    return LiveSeries(requests={label: counts.get(name, 0) for label, name in OUTCOMES.items()},
                      errors=errors, chunks=counts.get("chunks", 0),
                      output_tokens=counts.get("output_tokens", 0),
                      histograms={m: LiveHistogram.of(r) for m, r in histograms.items()})


def _add_intervals(into: dict[str, Recorder], intervals: Sequence[IntervalSnapshot], *,
                   remember: dict[str, Recorder] | None = None, reuse: dict[str, Recorder] | None = None) -> None:
    """Add each interval's histograms of ``into``'s metrics. The run's strings are decoded once
    and ``remember``-ed; a tag every request carries (a mirror) hands out the same strings,
    found in ``reuse`` and added without decoding them again."""
    for snap in intervals:
        for name, rec in into.items():
            text = snap.histograms.get(name)
            if text is None:
                continue
            hit = reuse.get(text) if reuse is not None else None
            if hit is not None:
                rec.add(hit)
            elif remember is not None:
                remember[text] = one = Recorder.decode(text)
                rec.add(one)
            else:
                rec.add_encoded(text)


def _fresh() -> dict[str, Recorder]:
    return {m: Recorder() for m in LIVE_METRICS}


class LiveState:
    """Folds the workers' streamed figures into one :class:`LiveSnapshot` a second.

    Each call reads only what is new (interval snapshots not yet added), so a second costs the
    decoding of one interval per worker and metric, on the coordinator.
    """

    def __init__(self, *, tokenized: bool = False) -> None:
        self._tokenized = tokenized
        self._taken: dict[int, int] = {}  # worker position → run intervals added
        self._tag_taken: dict[tuple[int, str], int] = {}
        self._run = _fresh()
        self._tags: dict[str, dict[str, Recorder]] = {}
        self._values: dict[str, list[str]] = {}  # key → the values kept (at most MAX_VALUES_PER_KEY)

    def label(self, tag: str) -> str:
        """``tag`` as exported: itself, or ``key=other`` past the cap on values per key."""
        key, value = parse_tag(tag)
        kept = self._values.setdefault(key, [])
        if value in kept or value == "other":
            return tag
        if len(kept) < MAX_VALUES_PER_KEY:
            kept.append(value)
            return tag
        return f"{key}=other"

    def _fold(self, parts: Sequence[Figures]) -> tuple[LiveSeries, dict[str, LiveSeries]]:
        """The run's and each tag's series: the intervals of ``parts`` not added yet, added
        (each worker at a fixed position; its intervals arrive in order, a prefix at a time)."""
        tag_counts: dict[str, dict[str, int]] = {}
        tag_errors: dict[str, dict[str, int]] = {}
        counts: dict[str, int] = {}
        errors: dict[str, int] = {}
        decoded: dict[str, Recorder] = {}  # the run's new interval strings this second
        for i, part in enumerate(parts):
            n = self._taken.get(i, 0)
            _add_intervals(self._run, part.intervals[n:], remember=decoded)
            self._taken[i] = len(part.intervals)
            _sum(counts, part.counts)
            _sum(errors, part.errors)
            for tag, tf in part.tags.items():
                label = self.label(tag)
                hist = self._tags.setdefault(label, _fresh())
                n = self._tag_taken.get((i, tag), 0)
                _add_intervals(hist, tf.intervals[n:], reuse=decoded)
                self._tag_taken[(i, tag)] = len(tf.intervals)
                _sum(tag_counts.setdefault(label, {}), tf.counts)
                _sum(tag_errors.setdefault(label, {}), tf.errors)
        return (_series(counts, errors, self._run),
                {t: _series(tag_counts[t], tag_errors[t], h) for t, h in self._tags.items() if t in tag_counts})

    def update(self, parts: Sequence[Figures], progress: Progress) -> LiveSnapshot:
        """The snapshot of the run so far: ``parts`` are the workers' streamed figures (each
        worker at a fixed position), ``progress`` the merged live line."""
        run, tags = self._fold(parts)
        offered, achieved, lag_max_us = _last_second(parts) or (0, 0, 0)
        return LiveSnapshot(
            elapsed_s=progress.elapsed_s, phase=progress.phase, run=run, tags=tags,
            users=progress.active_sessions, in_flight=progress.in_flight,
            offered_rate=float(offered), achieved_rate=float(achieved),
            # 20 lag samples a second (selfwatch): the p99 the saturation rule reads is their maximum
            loop_lag_s=lag_max_us / 1e6, saturated=lag_max_us / 1000 > LAG_LIMIT_MS,
            tokenized=self._tokenized,
        )

    def final(self, result: RunResult, parts: Sequence[Figures]) -> LiveSnapshot:
        """The snapshot of the finished run: ``parts`` are the workers' final figures, at the
        positions of :meth:`update`'s (a lost worker's: what it streamed), whose exact sum is
        ``result``'s and summary.json's; only what the last seconds did not bring is added."""
        run, tags = self._fold(parts)
        f = result.figures
        window = f.window_s
        lags = [w.loop_lag_p99_ms for w in result.workers if w.loop_lag_p99_ms is not None]
        return LiveSnapshot(
            elapsed_s=result.duration_s, phase="done", run=run, tags=tags,
            offered_rate=result.offered_rate if result.offered_rate is not None else (
                sum(f.counts.get(OUTCOMES[o], 0) for o in OUTCOMES) / window if window else 0.0),
            achieved_rate=result.achieved_rate if result.achieved_rate is not None else (
                f.sent_in_window / window if window else 0.0),
            loop_lag_s=max(lags, default=0.0) / 1000, saturated=bool(result.saturation),
            tokenized=self._tokenized, final=True,
        )


def _sum(into: dict[str, int], other: Mapping[str, int]) -> None:
    for k, v in other.items():
        into[k] = into.get(k, 0) + v


def _last_second(parts: Sequence[Figures]) -> tuple[int, int, int] | None:
    """The last second every worker has settled: requests offered and sent in it, and its worst
    loop lag in µs (None before the first)."""
    lasts = [max(p.seconds) for p in parts if p.seconds]
    if not lasts:
        return None
    s = min(lasts)
    rows = [r for r in (p.seconds.get(s) for p in parts) if r is not None]
    lags = [h.max_us for h in (r.histogram("loop_lag") for r in rows) if h is not None and h.count]
    return sum(r.offered for r in rows), sum(r.achieved for r in rows), max((v for v in lags if v), default=0)
