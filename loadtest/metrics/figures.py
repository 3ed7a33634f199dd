"""A run's measurements as plain data: what a worker hands its coordinator, and what the
coordinator's merge of several workers is. Pure core.

Everything in :class:`Figures` adds up exactly across workers: counters are summed,
histograms are added interval by interval (:func:`~loadtest.metrics.metricset.merge_intervals`)
and second by second (:meth:`~loadtest.metrics.seconds.SecondRow.add`), error samples are
pooled (up to 5 a category). Times are seconds since the run's t0, which every worker of a
run shares. The run directory is written from a ``Figures``, whether it came from one
worker or many.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from loadtest.metrics.metricset import IntervalSnapshot, MetricSet, merge_intervals
from loadtest.metrics.seconds import SecondRow, timeseries_rows
from loadtest.metrics.tags import TagFigures, merge_tags

__all__ = ["COUNTS", "MAX_ERROR_SAMPLES", "Figures"]

MAX_ERROR_SAMPLES = 5
#: the collector's counters (see loadtest.metrics.collector for what each one counts)
COUNTS: tuple[str, ...] = (
    "started", "completed", "failed", "dropped", "cancelled", "offered", "sent_after_window", "early_sends",
    "unknown_events", "reconnects", "sent_in_window", "ok_in_window", "chunks", "chars", "steps",
    "steps_failed", "good", "good_in_window", "answers_tokenized", "output_tokens", "output_tokens_in_window", "prompt_tokens",
    "tokenized_chunks", "abandoned", "conv_started", "conv_completed", "conv_abandoned", "conv_failed",
    "conv_unfinished", "conv_dropped", "conv_completed_in_window", "conv_turns",
)


def _add_counts(into: dict[Any, int], other: dict[Any, int]) -> None:
    for k, v in other.items():
        into[k] = into.get(k, 0) + v


@dataclass
class Figures:
    """Counters, interval snapshots and per-second rows of one worker, or of a whole run.

    The counters read as attributes (``figures.completed``), like the collector's.
    """

    counts: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    drain: dict[str, int] = field(default_factory=dict)
    failed_samples: dict[str, int] = field(default_factory=dict)
    chunks_per_answer: dict[int, int] = field(default_factory=dict)
    #: conversations of the cohort by the turns they ran: {turns: conversations}
    turns_per_conversation: dict[int, int] = field(default_factory=dict)
    error_samples: dict[str, list[str]] = field(default_factory=dict)
    intervals: list[IntervalSnapshot] = field(default_factory=list)
    seconds: dict[int, SecondRow] = field(default_factory=dict)
    #: per ``key=value``: counters and latency intervals (loadtest.metrics.tags)
    tags: dict[str, TagFigures] = field(default_factory=dict)
    #: key → distinct values folded into ``key=other``
    tags_folded: dict[str, int] = field(default_factory=dict)
    #: the measured window, seconds since t0
    warmup_s: float = 0.0
    window_end_s: float = 0.0
    _totals: MetricSet | None = field(default=None, repr=False, compare=False)

    def __getattr__(self, name: str) -> int:
        if name in COUNTS:
            return self.counts.get(name, 0)
        raise AttributeError(name)

    @property
    def window_s(self) -> float:
        return max(0.0, self.window_end_s - self.warmup_s)

    @property
    def metrics(self) -> MetricSet:
        """The run's histograms: every interval snapshot added (exactly the workers' totals)."""
        if self._totals is None:
            totals = MetricSet()
            for snap in self.intervals:
                totals.merge_snapshot(snap)
            self._totals = totals
        return self._totals

    def phase_of_second(self, s: int) -> str:
        """``warmup``, ``measure`` or ``drain``: where second ``s`` of the run starts."""
        if s < self.warmup_s:
            return "warmup"
        return "measure" if s < self.window_end_s else "drain"

    def timeseries(self) -> list[dict[str, Any]]:
        return timeseries_rows(self.seconds, self.phase_of_second)

    @classmethod
    def merge(cls, parts: Iterable[Figures], *, warmup_s: float, window_end_s: float) -> Figures:
        """The exact sum of several workers' figures over the run's window."""
        parts = list(parts)
        if len(parts) == 1:  # one worker: its figures are the run's (no decode/encode per second)
            return dataclasses.replace(parts[0], warmup_s=warmup_s, window_end_s=window_end_s, _totals=None)
        out = cls(warmup_s=warmup_s, window_end_s=window_end_s)
        runs = []
        for p in parts:
            for target, source in ((out.counts, p.counts), (out.errors, p.errors), (out.drain, p.drain),
                                   (out.failed_samples, p.failed_samples),
                                   (out.chunks_per_answer, p.chunks_per_answer),
                                   (out.turns_per_conversation, p.turns_per_conversation)):
                _add_counts(target, source)
            for cat, msgs in p.error_samples.items():
                pooled = out.error_samples.setdefault(cat, [])
                pooled.extend(m for m in msgs if m not in pooled and len(pooled) < MAX_ERROR_SAMPLES)
            for s, row in p.seconds.items():
                mine = out.seconds.get(s)
                if mine is None:
                    out.seconds[s] = mine = SecondRow()
                mine.add(row)
            runs.append(p.intervals)
            _add_counts(out.tags_folded, p.tags_folded)
        out.intervals = merge_intervals(runs)
        out.tags = merge_tags([p.tags for p in parts], folded=out.tags_folded)
        return out

    # ------------------------------------------------------------------ plain data

    def to_plain(self) -> dict[str, Any]:
        """JSON-able (for a pipe or a Ray object); :meth:`from_plain` is its inverse."""
        return {
            "counts": self.counts, "errors": self.errors, "drain": self.drain,
            "failed_samples": self.failed_samples,
            "chunks_per_answer": {str(k): v for k, v in self.chunks_per_answer.items()},
            "turns_per_conversation": {str(k): v for k, v in self.turns_per_conversation.items()},
            "error_samples": self.error_samples,
            "intervals": [i.to_plain() for i in self.intervals],
            "seconds": {str(s): row.to_plain() for s, row in self.seconds.items()},
            "tags": {t: tf.to_plain() for t, tf in self.tags.items()}, "tags_folded": self.tags_folded,
            "warmup_s": self.warmup_s, "window_end_s": self.window_end_s,
        }

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> Figures:
        return cls(
            counts=dict(data["counts"]), errors=dict(data["errors"]), drain=dict(data["drain"]),
            failed_samples=dict(data["failed_samples"]),
            chunks_per_answer={int(k): v for k, v in data["chunks_per_answer"].items()},
            turns_per_conversation={int(k): v for k, v in data.get("turns_per_conversation", {}).items()},
            error_samples={k: list(v) for k, v in data["error_samples"].items()},
            intervals=[IntervalSnapshot(**i) for i in data["intervals"]],
            seconds={int(s): SecondRow.from_plain(row) for s, row in data["seconds"].items()},
            tags={t: TagFigures.from_plain(tf) for t, tf in data.get("tags", {}).items()},
            tags_folded=dict(data.get("tags_folded", {})),
            warmup_s=float(data["warmup_s"]), window_end_s=float(data["window_end_s"]),
        )
