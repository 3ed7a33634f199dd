"""Request classes: tags, and the figures kept for each ``key=value``. Pure core.

Every request carries tags (``RequestRecord.tags``, ``key=value`` strings sorted by key):
automatic ones from what it really sent (``step``, ``web_search``, ``tools``) and the gen
step's own ``tags``. The collector keeps one :class:`TagFigures` per ``key=value`` (never
per cross product): counters and one latency histogram set, cut into interval snapshots like
the run's own, so several workers' figures add up exactly.

A key holds at most :data:`MAX_VALUES_PER_KEY` values; later values fold into ``key=other``
and are counted in ``folded`` (Locust's UI died on unbounded request names, #375).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from loadtest.metrics.metricset import IntervalSnapshot, MetricSet, merge_intervals
from loadtest.metrics.record import OFFERED_OUTCOMES, RequestRecord
from loadtest.metrics.samples import record_observed, record_success

__all__ = [
    "AUTO_KEYS",
    "MAX_VALUES_PER_KEY",
    "TAG_COUNTS",
    "TAG_METRICS",
    "TagFigures",
    "TagTable",
    "parse_tag",
    "render_value",
    "tag_dir_name",
]

#: the tags every request gets from what it sent
AUTO_KEYS: tuple[str, ...] = ("step", "web_search", "tools")
MAX_VALUES_PER_KEY = 100
#: the latency metrics kept per tag (the request's own; connection and generator figures have no tag)
TAG_METRICS: tuple[str, ...] = ("ttft", "ttft_uncorrected", "itl", "tpot", "tpot_token", "e2e", "e2e_uncorrected")
#: the counters kept per tag (each as the run's counter of the same name counts, restricted to the tag)
TAG_COUNTS: tuple[str, ...] = (
    "completed", "failed", "dropped", "cancelled", "abandoned", "ok_in_window", "good_in_window", "chunks", "chars", "good",
    "answers_tokenized", "output_tokens", "output_tokens_in_window", "prompt_tokens", "tokenized_chunks",
)  # fmt: skip


def render_value(value: Any) -> str:
    """A tag value as text: ``true``/``false`` for booleans, numbers as written, strings as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_tag(text: str) -> tuple[str, str]:
    """``"key=value"`` → ``(key, value)``; ValueError when there is no ``=`` or no key."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"a tag is KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def tag_dir_name(tag: str) -> str:
    """The run directory's folder for one tag's hlogs (``by_tag/<this>/``): safe on any file system."""
    return quote(tag, safe="=._-")


@dataclass
class TagFigures:
    """One tag's counters, errors and latency interval snapshots (plain data, exactly mergeable)."""

    counts: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    intervals: list[IntervalSnapshot] = field(default_factory=list)

    def add(self, other: TagFigures) -> None:
        """Counters summed; intervals kept as a list (merged by :func:`merge_tags`)."""
        for into, src in ((self.counts, other.counts), (self.errors, other.errors)):
            for k, v in src.items():
                into[k] = into.get(k, 0) + v
        self.intervals.extend(other.intervals)

    @property
    def offered(self) -> int:
        c = self.counts
        return sum(c.get(k, 0) for k in OFFERED_OUTCOMES)

    def metrics(self) -> MetricSet:
        """Every interval snapshot added (the tag's histograms over the run)."""
        totals = MetricSet(TAG_METRICS)
        for snap in self.intervals:
            totals.merge_snapshot(snap)
        return totals

    def to_plain(self) -> dict[str, Any]:
        return {"counts": self.counts, "errors": self.errors,
                "intervals": [snap.to_plain() for snap in self.intervals]}

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> TagFigures:
        return cls(counts=dict(data["counts"]), errors=dict(data["errors"]),
                   intervals=[IntervalSnapshot(**i) for i in data["intervals"]])


def merge_tags(parts: list[dict[str, TagFigures]], *, folded: dict[str, int] | None = None) -> dict[str, TagFigures]:
    """Several workers' per-tag figures as one: counters summed, intervals merged second by second.

    Each worker keeps its first :data:`MAX_VALUES_PER_KEY` values of a key, and two workers may
    have met different ones: past the cap here, the values with the fewest requests (then by
    name) fold into ``key=other`` too, added exactly, and are counted in ``folded[key]``."""
    runs: dict[str, list[list[IntervalSnapshot]]] = {}
    counts: dict[str, TagFigures] = {}
    by_key: dict[str, list[str]] = {}
    for part in parts:
        for tag, tf in part.items():
            if tag not in counts:
                counts[tag] = TagFigures()
                by_key.setdefault(tag.partition("=")[0], []).append(tag)
            counts[tag].add(TagFigures(counts=tf.counts, errors=tf.errors))
            runs.setdefault(tag, []).append(tf.intervals)
    into = {tag: tag for tag in counts}  # where each tag's figures go
    for key, tags in by_key.items():
        other = f"{key}=other"
        named = [t for t in tags if t != other]
        if len(named) + (other in counts) <= MAX_VALUES_PER_KEY:
            continue
        keep = MAX_VALUES_PER_KEY - 1  # one place is `other`'s
        ranked = sorted(named, key=lambda t: (-counts[t].offered, t))
        for tag in ranked[keep:]:
            into[tag] = other
        if folded is not None:
            folded[key] = folded.get(key, 0) + len(ranked) - keep
    out: dict[str, TagFigures] = {}
    groups: dict[str, list[list[IntervalSnapshot]]] = {}
    for tag, dest in into.items():
        out.setdefault(dest, TagFigures()).add(counts[tag])
        groups.setdefault(dest, []).extend(runs[tag])
    for dest, lists in groups.items():
        out[dest].intervals = merge_intervals(lists)
    return out


