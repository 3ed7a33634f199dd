"""The per-run metric set: one recorder per metric, cut into interval snapshots (plain data).

Pure core. A worker records into its :class:`MetricSet` and hands the coordinator
:class:`IntervalSnapshot` objects; the coordinator adds them (never averages percentiles).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from loadtest.metrics.recorder import METRICS, Recorder

__all__ = ["IntervalSnapshot", "MetricSet", "merge_intervals"]


@dataclass(frozen=True)
class IntervalSnapshot:
    """One reporting interval of a :class:`MetricSet`, as plain data.

    ``start_s``/``end_s`` are seconds since the run start. ``histograms`` maps each metric
    that has samples to its :meth:`Recorder.encode` string. ``out_of_range`` maps each metric
    with any out-of-range value to its total (below + above + NaN); ``below_range`` and
    ``above_range`` give the split, so ``merge_snapshot`` restores every counter exactly.
    """

    start_s: float
    end_s: float
    histograms: dict[str, str]
    out_of_range: dict[str, int]
    below_range: dict[str, int] = field(default_factory=dict)
    above_range: dict[str, int] = field(default_factory=dict)

    def to_plain(self) -> dict[str, Any]:
        return {"start_s": self.start_s, "end_s": self.end_s, "histograms": self.histograms,
                "out_of_range": self.out_of_range, "below_range": self.below_range,
                "above_range": self.above_range}


class MetricSet:
    """Cumulative ``totals[name]`` and a current-interval recorder for every name in ``names``
    (default METRICS).

    ``record`` goes to the interval recorder only; ``snapshot`` moves the interval into
    the totals. Not thread-safe: one owner (the event loop of one worker).
    """

    __slots__ = ("_interval", "_keep_totals", "names", "totals")

    def __init__(self, names: Sequence[str] = METRICS, *, keep_totals: bool = True) -> None:
        """``keep_totals=False``: the snapshots are the only record (a tag's set: its totals are
        the sum of its snapshots, and adding each interval into totals nobody reads cost ~40 µs a
        histogram a second on the loop)."""
        self.names = tuple(names)
        self._keep_totals = keep_totals
        self.totals: dict[str, Recorder] = {name: Recorder() for name in self.names}
        self._interval: dict[str, Recorder] = {name: Recorder() for name in self.names}

    def record(self, name: str, value_us: float) -> None:
        """Record one value of metric ``name`` in the current interval (hot path)."""
        try:
            rec = self._interval[name]
        except KeyError:
            raise KeyError(f"unknown metric {name!r}; known metrics: {', '.join(self.names)}") from None
        rec.record_us(value_us)

    def has_samples(self) -> bool:
        """Anything recorded in the current interval (a value or an out-of-range count)."""
        return any(rec.count or rec.out_of_range for rec in self._interval.values())

    def interval(self, name: str) -> Recorder:
        """The current (not yet snapshotted) interval recorder of ``name`` (read it, do not keep it)."""
        return self._interval[name]

    def snapshot(self, start_s: float, end_s: float) -> IntervalSnapshot:
        """Close the interval ``[start_s, end_s)``: encode it, add it to the totals, reset it."""
        if end_s < start_s:
            raise ValueError(f"interval ends before it starts: {start_s} .. {end_s}")
        histograms: dict[str, str] = {}
        out_of_range: dict[str, int] = {}
        below: dict[str, int] = {}
        above: dict[str, int] = {}
        for name, rec in self._interval.items():
            if not rec.count and not rec.out_of_range:
                continue
            if rec.count:
                histograms[name] = rec.encode()
            if rec.out_of_range:
                out_of_range[name] = rec.out_of_range
                below[name] = rec.below_range
                above[name] = rec.above_range
            if self._keep_totals:
                self.totals[name].add(rec)
            rec.reset()
        return IntervalSnapshot(start_s, end_s, histograms, out_of_range, below, above)

    def merge_snapshot(self, snap: IntervalSnapshot) -> None:
        """Add a snapshot (e.g. from another worker) into the totals, counters included."""
        unknown = (set(snap.histograms) | set(snap.out_of_range)) - set(self.totals)
        if unknown:
            raise KeyError(f"snapshot has unknown metrics {sorted(unknown)}; known: {', '.join(self.names)}")
        for name, encoded in snap.histograms.items():
            self.totals[name].add(Recorder.decode(encoded))
        for name, total in snap.out_of_range.items():
            below = snap.below_range.get(name, 0)
            above = snap.above_range.get(name, 0)
            invalid = total - below - above
            if invalid < 0:
                raise ValueError(f"inconsistent out-of-range counters for {name!r}")
            self.totals[name].add_counters(below_range=below, above_range=above, invalid=invalid)

    def summary_ms(self) -> dict[str, dict[str, float | int | None]]:
        """``{metric: Recorder.summary_ms()}`` of the totals, for every metric of the set."""
        return {name: self.totals[name].summary_ms() for name in self.names}



def merge_intervals(runs: list[list[IntervalSnapshot]]) -> list[IntervalSnapshot]:
    """Several workers' interval snapshots as one list: the snapshots of the same interval
    (same ``start_s``) added exactly, histogram by histogram and counter by counter."""
    slots: dict[float, list[IntervalSnapshot]] = {}
    for snaps in runs:
        for snap in snaps:
            slots.setdefault(snap.start_s, []).append(snap)
    out = []
    for start in sorted(slots):
        group = slots[start]
        if len(group) == 1:
            out.append(group[0])
            continue
        hists: dict[str, Recorder] = {}
        oor: dict[str, int] = {}
        below: dict[str, int] = {}
        above: dict[str, int] = {}
        for snap in group:
            for name, encoded in snap.histograms.items():
                rec = hists.setdefault(name, Recorder())
                rec.add(Recorder.decode(encoded))
            for target, source in ((oor, snap.out_of_range), (below, snap.below_range), (above, snap.above_range)):
                for name, n in source.items():
                    target[name] = target.get(name, 0) + n
        out.append(IntervalSnapshot(start, max(s.end_s for s in group),
                                    {n: r.encode() for n, r in hists.items() if r.count}, oor, below, above))
    return out
