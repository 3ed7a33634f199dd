"""SLO verdicts from a summary. Pure.

Each SLO compares one summary figure with its limit:

| name                 | figure                                              | passes when   |
|----------------------|-----------------------------------------------------|---------------|
| `ttft_p99_ms`        | `latency_ms.ttft.p99`                               | value <= limit |
| `itl_p99_ms`         | `latency_ms.itl.p99`                                | value <= limit |
| `e2e_p99_ms`         | `latency_ms.e2e.p99`                                | value <= limit |
| `error_rate`         | (failed + dropped + cancelled) / offered requests   | value <= limit |
| `session_error_rate` | failed session steps / attempted (connection set-ups, pings, set-models) | value <= limit |
| `min_throughput_rps` | `throughput.requests_per_s`                         | value >= limit |
| `min_goodput`        | `goodput.share`: good requests / offered (slo.goodput) | value >= limit |

``slo.by_tag`` judges the same SLOs (but ``session_error_rate``: a session step has no tag) on
one class of requests, ``summary["by_tag"][tag]``; a tag no request carried fails each of its
SLOs (:func:`evaluate_by_tag`): an SLO on nothing never passes.

A latency SLO with no samples fails (value ``null``): no data is not a pass.
``error_rate`` and ``session_error_rate`` always apply (DEFAULT_LIMITS, unless the scenario
sets another limit): every request or step the target did not serve counts against the run,
so a target that stopped answering can never pass (issue 10).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ALWAYS_ON", "ANSWER_FLOORS", "AT_LEAST", "NO_REQUESTS", "SHARES", "SLO_NAMES", "TAG_SLO_NAMES",
           "error_counts", "error_rate", "evaluate", "evaluate_by_tag", "step_error_rate"]

_LATENCY = {"ttft_p99_ms": ("ttft", "p99"), "itl_p99_ms": ("itl", "p99"), "e2e_p99_ms": ("e2e", "p99")}
SLO_NAMES: tuple[str, ...] = (*_LATENCY, "error_rate", "session_error_rate", "min_throughput_rps", "min_goodput")
#: the SLOs a request class (slo.by_tag) can have
TAG_SLO_NAMES: tuple[str, ...] = tuple(n for n in SLO_NAMES if n != "session_error_rate")
#: SLOs that pass when the value is at least the limit (every other one: at most)
AT_LEAST: frozenset[str] = frozenset({"min_throughput_rps", "min_goodput"})
#: floors a capacity sweep judges on its answer, not per step (a low level cannot reach them)
ANSWER_FLOORS: frozenset[str] = frozenset({"min_throughput_rps"})
#: SLOs whose limit is a share in [0, 1] (besides the always-on error rates)
SHARES: frozenset[str] = frozenset({"min_goodput"})
NO_REQUESTS = "no requests carried this tag"
#: SLOs that apply to every run, with these limits unless the scenario sets its own
ALWAYS_ON: dict[str, float] = {"error_rate": 0.01, "session_error_rate": 0.01}


def error_counts(requests: Mapping[str, int]) -> tuple[int, int]:
    """``(not served, offered)``: the two counts of :func:`error_rate`.

    Not served = failed + dropped (the queue was full) + cancelled (offered, never finished:
    still queued or in flight when the run ended). Offered = completed + abandoned + those.
    """
    bad = requests.get("failed", 0) + requests.get("dropped", 0) + requests.get("cancelled", 0)
    # an abandoned answer (the user stopped reading, issue 20) was offered and is no error
    return bad, requests.get("completed", 0) + requests.get("abandoned", 0) + bad


def error_rate(requests: Mapping[str, int]) -> float:
    """The one request error rate: requests the target did not serve / requests offered
    (:func:`error_counts`); 0 when nothing was offered."""
    bad, total = error_counts(requests)
    return bad / total if total else 0.0


def step_error_rate(steps: int, failed: int) -> float:
    """Session steps (connection set-ups, pings, set-models) the target failed / attempted."""
    return failed / steps if steps else 0.0


def evaluate(limits: Mapping[str, float], summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: {limit, value, pass}}`` for every SLO in ``limits``."""
    out: dict[str, dict[str, Any]] = {}
    for name, limit in limits.items():
        value: float | None
        if name in _LATENCY:
            metric, pct = _LATENCY[name]
            value = summary["latency_ms"].get(metric, {}).get(pct)
            ok = value is not None and value <= limit
        elif name == "error_rate":
            value = round(error_rate(summary["requests"]), 6)
            ok = value <= limit
        elif name == "session_error_rate":
            session = summary.get("session") or {}
            value = round(step_error_rate(session.get("steps", 0), session.get("failed", 0)), 6)
            ok = value <= limit
        elif name == "min_throughput_rps":
            value = summary["throughput"]["requests_per_s"]
            ok = value is not None and value >= limit
        elif name == "min_goodput":
            value = (summary.get("goodput") or {}).get("share")
            ok = value is not None and value >= limit
        else:
            raise KeyError(f"unknown SLO {name!r}; known: {', '.join(SLO_NAMES)}")
        out[name] = {"limit": limit, "value": value, "pass": bool(ok)}
    return out


def evaluate_by_tag(by_tag_limits: Mapping[str, Mapping[str, float]],
                    by_tag: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{tag: {name: {limit, value, pass[, reason]}}}``; a tag no request carried fails every
    SLO of it (``value`` None, ``reason`` :data:`NO_REQUESTS`)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for tag, limits in by_tag_limits.items():
        figures = by_tag.get(tag)
        if not figures or not figures["requests"].get("offered"):
            out[tag] = {name: {"limit": limit, "value": None, "pass": False, "reason": NO_REQUESTS}
                        for name, limit in limits.items()}
        else:
            out[tag] = evaluate(limits, figures)
    return out
