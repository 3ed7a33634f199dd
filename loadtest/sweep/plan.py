"""Capacity sweeps, the pure part: the level planner and the verdict.

The planner (:func:`plan_levels`, :func:`bisect_level`) and the verdict
(:func:`judge_sweep`, :func:`answer_line`) read no file and no clock; :mod:`loadtest.sweep`
is the driver that runs each step and re-exports these names.

**The verdict rule.** Steps are ordered by load, whatever order they ran in. Walking up
from the lowest load: a step that passed raises ``max_passing_load`` to its load; the first
step that failed is ``first_failing_load`` and ends the walk; a step in which the generator
was saturated ends the walk too (its figures describe the generator, not the target), and
the sweep is *inconclusive* from that load up. So ``max_passing_load`` is the highest load
that passed with every lower load passing: a pass above a failure (a noisy or non-monotone
target) is reported in ``passed_above_first_failure`` but is never the answer. Interrupted
steps measured less than they should have and are left out of the verdict.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from loadtest.errors import BadInput
from loadtest.slo import AT_LEAST

__all__ = [
    "MAX_LEVELS",
    "OVERLOAD_SHARE",
    "RULE",
    "Mode",
    "SweepAnswer",
    "SweepStep",
    "answer_line",
    "bisect_level",
    "judge_sweep",
    "level_shares",
    "parse_level_list",
    "plan_levels",
    "step_line",
]

Mode = Literal["closed", "open"]
OVERLOAD_SHARE = 0.98  # achieved below this share of offered: the load was not applied
MAX_LEVELS = 50  # a plan longer than this is almost certainly a typo in --factor or --max
RULE = (
    "steps ordered by load; max_passing_load is the highest load that passed with every lower load "
    "passing; first_failing_load is the lowest load that failed; a step where the generator was "
    "saturated makes the sweep inconclusive from its load up; interrupted steps are not judged"
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
    throughput_rps: float | None = None
    error_rate: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    offered_rate: float | None = None
    achieved_rate: float | None = None
    saturation_reasons: tuple[str, ...] = ()
    #: the load was not really applied: the generator saturated, or it sent under 98 % of the
    #: offered rate in the window. Such a step fails and gives no latency figure (issue 14).
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
        """The smallest relative SLO margin ``(limit - value) / limit`` over the SLOs judged per
        step (throughput floors are judged on the answer instead); negative when one failed."""
        ms = [(float(v["limit"]) - float(v["value"])) / float(v["limit"]) for k, v in self.slo.items()
              if k not in AT_LEAST and v.get("value") is not None and float(v["limit"]) > 0]
        return min(ms) if ms else None

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any], *, load: float, index: int, run_dir: str,
                     refinement: bool) -> SweepStep:
        ttft = summary["latency_ms"].get("ttft", {})
        gen = summary["generator"]
        sched = summary["schedule"]
        offered, achieved = sched.get("offered_rate"), sched.get("achieved_rate")
        saturated = bool(gen["saturated"])
        overloaded = saturated or (bool(offered) and achieved is not None and achieved < OVERLOAD_SHARE * offered)
        slo = summary["slo"]
        judged = [v["pass"] for k, v in slo.items() if k not in AT_LEAST]
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
            slo=summary["slo"], throughput_rps=summary["throughput"]["requests_per_s"],
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


def margin_bound(margins: Sequence[float]) -> float | None:
    """The one-sided 95 % lower confidence bound of the mean SLO margin of a level's
    replicates (None with fewer than two). Above 0: the level passes with confidence, not by luck."""
    n = len(margins)
    if n < 2:
        return None
    mean = sum(margins) / n
    sd: float = math.sqrt(sum((m - mean) ** 2 for m in margins) / (n - 1))
    return mean - _T95.get(n - 1, 1.645) * sd / math.sqrt(n)


def judge_sweep(steps: Sequence[SweepStep], *, required_share: float = 1.0) -> SweepAnswer:
    """Apply the verdict rule to ``steps`` (any order). A level (all steps at one load, its
    replicates) passes when the share of its replicates that passed is at least
    ``required_share`` (default: every one) **and**, once it has two replicates or more, the
    lower confidence bound of their mean SLO margin is above zero (:func:`margin_bound`):
    three passes of 250, 330 and 410 ms against a 430 ms limit are luck near an open-loop
    system's capacity (such a rate passed 7 of 10 independent runs, BENCHMARKS.md), while
    370 ± 5 ms is not. A level with a saturated replicate is saturated."""
    shares = level_shares(steps)
    margins: dict[float, list[float]] = {}
    for s in steps:
        if not s.interrupted and s.margin is not None:
            margins.setdefault(s.load, []).append(s.margin)
    unsure = {load for load, ms in margins.items() if (b := margin_bound(ms)) is not None and b <= 0}
    saturated_loads = {s.load for s in steps if s.saturated and not s.interrupted}
    max_pass: float | None = None
    first_fail: float | None = None
    saturated: float | None = None
    for load in sorted(shares):
        if load in saturated_loads:
            saturated = load
            break
        k, n = shares[load]
        if k / n < required_share - 1e-9 or load in unsure:
            first_fail = load
            break
        max_pass = load
    above: tuple[float, ...] = ()
    if first_fail is not None:
        above = tuple(load for load in sorted(shares) if load > first_fail and load not in saturated_loads
                      and load not in unsure and shares[load][0] / shares[load][1] >= required_share - 1e-9)
    return SweepAnswer(max_passing_load=max_pass, first_failing_load=first_fail, saturated_at_load=saturated,
                       passed_above_first_failure=above)


def _load_text(load: float | None, mode: Mode) -> str:
    if load is None:
        return "-"
    return f"{load:g} users" if mode == "closed" else f"{load:g}/s"


def step_line(step: SweepStep, *, mode: Mode) -> str:
    """One console line per step: load, verdict, each SLO, throughput, TTFT."""
    verdict = "PASS" if step.passed else "FAIL"
    if step.saturated:
        verdict = "SATURATED (generator)"
    if step.interrupted:
        verdict += " (interrupted)"
    slos = []
    for name, v in step.slo.items():
        op = ">=" if name in AT_LEAST else "<="
        value = "no data" if v["value"] is None else f"{v['value']:g}"
        slos.append(f"{name} {value} {op} {v['limit']:g}{'' if v['pass'] else ' FAIL'}")
    ttft = "-" if step.ttft_p50_ms is None or step.ttft_p99_ms is None else (
        f"{step.ttft_p50_ms:.1f}/{step.ttft_p99_ms:.1f} ms")
    tag = f" (replicate {step.replicate})" if step.replicate > 1 else (" (refine)" if step.refinement else "")
    return (f"step {step.index:>2}{tag}  {_load_text(step.load, mode)}: {verdict}  {'  '.join(slos)}  "
            f"· {step.throughput_rps or 0:.1f} req/s  ttft p50/p99 {ttft}  → {step.run_dir}")


def answer_line(answer: SweepAnswer, *, mode: Mode, stopped: str) -> str:
    """The final console line: the answer, plainly (and why it is partial, when it is)."""
    parts = []
    if answer.max_passing_load is not None:
        parts.append(f"max passing {_load_text(answer.max_passing_load, mode)}")
    else:
        parts.append("no level passed")
    if answer.first_failing_load is not None:
        parts.append(f"first failing {_load_text(answer.first_failing_load, mode)}")
    if answer.inconclusive:
        parts.append(f"INCONCLUSIVE from {_load_text(answer.saturated_at_load, mode)} up: the load generator "
                     "was saturated there, so those figures describe the generator, not the target "
                     "(lower the load per process or add workers)")
    elif answer.first_failing_load is None and answer.max_passing_load is not None and stopped == "completed":
        parts.append("no level failed: the capacity is above the range tried")
    if answer.passed_above_first_failure:
        loads = ", ".join(f"{v:g}" for v in answer.passed_above_first_failure)
        parts.append(f"note: {loads} passed above the first failure (noisy or non-monotone target)")
    if stopped == "interrupted":
        parts.append("sweep interrupted: partial answer")
    elif stopped == "unreachable":
        parts.append("target unreachable: partial answer")
    return "; ".join(parts)