class TagTable:
    """One worker's per-tag figures while it runs: where a record's tags are counted (hot path
    once per request) and the interval cut (once per second)."""

    __slots__ = ("_aliases", "_values", "folded", "metrics", "mirrors", "stats")

    def __init__(self, mirrors: frozenset[str] = frozenset()) -> None:
        #: tags every request of the run carries (a key with one possible value that every gen
        #: step sends, e.g. ``tools=false`` with no tools): their histograms are the run's own,
        #: so none is kept for them; :meth:`figures` hands out the run's intervals instead
        self.mirrors = mirrors
        #: tag → its counters (``counts``), errors and current-interval histograms
        self.stats: dict[str, TagFigures] = {}
        self.metrics: dict[str, MetricSet] = {}
        self._values: dict[str, int] = {}
        self._aliases: set[str] = set()  # values folded into key=other (looked up, never reported)
        #: key → distinct values folded into ``key=other``
        self.folded: dict[str, int] = {}

    def get(self, tag: str) -> tuple[TagFigures, MetricSet | None]:
        """The figures of ``tag``, created at first sight (folded into ``key=other`` past the cap)."""
        tf = self.stats.get(tag)
        if tf is None:
            key = tag.partition("=")[0]
            n = self._values.get(key, 0)
            if n >= MAX_VALUES_PER_KEY:
                self.folded[key] = self.folded.get(key, 0) + 1
                other = f"{key}=other"
                tf = self.stats.get(other)
                if tf is None:
                    tf = self.stats[other] = TagFigures(counts=dict.fromkeys(TAG_COUNTS, 0))
                    self.metrics[other] = MetricSet(TAG_METRICS, keep_totals=False)
                self.stats[tag] = tf  # later requests with this value land in `other` at once
                self._aliases.add(tag)
                self.metrics[tag] = self.metrics[other]
                return tf, self.metrics[other]
            self._values[key] = n + 1
            tf = self.stats[tag] = TagFigures(counts=dict.fromkeys(TAG_COUNTS, 0))
            if tag in self.mirrors:
                return tf, None
            self.metrics[tag] = MetricSet(TAG_METRICS, keep_totals=False)
        return tf, self.metrics.get(tag)

    def count(self, rec: RequestRecord, *, measured: bool, ok_in_window: bool, good: bool, chunks: int,
              chars: int, tokens: int) -> None:
        """The request's figures again for each of its tags, by the run's own rules restricted
        to the tag: what happened inside the window (``ok_in_window`` and the window's
        ``chunks``, ``chars``, output ``tokens``) whatever its phase; the rest for the cohort."""
        outcome = rec.outcome
        for tag in rec.tags:
            tf, ms = self.get(tag)
            c = tf.counts
            c["chunks"] += chunks
            c["chars"] += chars
            c["ok_in_window"] += ok_in_window
            c["good_in_window"] += ok_in_window and good
            c["output_tokens_in_window"] += tokens
            if not measured:
                continue
            if outcome == "ok":
                c["completed"] += 1
                c["good"] += good  # the cohort's: goodput.share
                if ms is not None:
                    record_success(rec, ms)
                if rec.output_tokens >= 0:
                    c["answers_tokenized"] += 1
                    c["output_tokens"] += rec.output_tokens
                    c["tokenized_chunks"] += rec.chunks
                    c["prompt_tokens"] += max(0, rec.prompt_tokens)
            elif outcome == "failed":
                c["failed"] += 1
                tf.errors[rec.error_category] = tf.errors.get(rec.error_category, 0) + 1
                if ms is not None:
                    record_observed(rec, ms)
            elif outcome == "dropped":
                c["dropped"] += 1
            elif outcome == "abandoned":
                c["abandoned"] += 1
                if ms is not None:
                    record_observed(rec, ms)
            else:
                c["cancelled"] += 1

    def snapshot(self, start_s: float, end_s: float) -> None:
        """Close the interval for every tag (a tag with no sample in it gets no snapshot)."""
        for tag, ms in self.metrics.items():
            if tag in self._aliases:
                continue  # a folded value shares `other`'s set
            if ms.has_samples():
                self.stats[tag].intervals.append(ms.snapshot(start_s, end_s))

    def figures(self, since: dict[str, int] | None = None,
                run_intervals: list[IntervalSnapshot] | None = None) -> dict[str, TagFigures]:
        """Plain per-tag figures: cumulative counters, the intervals after ``since[tag]`` (all
        when None; ``since`` is updated); a mirror's intervals are ``run_intervals`` (the run's
        own, handed out alongside), restricted to :data:`TAG_METRICS`. Folded values are
        reported under ``key=other`` only."""
        out: dict[str, TagFigures] = {}
        for tag, tf in self.stats.items():
            if tag in self._aliases:
                continue
            if tag in self.mirrors:
                out[tag] = TagFigures(counts=dict(tf.counts), errors=dict(tf.errors),
                                      intervals=[_restrict(s) for s in run_intervals or ()])
                continue
            start = 0 if since is None else since.get(tag, 0)
            out[tag] = TagFigures(counts=dict(tf.counts), errors=dict(tf.errors), intervals=tf.intervals[start:])
            if since is not None:
                since[tag] = len(tf.intervals)
        return out


def _restrict(snap: IntervalSnapshot) -> IntervalSnapshot:
    """The run's interval snapshot, with only the metrics a tag keeps (the strings are shared)."""
    def keep(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k in TAG_METRICS}

    return IntervalSnapshot(snap.start_s, snap.end_s, keep(snap.histograms), keep(snap.out_of_range),
                            keep(snap.below_range), keep(snap.above_range))
