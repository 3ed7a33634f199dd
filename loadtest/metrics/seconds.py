"""Per-second rows of a run (timeseries.csv), as plain data that adds up across workers.

Pure core. A row counts the events of one whole second of the run, each by its own time.
Its three histograms (TTFT, e2e, loop lag) stay live while the live view may read them and
are then *frozen*: kept only as HdrHistogram encodings (a few hundred bytes), which is also
the form a row crosses a process boundary in. Rows of several workers add exactly
(:meth:`SecondRow.add`): counters summed, histograms merged, never averaged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loadtest.errors import ERROR_CATEGORIES
from loadtest.metrics.recorder import Recorder

__all__ = ["ROW_HISTOGRAMS", "TIMESERIES_COLUMNS", "SecondRow", "timeseries_rows"]

#: the histograms a row keeps
ROW_HISTOGRAMS: tuple[str, ...] = ("ttft", "e2e", "loop_lag")
_COUNTERS: tuple[str, ...] = ("offered", "achieved", "completions", "failures", "dropped", "unknown_events",
                              "chunks", "chars")
_GAUGES: tuple[str, ...] = ("active_sessions", "in_flight")  # a worker's peak in the second; workers add up

TIMESERIES_COLUMNS: tuple[str, ...] = (
    "t_s", "phase", "offered", "achieved", "active_sessions", "in_flight", "completions",
    "failures", "dropped", *(f"err_{c}" for c in ERROR_CATEGORIES), "unknown_events",
    "chunks", "chars", "ttft_p50_ms", "ttft_p99_ms", "e2e_p99_ms", "loop_lag_p99_ms",
)


@dataclass(slots=True)
class SecondRow:
    """Counters and histograms of one whole second of the run."""

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
    #: set when frozen: the histograms as HdrHistogram encodings; the recorders are dropped
    encoded: dict[str, str] | None = None

    def recorder(self, name: str) -> Recorder:
        """The live recorder ``name`` of this row, created on first use (a frozen row is thawed)."""
        if self.encoded is not None:
            encoded, self.encoded = self.encoded, None
            for hist, text in encoded.items():
                setattr(self, hist, Recorder.decode(text))
        r: Recorder | None = getattr(self, name)
        if r is None:
            r = Recorder()
            setattr(self, name, r)
        return r

    def histogram(self, name: str) -> Recorder | None:
        """Histogram ``name``: the live one, or decoded from the frozen encoding."""
        if self.encoded is not None:
            text = self.encoded.get(name)
            return None if text is None else Recorder.decode(text)
        live: Recorder | None = getattr(self, name)
        return live

    def freeze(self) -> None:
        """Keep this row's histograms only as encodings (the live view no longer reads it)."""
        if self.encoded is None:
            self.encoded = self._encodings()
            self.ttft = self.e2e = self.loop_lag = None

    def _encodings(self) -> dict[str, str]:
        out = {}
        for name in ROW_HISTOGRAMS:
            r = self.histogram(name)
            if r is not None and r.count:
                out[name] = r.encode()
        return out

    def pct_ms(self, name: str, p: float) -> float | None:
        r = self.histogram(name)
        if r is None or r.count == 0:
            return None
        v = r.percentile_us(p)
        return None if v is None else round(v / 1000, 3)

    # ------------------------------------------------------------------ plain data

    def to_plain(self) -> dict[str, Any]:
        """This row as JSON-able plain data (the live recorders encoded, not dropped)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in (*_COUNTERS, *_GAUGES)}
        out["errors"] = {k: v for k, v in self.errors.items() if v}
        out["histograms"] = self.encoded if self.encoded is not None else self._encodings()
        return out

    @classmethod
    def from_plain(cls, data: Mapping[str, Any]) -> SecondRow:
        row = cls()
        for name in (*_COUNTERS, *_GAUGES):
            setattr(row, name, int(data.get(name, 0)))
        row.errors.update({str(k): int(v) for k, v in (data.get("errors") or {}).items()})
        row.encoded = {str(k): str(v) for k, v in (data.get("histograms") or {}).items()}
        return row

    def add(self, other: SecondRow) -> None:
        """Add another worker's row of the same second (exact)."""
        for name in (*_COUNTERS, *_GAUGES):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.update(other.errors)
        merged = {}
        for name in ROW_HISTOGRAMS:
            mine, theirs = self.histogram(name), other.histogram(name)
            if mine is None and theirs is None:
                continue
            total = Recorder()
            for part in (mine, theirs):
                if part is not None and part.count:
                    total.add(part)
            if total.count:
                merged[name] = total.encode()
        self.encoded = merged
        self.ttft = self.e2e = self.loop_lag = None


def timeseries_rows(seconds: Mapping[int, SecondRow], phase_of: Callable[[int], str]) -> list[dict[str, Any]]:
    """timeseries.csv: one row per whole second from 0 to the last second with a row."""
    if not seconds:
        return []
    rows = []
    for s in range(0, max(seconds) + 1):
        r = seconds.get(s) or SecondRow()
        row: dict[str, Any] = {
            "t_s": s,
            "phase": phase_of(s),
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
