"""The judgement of ``loadtest compare``, pure: two runs' figures in, a :class:`Verdict` out.

:func:`judge` takes two :class:`RunData` (per-second interval histograms, summary figures)
and :class:`Thresholds`, and gives a :class:`Verdict`; it reads no file and no clock (reading
run directories and presenting the verdict is :mod:`loadtest.compare`).

Rules, per check (``Row``):

* latency percentile (``ttft``, ``itl``, ``e2e``, ``tpot`` at p50/p90/p99 by default):
  REGRESSION when the candidate is worse by more than ``max_increase`` (relative) **and**
  by more than ``min_abs_ms`` **and** the lower bound of the bootstrap interval of the
  difference (candidate − baseline) is above 0; "improved" is the mirror image.
* ``error_rate``: REGRESSION when it rises by more than ``max_error_increase`` (absolute)
  and the interval of the difference of the two proportions (Newcombe's hybrid score
  interval from Wilson intervals, Newcombe 1998, method 10) is above 0.
* ``throughput`` (``requests_per_s``): REGRESSION when it falls by more than
  ``max_throughput_decrease`` (relative) and the bootstrap interval of the difference of the
  mean completions per measured second (timeseries.csv) is below 0.

Where an interval cannot be had (too few seconds, no counts), the thresholds alone decide
and the row and the notes say so.

Why a bootstrap over seconds: a percentile has no closed-form standard error, and requests
of the same second share the target's state (a GC pause, a queue), so they are not
independent draws; seconds are closer to it. Each resample draws as many seconds as the run
has, with replacement, merges their histograms and takes the percentile; the percentile
interval of ``candidate − baseline`` over the resamples is the reported interval. Seconds
are still treated as independent (no block structure across seconds): a slow drift within
a run widens nothing. With fewer than ``min_intervals`` seconds, no interval is given and
the thresholds alone decide (the row says so).

Never average percentiles: each resample *merges* histograms by adding bucket counts, exactly
what :meth:`Recorder.add` does (tests check both give the same percentile), only in numpy,
since 500 resamples × 2 runs × 4 metrics through hdrh would take tens of seconds.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from loadtest.compare.stats import Stack, interval, newcombe
from loadtest.errors import BadInput
from loadtest.metrics.recorder import METRICS, Recorder, merge

__all__ = [
    "DEFAULT_CHECKS",
    "IMPROVED",
    "NA",
    "OK",
    "PERCENTILES",
    "REGRESSION",
    "Row",
    "RunData",
    "Thresholds",
    "Verdict",
    "judge",
    "parse_checks",
    "row_dict",
]

#: Percentile keys as in summary.json, and their value.
PERCENTILES: dict[str, float] = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
_LATENCY_DEFAULT = ("ttft", "itl", "e2e", "tpot")
_STATS_DEFAULT = ("p50", "p90", "p99")
_RATES = ("error_rate", "throughput")
#: (metric, stat) pairs judged by default; stat is "" for error_rate and throughput.
DEFAULT_CHECKS: tuple[tuple[str, str], ...] = (
    *((m, s) for m in _LATENCY_DEFAULT for s in _STATS_DEFAULT),
    *((r, "") for r in _RATES),
)
OK, REGRESSION, IMPROVED, NA = "ok", "REGRESSION", "improved", "n/a"


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """When a difference counts. Fractions, not percents: ``max_increase=0.10`` is 10%."""

    max_increase: float = 0.10
    min_abs_ms: float = 1.0
    max_error_increase: float = 0.005
    max_throughput_decrease: float = 0.10
    resamples: int = 500  # 0: no bootstrap, thresholds only
    confidence: float = 0.95
    seed: int = 0
    min_intervals: int = 5

    def __post_init__(self) -> None:
        for name in ("max_increase", "min_abs_ms", "max_error_increase", "max_throughput_decrease"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise BadInput(f"{name} must be a finite number >= 0, got {value!r}")
        if self.resamples < 0 or self.min_intervals < 1:
            raise BadInput("resamples must be >= 0 and min_intervals >= 1")
        if not 0.5 <= self.confidence < 1:
            raise BadInput(f"confidence must be within 0.5 .. 1 (exclusive), got {self.confidence!r}")


@dataclass(frozen=True, kw_only=True)
class RunData:
    """What the judgement needs from one run.

    ``intervals[metric]`` are the per-second histograms of the measured phase (the hlog);
    a metric without them falls back to ``summary_ms[metric]`` (summary.json's
    ``latency_ms`` entry, milliseconds). ``warnings`` are shown with the verdict.
    """

    label: str
    fingerprint: str | None = None
    intervals: Mapping[str, Sequence[Recorder]] = field(default_factory=dict)
    summary_ms: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    error_rate: float | None = None
    #: (failed + dropped, completed + failed + dropped) of the measured phase
    error_counts: tuple[int, int] | None = None
    requests_per_s: float | None = None
    #: completed requests in each measured second (timeseries.csv)
    completions_per_s: Sequence[float] = ()
    warnings: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    #: not served ((failed + dropped) by second) and attempts (completed + failed + dropped)
    #: in each measured second (timeseries.csv): the gate resamples the error rate by seconds
    errors_per_s: Sequence[float] = ()
    attempts_per_s: Sequence[float] = ()
    saturated: bool = False
    interrupted: bool = False
    mode: str | None = None
    offered_rate: float | None = None
    achieved_rate: float | None = None


@dataclass(frozen=True)
class Row:
    """One check. ``change`` is relative ((c − b) / b), ``difference`` is c − b in ``unit``,
    ``ci`` the interval of the difference (None: thresholds only)."""

    metric: str
    stat: str
    unit: str
    baseline: float | None
    candidate: float | None
    change: float | None
    difference: float | None
    ci: tuple[float, float] | None
    verdict: str
    basis: str
    reason: str

    @property
    def name(self) -> str:
        return f"{self.metric} {self.stat}".strip()


@dataclass(frozen=True)
class Verdict:
    rows: tuple[Row, ...]
    notes: tuple[str, ...]
    thresholds: Thresholds

    @property
    def regressions(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.verdict == REGRESSION)

    @property
    def regression(self) -> bool:
        return bool(self.regressions)

    def headline(self) -> str:
        judged = [r for r in self.rows if r.verdict != NA]
        if self.regression:
            worst = ", ".join(f"{r.name} {_signed_pct(r.change)}" for r in self.regressions)
            return f"REGRESSION: {len(self.regressions)} of {len(judged)} checks regressed ({worst})"
        improved = sum(r.verdict == IMPROVED for r in self.rows)
        return f"OK: no regression in {len(judged)} checks" + (f" ({improved} improved)" if improved else "")

    def to_dict(self) -> dict[str, Any]:
        rows = [row_dict(r) for r in self.rows]
        return {"regression": self.regression, "verdict": self.headline(), "rows": rows,
                "notes": list(self.notes), "thresholds": asdict(self.thresholds)}  # fmt: skip


# ---- the judgement (pure) -----------------------------------------------------------------


def row_dict(row: Any) -> dict[str, Any]:
    """A verdict row (this module's or the gate's) as JSON-able data: its fields, its name, the
    interval as ``ci_low``/``ci_high``, and no infinite change (from a zero baseline)."""
    d = asdict(row)
    ci = d.pop("ci")
    d["name"] = row.name
    d["ci_low"], d["ci_high"] = (None, None) if ci is None else ci
    if isinstance(d.get("change"), float) and not math.isfinite(d["change"]):
        d["change"] = None  # JSON has no infinity
    return d


def parse_checks(specs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``--metric`` values → (metric, stat) pairs; none → :data:`DEFAULT_CHECKS`.

    ``ttft`` means its p50/p90/p99; ``ttft.p95`` one percentile; ``error_rate`` and
    ``throughput`` themselves. Any latency metric of summary.json is accepted.
    """
    if not specs:
        return DEFAULT_CHECKS
    out: list[tuple[str, str]] = []
    for spec in specs:
        metric, _, stat = spec.strip().partition(".")
        if metric in _RATES and not stat:
            pairs = [(metric, "")]
        elif metric in METRICS and (not stat or stat in PERCENTILES):
            pairs = [(metric, stat)] if stat else [(metric, s) for s in _STATS_DEFAULT]
        else:
            raise BadInput(f"--metric {spec!r}: expected error_rate, throughput, or a latency metric "
                           f"({', '.join(METRICS)}) optionally with .{'/.'.join(PERCENTILES)}")  # fmt: skip
        out.extend(p for p in pairs if p not in out)
    return tuple(out)


