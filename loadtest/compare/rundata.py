"""What the release gate judges, pure: one run's figures (:class:`RunData`, read from a run
directory by :func:`loadtest.compare.runs.load_run`) and the checks (``--metric`` →
:func:`parse_checks`, :data:`DEFAULT_CHECKS`). The judgement itself is
:func:`loadtest.compare.gate.gate`.

(Until issue 13 this module also held a one-run judgement that resampled single seconds of one
run; its interval hid run-level noise — 6 false alarms in 98 A/A pairs — and the gate replaced
it. Its Newcombe interval for the error rate went with it: the gate resamples the error rate by
whole seconds, or across rounds.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from loadtest.errors import BadInput
from loadtest.metrics.recorder import METRICS, Recorder
from loadtest.metrics.tags import TAG_METRICS

__all__ = [
    "DEFAULT_CHECKS",
    "PERCENTILES",
    "RunData",
    "parse_checks",
    "refuse_untagged",
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
    saturation_reasons: tuple[str, ...] = ()
    interrupted: bool = False
    mode: str | None = None
    offered_rate: float | None = None
    achieved_rate: float | None = None
    #: the request class these figures are of (``--tag web_search=true``; None: the whole run).
    #: Latencies, counts, error rate and throughput are then the tag's (summary.json ``by_tag``);
    #: the run's health (saturation, interruption, schedule, fingerprint) is the run's.
    tag: str | None = None
    #: per check metric (a latency metric, ``error_rate``, ``throughput``): the file of its
    #: per-second data that the run directory lacks (``ttft.hlog``, ``timeseries.csv``, with a tag
    #: ``by_tag/<tag>/ttft.hlog`` or ``requests.csv``). One run per side is judged on those
    #: seconds, so a gated check whose file is missing cannot be compared (issue 22).
    missing: Mapping[str, str] = field(default_factory=dict)


def row_dict(row: Any) -> dict[str, Any]:
    """A verdict row (:class:`loadtest.compare.gate.GateRow`) as JSON-able data: its fields, its name, the
    interval as ``ci_low``/``ci_high``, and no infinite change (from a zero baseline)."""
    d = asdict(row)
    ci = d.pop("ci")
    d["name"] = row.name
    d["ci_low"], d["ci_high"] = (None, None) if ci is None else ci
    if isinstance(d.get("change"), float) and not math.isfinite(d["change"]):
        d["change"] = None  # JSON has no infinity
    return d


def parse_checks(specs: Sequence[str], *, tag: str | None = None) -> tuple[tuple[str, str], ...]:
    """``--metric`` values → (metric, stat) pairs; none → :data:`DEFAULT_CHECKS`.

    ``ttft`` means its p50/p90/p99; ``ttft.p95`` one percentile; ``error_rate`` and
    ``throughput`` themselves. Any latency metric of summary.json is accepted; with ``tag``
    (``--tag``) only those kept per request class (:func:`refuse_untagged`).
    """
    if not specs:
        return DEFAULT_CHECKS
    if tag is not None:
        refuse_untagged([spec.strip().partition(".")[0] for spec in specs], tag)
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


def refuse_untagged(metrics: Sequence[str], tag: str) -> None:
    """BadInput (exit 2) when one of ``metrics`` has no per-tag figures: a request class keeps
    its own error rate, throughput and the request latencies of ``TAG_METRICS`` only (the
    connection's and the generator's figures belong to no request)."""
    bad = [m for m in dict.fromkeys(metrics) if m in METRICS and m not in TAG_METRICS]
    if bad:
        raise BadInput(f"--metric {', '.join(bad)}: not kept per request class, so --tag {tag} cannot judge it "
                       f"(per tag: error_rate, throughput, {', '.join(TAG_METRICS)})")


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)
