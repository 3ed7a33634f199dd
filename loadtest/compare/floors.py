"""Sample floors of the release gate, pure: a gated percentile needs ``min_tail`` samples beyond it
in every run (p99: 100 × min_tail), else its tail is a handful of values and the check cannot be
judged. :func:`loadtest.compare.gate.gate` refuses runs below a floor; ``ab`` asks the same of its
first baseline run, to stop before running every round (:mod:`loadtest.studies.ab`).

With ``--tag`` a run's figures are its request class's (:attr:`RunData.tag`), so the floors
count the class's samples: a rare class is refused as too few samples, never passed on a
handful (k6 passed a threshold on a tag that matched nothing, k6 #1526)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loadtest.compare.rundata import PERCENTILES, RunData

__all__ = ["OVERCONFIDENT", "Shortfall", "check_name", "sample_shortfalls"]

#: latency metrics whose within-run (single-run) interval is overconfident: not gated alone
OVERCONFIDENT = ("itl", "tpot")


def check_name(metric: str, stat: str) -> str:
    """The name of a check as every table and calibration.json shows it (``ttft p99``)."""
    return f"{metric} {stat}".strip()


@dataclass(frozen=True)
class Shortfall:
    """A gated percentile that one run has too few samples for."""

    metric: str
    stat: str
    count: int
    needed: int
    beyond: int  # the samples beyond the percentile the rule asks for (min_tail)
    q: float
    tag: str | None = None  # the request class counted (None: the whole run)

    @property
    def text(self) -> str:
        of = f" of {self.tag}" if self.tag else ""
        return (f"{self.count} {self.metric} samples{of}; {self.metric} {self.stat} needs at least {self.needed} per "
                f"run ({self.beyond} beyond the {self.q:g}th percentile)")


def sample_shortfalls(run: RunData, checks: Sequence[tuple[str, str]], rules: Any, *,
                      single: bool) -> list[Shortfall]:
    """Every gated percentile check ``run`` lacks samples for: a run needs ``min_tail`` samples
    beyond the percentile (p99: 100 × min_tail), else its tail is a handful of values.
    ``single``: one run per side, where checks in OVERCONFIDENT are not gated without a calibration."""
    out = []
    for metric, stat in checks:
        if stat not in PERCENTILES or (single and metric in OVERCONFIDENT and check_name(metric, stat) not in rules.noise):
            continue
        q = PERCENTILES[stat]
        needed = math.ceil(rules.min_tail * 100 / (100 - q) - 1e-9)
        count = _count(run, metric)
        if count is not None and count < needed:
            out.append(Shortfall(metric, stat, count, needed, rules.min_tail, q, run.tag))
    return out


def _count(run: RunData, metric: str) -> int | None:
    entry = run.summary_ms.get(metric)
    count = entry.get("count") if entry else None
    if isinstance(count, int):
        return count
    seconds = run.intervals.get(metric)
    return sum(s.count for s in seconds) if seconds else None