def judge(baseline: RunData, candidate: RunData, thresholds: Thresholds | None = None, *,
          checks: Sequence[tuple[str, str]] = DEFAULT_CHECKS,
          allow_different_workload: bool = False) -> Verdict:  # fmt: skip
    """Judge ``candidate`` against ``baseline``.

    Raises :class:`BadInput` when the fingerprints differ (or one is unknown), unless
    ``allow_different_workload``. Deterministic for a given ``thresholds.seed``.
    """
    t = thresholds or Thresholds()
    notes: list[str] = []
    if baseline.fingerprint != candidate.fingerprint or baseline.fingerprint is None:
        what = (f"workload fingerprints differ ({_short(baseline.fingerprint)} vs "
                f"{_short(candidate.fingerprint)})")  # fmt: skip
        if not allow_different_workload:
            raise BadInput(f"{what}: these runs are not of the same scenario; "
                           "pass --allow-different-workload to compare them anyway")  # fmt: skip
        notes.append(f"{what}: compared anyway (--allow-different-workload)")
    for run, role in ((baseline, "baseline"), (candidate, "candidate")):
        notes.extend(f"{role}: {w}" for w in run.warnings)
    rows: list[Row] = []
    by_metric: dict[str, list[str]] = {}
    for metric, stat in checks:
        by_metric.setdefault(metric, []).append(stat)
    for metric, stats in by_metric.items():
        if metric == "error_rate":
            rows.append(_judge_error_rate(baseline, candidate, t))
        elif metric == "throughput":
            rows.append(_judge_throughput(baseline, candidate, t))
        else:
            metric_rows, note = _judge_latency(metric, stats, baseline, candidate, t)
            rows.extend(metric_rows)
            if note:
                notes.append(note)
    if any(r.ci and r.metric != "error_rate" for r in rows):
        notes.append(f"intervals: {t.confidence:.0%} bootstrap over measured seconds, "
                     f"{t.resamples} resamples, seed {t.seed}")  # fmt: skip
    notes.extend(f"{r.name}: {r.basis}" for r in rows if r.metric in _RATES and r.ci is None and r.verdict != NA)
    return Verdict(tuple(rows), tuple(notes), t)


