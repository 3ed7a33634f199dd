"""Sample floors of the release gate, pure: a gated percentile needs ``min_tail`` samples beyond it
in every run (p99: 100 × min_tail), else its tail is a handful of values and the check cannot be
judged. :func:`loadtest.compare.gate.gate` reports such a check INCONCLUSIVE, not judged
(:func:`lacking`: which run, the samples it had and needed), and judges the others (issue 22: in a
closed loop a slower candidate completes fewer answers, so the regression itself can push it
below a floor the baseline cleared). ``ab`` asks the floors of its first baseline run, to stop
before running every round when the runs are too short for them (:mod:`loadtest.studies.ab`).

With ``--tag`` a run's figures are its request class's (:attr:`RunData.tag`), so the floors
count the class's samples: a rare class's percentile is not judged (too few samples), never
passed on a handful (k6 passed a threshold on a tag that matched nothing, k6 #1526)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loadtest.compare.rundata import PERCENTILES, RunData

__all__ = ["OVERCONFIDENT", "Lack", "Shortfall", "check_name", "lacking", "sample_count", "sample_shortfalls"]

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
        count = sample_count(run, metric)
        if count is not None and count < needed:
            out.append(Shortfall(metric, stat, count, needed, rules.min_tail, q, run.tag))
    return out


@dataclass(frozen=True)
class Lack:
    """Why a gated check cannot be judged for want of samples: the run furthest below its floor
    (``role``, ``run``, its :class:`Shortfall`) and how many of ``of`` runs were short."""

    role: str
    run: str
    shortfall: Shortfall
    short_runs: int
    of: int

    @property
    def text(self) -> str:
        more = f"; {self.short_runs} of {self.of} runs short" if self.short_runs > 1 else ""
        return f"too few samples to judge: {self.role} {self.run}: {self.shortfall.text}{more}"

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "run": self.run, "had": self.shortfall.count, "needed": self.shortfall.needed,
                "short_runs": self.short_runs, "runs": self.of}  # fmt: skip


def lacking(runs: Sequence[tuple[str, RunData]], checks: Sequence[tuple[str, str]], rules: Any, *,
            single: bool) -> dict[str, Lack]:  # fmt: skip
    """Per gated check (by name) that any of ``runs`` (``(role, run)``, either side) lacks samples
    for: the run furthest below the floor, with what it had and needed."""
    short: dict[str, list[tuple[str, RunData, Shortfall]]] = {}
    for role, run in runs:
        for s in sample_shortfalls(run, checks, rules, single=single):
            short.setdefault(check_name(s.metric, s.stat), []).append((role, run, s))
    out = {}
    for name, found in short.items():
        role, run, worst = min(found, key=lambda f: f[2].count / f[2].needed)
        out[name] = Lack(role, run.label, worst, len(found), len(runs))
    return out


def sample_count(run: RunData, metric: str) -> int | None:
    """The samples of ``metric`` in ``run`` (summary.json's count, else its hlog's); None: unknown."""
    entry = run.summary_ms.get(metric)
    count = entry.get("count") if entry else None
    if isinstance(count, int):
        return count
    seconds = run.intervals.get(metric)
    return sum(s.count for s in seconds) if seconds else None
