"""The mock's own ``/metrics`` (issue 21): its counters in the Prometheus text format 0.0.4,
written by hand (pure: no I/O, no client library), so that ``loadtest run --scrape`` has a
target with a queue to show next to the latencies it causes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["CONTENT_TYPE", "MockMetric", "render_metrics"]

#: the exposition format's media type (what Prometheus asks for first)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class MockMetric:
    """One unlabelled sample; a counter's ``name`` ends in ``_total``."""

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    value: int | float


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _value(v: float) -> str:
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def render_metrics(metrics: Iterable[MockMetric]) -> str:
    """``# HELP``, ``# TYPE`` and the sample of each metric, in the order given."""
    lines = []
    for m in metrics:
        if m.kind == "counter" and not m.name.endswith("_total"):
            raise ValueError(f"counter {m.name!r} must end in _total")
        lines += [f"# HELP {m.name} {_help(m.help)}", f"# TYPE {m.name} {m.kind}", f"{m.name} {_value(m.value)}"]
    return "\n".join(lines) + "\n" if lines else ""
