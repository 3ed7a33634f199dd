"""The latency samples one request gives, recorded into a :class:`MetricSet`. Pure.

Shared by the run's own histograms and each tag's (:mod:`loadtest.metrics.tags`), so a tag's
figures follow the run's definitions exactly (docs/metrics.md).
"""

from __future__ import annotations

from loadtest.metrics.metricset import MetricSet
from loadtest.metrics.record import RequestRecord, tpot_ns

__all__ = ["record_observed", "record_success"]

_NS_PER_US = 1_000


def record_observed(rec: RequestRecord, m: MetricSet) -> dict[str, int]:
    """A request that failed after its first token: its TTFT and gaps were real. Returns the
    samples taken (``{"ttft": 1, "itl": n}``; empty when it never saw a token)."""
    if not rec.t_first:
        return {}
    start = rec.t_intended or rec.t_send
    m.record("ttft", (rec.t_first - start) / _NS_PER_US)
    m.record("ttft_uncorrected", (rec.t_first - rec.t_send) / _NS_PER_US)
    if rec.gaps_ns:
        m.interval("itl").record_ns_many(rec.gaps_ns)
        return {"ttft": 1, "itl": len(rec.gaps_ns)}
    return {"ttft": 1}


def record_success(rec: RequestRecord, m: MetricSet) -> None:
    """A completed answer: TTFT and e2e (from the intended send time, and uncorrected), every
    gap, TPOT per chunk and, when its tokens were counted, per token."""
    start = rec.t_intended or rec.t_send
    if rec.t_first:
        m.record("ttft", (rec.t_first - start) / _NS_PER_US)
        m.record("ttft_uncorrected", (rec.t_first - rec.t_send) / _NS_PER_US)
    m.record("e2e", (rec.t_stop - start) / _NS_PER_US)
    m.record("e2e_uncorrected", (rec.t_stop - rec.t_send) / _NS_PER_US)
    # every gap, one value each, in one pass (same rounding and clamping as record_us)
    m.interval("itl").record_ns_many(rec.gaps_ns)
    tpot = tpot_ns(rec.chunks, rec.t_first, rec.t_last)
    if tpot is not None:
        m.record("tpot", tpot / _NS_PER_US)
    tpot_token = rec.tpot_token_ns()
    if tpot_token is not None:
        m.record("tpot_token", tpot_token / _NS_PER_US)
