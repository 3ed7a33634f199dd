"""SLO verdicts from a summary. Pure.

Each SLO compares one summary figure with its limit:

| name                 | figure                                              | passes when   |
|----------------------|-----------------------------------------------------|---------------|
| `ttft_p99_ms`        | `latency_ms.ttft.p99`                               | value <= limit |
| `itl_p99_ms`         | `latency_ms.itl.p99`                                | value <= limit |
| `e2e_p99_ms`         | `latency_ms.e2e.p99`                                | value <= limit |
| `error_rate`         | (failed + dropped) / (completed + failed + dropped) | value <= limit |
| `min_throughput_rps` | `throughput.requests_per_s`                         | value >= limit |

A latency SLO with no samples fails (value ``null``): no data is not a pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["SLO_NAMES", "error_rate", "evaluate"]

_LATENCY = {"ttft_p99_ms": ("ttft", "p99"), "itl_p99_ms": ("itl", "p99"), "e2e_p99_ms": ("e2e", "p99")}
SLO_NAMES: tuple[str, ...] = (*_LATENCY, "error_rate", "min_throughput_rps")


def error_rate(requests: Mapping[str, int]) -> float:
    bad = requests.get("failed", 0) + requests.get("dropped", 0)
    total = requests.get("completed", 0) + bad
    return bad / total if total else 0.0


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
        elif name == "min_throughput_rps":
            value = summary["throughput"]["requests_per_s"]
            ok = value is not None and value >= limit
        else:
            raise KeyError(f"unknown SLO {name!r}; known: {', '.join(SLO_NAMES)}")
        out[name] = {"limit": limit, "value": value, "pass": bool(ok)}
    return out
