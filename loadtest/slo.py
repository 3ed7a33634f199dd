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

A latency SLO with no samples fails (value ``null``): no data is not a pass.
``error_rate`` and ``session_error_rate`` always apply (DEFAULT_LIMITS, unless the scenario
sets another limit): every request or step the target did not serve counts against the run,
so a target that stopped answering can never pass (issue 10).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ALWAYS_ON", "AT_LEAST", "SLO_NAMES", "error_counts", "error_rate", "evaluate", "step_error_rate"]

_LATENCY = {"ttft_p99_ms": ("ttft", "p99"), "itl_p99_ms": ("itl", "p99"), "e2e_p99_ms": ("e2e", "p99")}
SLO_NAMES: tuple[str, ...] = (*_LATENCY, "error_rate", "session_error_rate", "min_throughput_rps")
#: SLOs that pass when the value is at least the limit (every other one: at most)
AT_LEAST: frozenset[str] = frozenset({"min_throughput_rps"})
#: SLOs that apply to every run, with these limits unless the scenario sets its own
ALWAYS_ON: dict[str, float] = {"error_rate": 0.01, "session_error_rate": 0.01}


def error_counts(requests: Mapping[str, int]) -> tuple[int, int]:
    """``(not served, offered)``: the two counts of :func:`error_rate`.

    Not served = failed + dropped (the queue was full) + cancelled (offered, never finished:
    still queued or in flight when the run ended). Offered = completed + those.
    """
    bad = requests.get("failed", 0) + requests.get("dropped", 0) + requests.get("cancelled", 0)
    return bad, requests.get("completed", 0) + bad


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
        else:
            raise KeyError(f"unknown SLO {name!r}; known: {', '.join(SLO_NAMES)}")
        out[name] = {"limit": limit, "value": value, "pass": bool(ok)}
    return out
