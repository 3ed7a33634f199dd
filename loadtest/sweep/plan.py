"""Capacity sweeps, the pure part: the level planner and the verdict.

The planner (:func:`plan_levels`, :func:`bisect_level`) and the verdict
(:func:`judge_sweep`; the console lines in :mod:`loadtest.sweep.lines`) read no file and no clock; :mod:`loadtest.sweep`
is the driver that runs each step and re-exports these names.

**The verdict rule.** Steps are grouped by load into levels (a level's replicates) and
ordered by load, whatever order they ran in. A level is PASS, FAIL or UNSURE
(:func:`level_status`: one step decides alone; several decide by the share that passed and a
95 % confidence bound on their mean SLO margin). Walking up from the lowest level: a PASS
raises ``max_passing_load``; the first FAIL is ``first_failing_load`` and ends the walk;
levels between them are ``unsure`` (a pass above an unsure level is not the answer); a level
with a step in which the generator was saturated ends the walk too (its figures describe the
generator, not the target), and the sweep is *inconclusive* from that load up. A pass above
the first failure (a noisy or non-monotone target) is reported in
``passed_above_first_failure`` but is never the answer. Interrupted steps measured less than
they should have and are left out of the verdict.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from loadtest.errors import BadInput
from loadtest.slo import ANSWER_FLOORS, AT_LEAST

__all__ = [
    "MAX_LEVELS",
    "OVERLOAD_SHARE",
    "RULE",
    "SERVED_SHARE",
    "Mode",
    "SweepAnswer",
    "SweepStep",
    "bisect_level",
    "judge_sweep",
    "level_shares",
    "level_status",
    "margin_bounds",
    "parse_level_list",
    "plan_levels",
]

Mode = Literal["closed", "open"]
OVERLOAD_SHARE = 0.98  # achieved below this share of offered: the load was not applied
#: open loop: answers completed in the window below this share of the requests sent in it:
#: the target's queue grew through the step (it served less than it was given)
SERVED_SHARE = 0.95
MAX_LEVELS = 50  # a plan longer than this is almost certainly a typo in --factor or --max
RULE = (
    "steps grouped by load into levels, ordered by load; a level of one step passes or fails by it; "
    "of several replicates it is reliably passing when enough passed and the 95% lower bound of their "
    "mean SLO margin is above 0, reliably failing when the 95% upper bound is below 0, else unsure; max_passing_load is the highest reliably passing level with every lower level "
    "passing; first_failing_load is the lowest reliably failing level above it; the levels between "
    "them are unsure; a step where the generator was saturated makes the sweep inconclusive from its "
    "load up; interrupted steps are not judged"
)


# ---- pure: planning ---------------------------------------------------------------------------


def _axis(mode: Mode) -> tuple[str, str]:
    """(axis name, unit) of a sweep in ``mode``."""
    return ("concurrency", "users") if mode == "closed" else ("rate", "/s")


def parse_level_list(text: str, *, flag: str) -> tuple[float, ...]:
    """``"10,20,40"`` → ``(10.0, 20.0, 40.0)``; BadInput naming ``flag`` otherwise."""
    out: list[float] = []
    for part in text.split(","):
        try:
            value = float(part.strip())
        except ValueError:
            raise BadInput(f"{flag} {text!r}: {part.strip()!r} is not a number (give e.g. 10,20,40)") from None
        out.append(value)
    return tuple(out)


def plan_levels(
    *,
    mode: Mode,
    levels: Sequence[float] | None = None,
    start: float | None = None,
    factor: float = 2.0,
    max_load: float | None = None,
) -> tuple[float, ...]:
    """The loads to run, lowest first: ``levels`` as given, or ``start * factor**k`` up to
    ``max_load`` (never above it; ``max_load`` itself is a level only when the series hits it).

    Closed loop: whole numbers of users (a geometric series is rounded, repeats dropped).
    Raises BadInput for an empty, non-increasing, non-positive or over-long plan.
    """
    lo_flag = "--levels" if mode == "closed" else "--rates"
    if levels is not None:
        if start is not None or max_load is not None:
            raise BadInput(f"give {lo_flag} or --start/--max, not both")
        plan = [float(v) for v in levels]
        if not plan:
            raise BadInput(f"{lo_flag}: no levels given")
        for v in plan:
            if not math.isfinite(v) or v <= 0:
                raise BadInput(f"{lo_flag}: every level must be a positive number, got {v:g}")
            if mode == "closed" and v != int(v):
                raise BadInput(f"{lo_flag}: closed-loop levels are whole numbers of users, got {v:g}")
        if any(b <= a for a, b in itertools.pairwise(plan)):
            raise BadInput(f"{lo_flag}: levels must increase ({', '.join(f'{v:g}' for v in plan)})")
    else:
        if start is None or max_load is None:
            raise BadInput(f"give {lo_flag} LIST, or --start and --max (with --factor)")
        if not (math.isfinite(start) and start > 0 and math.isfinite(max_load)):
            raise BadInput("--start and --max must be positive numbers")
        if not (math.isfinite(factor) and factor > 1):
            raise BadInput(f"--factor must be above 1, got {factor:g}")
        if max_load < start:
            raise BadInput(f"--max ({max_load:g}) is below --start ({start:g})")
        if mode == "closed" and start != int(start):
            raise BadInput(f"--start: closed-loop levels are whole numbers of users, got {start:g}")
        plan = []
        k = 0
        # each level from start * factor**k (not from the previous level): rounding does not accumulate
        while (exact := start * factor**k) <= max_load * (1 + 1e-9):
            level = float(round(exact)) if mode == "closed" else float(f"{exact:.6g}")
            if not plan or level > plan[-1]:
                plan.append(level)
            k += 1
            if len(plan) > MAX_LEVELS:
                break
    if len(plan) > MAX_LEVELS:
        raise BadInput(f"the plan has more than {MAX_LEVELS} levels: raise --factor or lower --max")
    return tuple(int(v) if mode == "closed" else v for v in plan)


def bisect_level(passing: float, failing: float, *, mode: Mode, resolution: float = 0.02) -> float | None:
    """The load halfway between a passing and a higher failing load, or None when there is
    none left to try: adjacent user counts; rates within ``resolution`` (2 %) of each other
    (or within 3 significant digits)."""
    if failing <= passing:
        return None
    if mode == "closed":
        mid_users = (int(passing) + int(failing)) // 2
        return mid_users if int(passing) < mid_users < int(failing) else None
    if (failing - passing) <= resolution * passing:
        return None
    mid = float(f"{(passing + failing) / 2:.3g}")
    return mid if passing < mid < failing else None


# ---- pure: the verdict ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SweepStep:
    """One step as it ran: its load, verdict and key figures (from its summary.json)."""

    load: float
    passed: bool
    saturated: bool = False
    interrupted: bool = False
    refinement: bool = False
    index: int = 0
    run_dir: str = ""
    slo: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: per request class (summary.json ``slo_by_tag``): judged with the step like its own SLOs
    slo_by_tag: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    throughput_rps: float | None = None
    error_rate: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    offered_rate: float | None = None
    achieved_rate: float | None = None
    saturation_reasons: tuple[str, ...] = ()
    #: the load was not really applied or not served: the generator saturated, it sent under
    #: 98 % of the offered rate in the window, or (open loop) the target completed under 95 % of
    #: what was sent in the window, so its queue grew through the step and any percentile is
    #: the step's length, not the target's latency. Such a step fails and gives no latency
    #: figure (issue 14). (Without the last rule, open-loop steps 10 % above capacity passed one
    #: replicate in three on 6 s steps: p99 380 to 1,409 ms.)
    overloaded: bool = False
    replicate: int = 1
    seed: int | None = None
    mock_seed: int | None = None
    #: {metric: {p50, p90, p99}} in ms, for ttft, itl and e2e (empty when overloaded)
    latency: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    goodput_rps: float | None = None
    measure_s: float | None = None

    @property
    def margin(self) -> float | None:
        """The smallest relative SLO margin over the SLOs judged per step, per-tag ones included
        (:meth:`margins`); negative when one failed."""
        ms = self.margins()
        return min(ms.values()) if ms else None

    def judged(self) -> dict[str, Mapping[str, Any]]:
        """The SLO verdicts judged per step, by name (``by_tag TAG NAME`` for a class's): every
        one but the throughput floors, which are judged on the answer (a low level cannot reach
        them by construction, issue 14)."""
        out: dict[str, Mapping[str, Any]] = {k: v for k, v in self.slo.items() if k not in ANSWER_FLOORS}
        for tag, per in self.slo_by_tag.items():
            out.update({f"by_tag {tag} {k}": v for k, v in per.items() if k not in ANSWER_FLOORS})
        return out

    def margins(self) -> dict[str, float]:
        """Each judged SLO's relative margin: ``(limit - value) / limit`` for a ceiling,
        ``(value - limit) / limit`` for a floor (``min_goodput``); SLOs with no value or a zero
        limit have none."""
        out: dict[str, float] = {}
        for name, v in self.judged().items():
            if v.get("value") is None or float(v["limit"]) <= 0:
                continue
            gap = float(v["value"]) - float(v["limit"])
            out[name] = (gap if name.rpartition(" ")[2] in AT_LEAST else -gap) / float(v["limit"])
        return out

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any], *, load: float, index: int, run_dir: str,
                     refinement: bool) -> SweepStep:
        ttft = summary["latency_ms"].get("ttft", {})
        gen = summary["generator"]
        sched = summary["schedule"]
        offered, achieved = sched.get("offered_rate"), sched.get("achieved_rate")
        saturated = bool(gen["saturated"])
        served = summary["throughput"].get("requests_per_s")
        overloaded = (saturated or (bool(offered) and achieved is not None and achieved < OVERLOAD_SHARE * offered)
                      or (bool(achieved) and served is not None and served < SERVED_SHARE * achieved))  # fmt: skip
        slo = summary["slo"]
        slo_by_tag = summary.get("slo_by_tag") or {}
        judged = [v["pass"] for k, v in slo.items() if k not in ANSWER_FLOORS]
        judged += [v["pass"] for per in slo_by_tag.values() for k, v in per.items() if k not in ANSWER_FLOORS]
        # a throughput floor is judged on the answer, not per step (issue 14): a low level
        # cannot reach it by construction
        passed = (all(judged) if slo else bool(summary["passed"])) and not overloaded
        latency = {} if overloaded else {
            m: {p: float(summary["latency_ms"][m][p]) for p in ("p50", "p90", "p99") if p in summary["latency_ms"][m]}
            for m in ("ttft", "itl", "e2e") if m in summary["latency_ms"]}
        return cls(
            load=load, passed=passed and not summary.get("interrupted"), saturated=saturated,
            overloaded=overloaded, latency=latency, measure_s=summary.get("measure_s"),
            interrupted=bool(summary.get("interrupted")), refinement=refinement, index=index, run_dir=run_dir,
            slo=summary["slo"], slo_by_tag=slo_by_tag, throughput_rps=summary["throughput"]["requests_per_s"],
            error_rate=summary["error_rate"],
            ttft_p50_ms=None if overloaded else ttft.get("p50"), ttft_p99_ms=None if overloaded else ttft.get("p99"),
            offered_rate=offered, achieved_rate=achieved,
            saturation_reasons=tuple(gen.get("reasons") or ()),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index, "load": self.load, "refinement": self.refinement, "run_dir": self.run_dir,
            "passed": self.passed, "saturated": self.saturated, "saturation_reasons": list(self.saturation_reasons),
            "interrupted": self.interrupted, "slo": {k: dict(v) for k, v in self.slo.items()},
            "slo_by_tag": {t: {k: dict(v) for k, v in per.items()} for t, per in self.slo_by_tag.items()},
            "throughput_rps": self.throughput_rps, "error_rate": self.error_rate,
            "ttft_p50_ms": self.ttft_p50_ms, "ttft_p99_ms": self.ttft_p99_ms,
            "offered_rate": self.offered_rate, "achieved_rate": self.achieved_rate,
            "overloaded": self.overloaded, "replicate": self.replicate, "seed": self.seed,
            "mock_seed": self.mock_seed, "margin": self.margin, "latency_ms": {k: dict(v) for k, v in self.latency.items()},
            "goodput_rps": self.goodput_rps,
        }


@dataclass(frozen=True, kw_only=True)
class SweepAnswer:
    """The verdict of :func:`judge_sweep` (see the module docstring for the rule)."""

    max_passing_load: float | None
    first_failing_load: float | None
    saturated_at_load: float | None = None
    passed_above_first_failure: tuple[float, ...] = ()
    #: levels between the answer and the first reliably failing level: neither reliably
    #: passing nor reliably failing (or passing only above such a level)
    unsure: tuple[float, ...] = ()
    #: every judged level's standing (:func:`level_status`): PASS, FAIL or UNSURE
    standing: Mapping[float, str] = field(default_factory=dict)

    @property
    def inconclusive(self) -> bool:
        """True when the generator saturated before any failure: the capacity is not known."""
        return self.saturated_at_load is not None

    @property
    def passed(self) -> bool:
        return self.max_passing_load is not None


def level_shares(steps: Sequence[SweepStep]) -> dict[float, tuple[int, int]]:
    """{load: (replicates passed, replicates run)} over the judged (not interrupted) steps."""
    out: dict[float, tuple[int, int]] = {}
    for s in steps:
        if s.interrupted:
            continue
        k, n = out.get(s.load, (0, 0))
        out[s.load] = (k + int(s.passed), n + 1)
    return out


#: one-sided 95 % quantiles of Student's t by degrees of freedom (beyond 10: the normal's)
_T95 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860, 9: 1.833, 10: 1.812}

#: how a level stands (:func:`level_status`)
PASS, FAIL, UNSURE = "pass", "fail", "unsure"
#: the margin given to a replicate that failed without one (overloaded, or no data): a sure fail
_NO_MARGIN = -1.0


def margin_bounds(margins: Sequence[float]) -> tuple[float, float] | None:
    """(lower, upper) bounds on the SLO margins of a level's replicates (None with fewer than
    two), one-sided, with Student's t on n − 1 degrees of freedom:

    * lower: the bound of the *mean* margin, mean − t·s/√n. Above 0 (with every replicate
      passing), the level passes, not by luck: three passes at 250, 330 and 410 ms against 430
      are luck; 370 ± 5 ms is not. A *prediction* bound (mean − t·s·√(1 + 1/n)) would say
      "a new run passes" more surely (in a simulated noisy search the level it chose passed
      ≥ 90 % of the time in 181 of 200 searches, against 135 with this one), but with two or
      three replicates it calls a sharp closed-loop level unsure (24 users at 378 and 366 ms
      against 430), and a closed-loop sweep's answer fell from 24 to 21 users.
    * upper: the bound of the *mean* margin, mean + t·s/√n. Below 0, the level fails more
      often than not: reliably failing.
    """
    n = len(margins)
    if n < 2:
        return None
    mean = sum(margins) / n
    sd: float = math.sqrt(sum((m - mean) ** 2 for m in margins) / (n - 1))
    half = _T95.get(n - 1, 1.645) * sd / math.sqrt(n)
    return mean - half, mean + half


def level_status(steps: Sequence[SweepStep], *, required_share: float = 1.0) -> str:
    """PASS, FAIL or UNSURE for the (not interrupted) replicates of one level.

    One replicate: its own verdict (tentative; the search replicates the levels that decide
    the answer). Two or more, with margins ``m`` (a failed replicate without a margin — it
    was overloaded or had no data — counts as a margin of −1):

    * PASS: the share that passed is at least ``required_share`` and the 95 % lower bound
      of the mean margin is above 0 (:func:`margin_bounds`) —
      reliably passing, not by luck;
    * FAIL: the 95 % upper bound of the mean margin is below 0 — reliably failing (the mean
      margin ≈ the median run's: it fails more often than not). "Every replicate failed" is
      not enough: a level that passes half the time fails 3 of 3 one time in 8, and a search
      tests several levels near its boundary (a simulated search put its failing end below
      the 50 % rate 35 times in 200 with that rule);
    * UNSURE otherwise: near the rate that passes half the time; it lies inside the bracket.

    Without margins at all (a throughput floor only): the share decides.
    """
    n, k = len(steps), sum(s.passed for s in steps)
    if n == 1:
        return PASS if k else FAIL
    margins = [s.margin if s.margin is not None and not s.overloaded else (None if s.passed else _NO_MARGIN)
               for s in steps]  # fmt: skip
    share_ok = k / n >= required_share - 1e-9
    known = [m for m in margins if m is not None]
    if len(known) < n:
        return PASS if share_ok else FAIL
    lo, hi = margin_bounds(known) or (0.0, 0.0)
    if share_ok and lo > 0:
        return PASS
    if hi < 0:
        return FAIL
    return UNSURE


def judge_sweep(steps: Sequence[SweepStep], *, required_share: float = 1.0) -> SweepAnswer:
    """Apply the verdict rule to ``steps`` (any order), level by level (:func:`level_status`):
    ``max_passing_load`` is the highest level that is PASS with every lower level PASS;
    ``first_failing_load`` the lowest level above it that is FAIL; the levels between them
    (UNSURE, or passing only after an unsure one) are ``unsure``: the load that passes half
    the time lies among or next to them. Three passes of 250, 330 and 410 ms against a 430 ms
    limit are luck near an open-loop system's capacity (such a rate passed 7 of 10
    independent runs, BENCHMARKS.md), while 370 ± 5 ms is not; likewise a level that failed
    once and passed twice is not a reliable failure. A level with a saturated replicate is
    saturated: the walk stops there."""
    by_load: dict[float, list[SweepStep]] = {}
    for s in steps:
        if not s.interrupted:
            by_load.setdefault(s.load, []).append(s)
    saturated_loads = {load for load, ss in by_load.items() if any(s.saturated for s in ss)}
    status = {load: level_status(ss, required_share=required_share) for load, ss in by_load.items()}
    max_pass: float | None = None
    first_fail: float | None = None
    saturated: float | None = None
    unsure: list[float] = []
    for load in sorted(by_load):
        if load in saturated_loads:
            saturated = load
            break
        if status[load] == PASS and not unsure:
            max_pass = load
        elif status[load] == FAIL:
            first_fail = load
            break
        else:
            unsure.append(load)
    above: tuple[float, ...] = ()
    if first_fail is not None:
        above = tuple(load for load in sorted(by_load) if load > first_fail and load not in saturated_loads
                      and status[load] == PASS)  # fmt: skip
    return SweepAnswer(max_passing_load=max_pass, first_failing_load=first_fail, saturated_at_load=saturated,
                       passed_above_first_failure=above, unsure=tuple(unsure), standing=status)