def _judge_latency(metric: str, stats: Sequence[str], b: RunData, c: RunData,
                   t: Thresholds) -> tuple[list[Row], str]:  # fmt: skip
    b_iv = [r for r in b.intervals.get(metric, ()) if r.count]
    c_iv = [r for r in c.intervals.get(metric, ()) if r.count]
    ci: dict[str, tuple[float, float]] = {}
    if b_iv and c_iv:
        b_tot, c_tot = merge(b_iv), merge(c_iv)
        base = {s: _us_to_ms(b_tot.percentile_us(PERCENTILES[s])) for s in stats}
        cand = {s: _us_to_ms(c_tot.percentile_us(PERCENTILES[s])) for s in stats}
        fewest = min(len(b_iv), len(c_iv))
        if not t.resamples:
            basis, note = "thresholds only", ""
        elif fewest < t.min_intervals:
            basis = "thresholds only"
            note = (f"{metric}: {fewest} per-second interval(s) in one run (< {t.min_intervals}): "
                    "no interval, thresholds only")  # fmt: skip
        else:
            basis, note = "bootstrap", ""
            ci = _bootstrap_ci(metric, stats, b_iv, c_iv, t)
    else:
        base = {s: _num(b.summary_ms.get(metric, {}).get(s)) for s in stats}
        cand = {s: _num(c.summary_ms.get(metric, {}).get(s)) for s in stats}
        missing = " and ".join(role for role, iv in (("baseline", b_iv), ("candidate", c_iv)) if not iv)
        basis = "summary, thresholds only"
        note = f"{metric}: no interval histograms in the {missing}: summary.json figures, thresholds only"
    rows = [_latency_row(metric, s, base[s], cand[s], ci.get(s), basis, t) for s in stats]
    return rows, note


def _latency_row(metric: str, stat: str, b: float | None, c: float | None,
                 ci: tuple[float, float] | None, basis: str, t: Thresholds) -> Row:  # fmt: skip
    if b is None or c is None:
        return Row(metric, stat, "ms", b, c, None, None, None, NA, basis, "no samples in one run")
    diff = c - b
    change = diff / b if b > 0 else (math.inf if diff > 0 else 0.0)
    size = f"{_signed_pct(change)}, {diff:+.3f} ms"
    verdict, reason = _verdict(
        worse=change > t.max_increase and diff > t.min_abs_ms,
        better=-change > t.max_increase and -diff > t.min_abs_ms,
        ci=ci, worse_is_up=True, size=size,
        if_worse=f"{size}: beyond +{t.max_increase:.0%} and +{t.min_abs_ms:g} ms",
        if_better=f"{size}: beyond -{t.max_increase:.0%} and -{t.min_abs_ms:g} ms",
        if_within=f"{size}: within ±{t.max_increase:.0%} or ±{t.min_abs_ms:g} ms",
    )
    return Row(metric, stat, "ms", b, c, change, round(diff, 3), ci, verdict, basis, reason)


def _judge_error_rate(b: RunData, c: RunData, t: Thresholds) -> Row:
    name, br, cr = "error_rate", b.error_rate, c.error_rate
    if br is None or cr is None:
        return Row(name, "", "", br, cr, None, None, None, NA, "thresholds only", "unknown in one run")
    ci, basis = None, "thresholds only: no request counts"
    if b.error_counts and c.error_counts and b.error_counts[1] and c.error_counts[1]:
        ci, basis = newcombe(c.error_counts, b.error_counts, t.confidence), "Newcombe interval"
    diff = cr - br
    change = diff / br if br > 0 else (math.inf if diff > 0 else 0.0)
    size = f"{diff:+.4f} (absolute)"
    verdict, reason = _verdict(
        worse=diff > t.max_error_increase, better=diff < -t.max_error_increase,
        ci=ci, worse_is_up=True, size=size,
        if_worse=f"{size} > +{t.max_error_increase:g}",
        if_better=f"{size} < -{t.max_error_increase:g}",
        if_within=f"{size}: within ±{t.max_error_increase:g}",
    )
    return Row(name, "", "", br, cr, change, round(diff, 6), ci, verdict, basis, reason)


def _judge_throughput(b: RunData, c: RunData, t: Thresholds) -> Row:
    name, unit, br, cr = "throughput", "req/s", b.requests_per_s, c.requests_per_s
    if br is None or cr is None or br <= 0:
        return Row(name, "", unit, br, cr, None, None, None, NA, "thresholds only", "no baseline throughput")
    fewest = min(len(b.completions_per_s), len(c.completions_per_s))
    ci, basis = None, "thresholds only: no per-second completions (timeseries.csv)"
    if not t.resamples:
        basis = "thresholds only"
    elif fewest and fewest < t.min_intervals:
        basis = f"thresholds only: {fewest} measured second(s) in one run (< {t.min_intervals})"
    elif fewest:
        means = []
        for role, per_s in enumerate((b.completions_per_s, c.completions_per_s)):
            rng = np.random.default_rng([t.seed, zlib.crc32(name.encode()), role])
            values = np.asarray(per_s, dtype=np.float64)
            means.append(values[rng.integers(0, len(values), size=(t.resamples, len(values)))].mean(axis=1))
        ci, basis = interval(means[1] - means[0], t.confidence), "bootstrap"
    diff = cr - br
    change = diff / br
    size = _signed_pct(change)
    verdict, reason = _verdict(
        worse=change < -t.max_throughput_decrease, better=change > t.max_throughput_decrease,
        ci=ci, worse_is_up=False, size=size,
        if_worse=f"{size} < -{t.max_throughput_decrease:.0%}",
        if_better=f"{size} > +{t.max_throughput_decrease:.0%}",
        if_within=f"{size}: within ±{t.max_throughput_decrease:.0%}",
    )
    return Row(name, "", unit, br, cr, change, round(diff, 3), ci, verdict, basis, reason)


def _verdict(*, worse: bool, better: bool, ci: tuple[float, float] | None, worse_is_up: bool, size: str,
             if_worse: str, if_better: str, if_within: str) -> tuple[str, str]:
    """The ladder every check shares: a move beyond its thresholds counts only when the
    interval of the difference (candidate − baseline) excludes 0 on that side.
    ``worse_is_up``: a larger value is worse (latency, error rate), else smaller (throughput)."""
    above = ci is None or ci[0] > 0
    below = ci is None or ci[1] < 0
    if worse and (above if worse_is_up else below):
        verdict, reason = REGRESSION, if_worse
    elif better and (below if worse_is_up else above):
        verdict, reason = IMPROVED, if_better
    elif worse or better:
        verdict, reason = OK, f"{size}, but the interval includes 0: not credible"
    else:
        verdict, reason = OK, if_within
    if ci is not None and verdict != OK:
        reason += ", interval excludes 0"
    return verdict, reason


def _bootstrap_ci(metric: str, stats: Sequence[str], b_iv: Sequence[Recorder], c_iv: Sequence[Recorder],
                  t: Thresholds) -> dict[str, tuple[float, float]]:  # fmt: skip
    pcts = [PERCENTILES[s] for s in stats]
    draws: list[np.ndarray] = []
    for role, intervals in enumerate((b_iv, c_iv)):
        # Seeded per metric and role, so restricting --metric does not change an interval.
        rng = np.random.default_rng([t.seed, zlib.crc32(metric.encode()), role])
        stack = Stack(intervals)
        picks = rng.integers(0, stack.n, size=(t.resamples, stack.n))
        values = [stack.percentiles_us(np.bincount(pick, minlength=stack.n).astype(np.float64), pcts)
                  for pick in picks]  # fmt: skip
        draws.append(np.asarray(values, dtype=np.float64) / 1000.0)
    diff = draws[1] - draws[0]  # resamples × stats, ms
    return {s: interval(diff[:, i], t.confidence) for i, s in enumerate(stats)}


def _signed_pct(change: float | None) -> str:
    if change is None:
        return "—"
    return "+inf" if math.isinf(change) else f"{change:+.1%}"


def _us_to_ms(v: int | None) -> float | None:
    return None if v is None else v / 1000.0


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def _short(fingerprint: str | None) -> str:
    return "none" if fingerprint is None else fingerprint[:12]
