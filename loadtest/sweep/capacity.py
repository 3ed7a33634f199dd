"""Capacity planning, the pure part (issue 14): which step to run next, the answer with its
uncertainty, and the curve with its knee and model.

**Which step next** (:func:`next_step`): first the planned levels, lowest first, up to the
first failing one (all of them with ``continue_after_fail``). Then, while the bracket
[highest reliably passing level with every lower level passing, lowest reliably failing level
above it] leaves a load to try, bisect with one step each (at most ``refine`` of them): the
gap just above the answer first, then the gap just below the failing end. When the gaps are
tight (adjacent users; rates within 2 %), replicate the bracket's ends, the unsure levels
between them, and any level whose SLO margin is within ``noise`` of its limit, up to
``replicates`` steps each (the rule per level: :func:`loadtest.sweep.plan.level_status`). A
replicate that changes a level's standing moves the bracket, and bisection resumes; a
failing end that turns out unsure sends the search on to the next planned level. Nothing runs once a step saturated
the generator: its figures describe the generator, and the sweep is inconclusive from there.

**The answer** (:func:`capacity_answer`): the bracket's lower end, the SLO that binds at its
upper end (the smallest margin there), the share of passing replicates per level, why the
search ended, and one line saying what it means. A throughput floor (``min_throughput_rps``)
is judged on the answer: a level below the floor does not fail for being low.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loadtest.errors import EXIT_INCONCLUSIVE, EXIT_INTERRUPTED, EXIT_OK, EXIT_SLO_FAILED, EXIT_UNREACHABLE
from loadtest.slo import ANSWER_FLOORS, AT_LEAST
from loadtest.sweep.fit import fit_usl, isotonic, kneedle
from loadtest.sweep.plan import Mode, SweepStep, bisect_level, judge_sweep, level_shares

__all__ = [
    "ATTAINMENT",
    "NOISE",
    "Next",
    "Policy",
    "capacity_answer",
    "curve",
    "next_step",
    "slo_text",
    "step_seeds",
]

NOISE = 0.10  # an SLO margin within 10 % of its limit is within run-to-run noise: replicate
ATTAINMENT = 0.90  # open loop: the highest rate at which >= 90 % of requests met every SLO


@dataclass(frozen=True, kw_only=True)
class Policy:
    """How the search decides (see the module docstring)."""

    mode: Mode
    levels: tuple[float, ...]
    refine: int = 0
    replicates: int = 1
    required_share: float = 1.0
    continue_after_fail: bool = False
    noise: float = NOISE


@dataclass(frozen=True)
class Next:
    load: float
    why: str  # plan | refine | replicate


def step_seeds(base: int, index: int) -> tuple[int, int]:
    """(load.seed, mock.seed) of step ``index`` (1-based): independent of every other step's, so
    a replicate is a new experiment, and a function of the sweep's seed, so a sweep repeats.
    (A splitmix-style mix: nearby inputs give unrelated outputs.)"""
    def mix(x: int) -> int:
        x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return (x ^ (x >> 31)) & 0x7FFFFFFF

    return mix(base * 1_000_003 + 2 * index), mix(base * 1_000_003 + 2 * index + 1)


def _counts(steps: Sequence[SweepStep]) -> dict[float, int]:
    out: dict[float, int] = {}
    for s in steps:
        if not s.interrupted:
            out[s.load] = out.get(s.load, 0) + 1
    return out


def _median(vals: Sequence[float]) -> float:
    v = sorted(vals)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def next_step(steps: Sequence[SweepStep], policy: Policy) -> Next | None:
    """The next load to run given the steps so far, or None when the search is done."""
    judged = [s for s in steps if not s.interrupted]
    if any(s.saturated for s in judged):
        return None
    counts = _counts(judged)
    answer = judge_sweep(judged, required_share=policy.required_share)
    for load in policy.levels:
        if load in counts:
            continue
        if answer.first_failing_load is not None and not policy.continue_after_fail:
            break
        return Next(load, "plan")
    lo, hi = answer.max_passing_load, answer.first_failing_load
    refinements = sum(1 for s in judged if s.load not in policy.levels and s.replicate == 1)
    if lo is not None and hi is not None and refinements < policy.refine:
        # narrow the passing side first (the answer), then the failing side: the gap above
        # the answer, and the gap below the reliably failing level (unsure levels lie between)
        mid = _untried(lo, hi, counts, policy.mode)
        if mid is not None:
            return Next(mid, "refine")
    # the bracket is as tight as it gets (or refinement is spent): make sure of its ends, of
    # the unsure levels inside it, and of any level whose margin is within noise
    wanted = [v for v in (lo, *answer.unsure, hi) if v is not None]
    for load in sorted(counts):
        margins = [m for s in judged if s.load == load and (m := s.margin) is not None]
        if margins and abs(_median(margins)) < policy.noise and (hi is None or load <= hi):
            wanted.append(load)
    for load in wanted:
        if counts.get(load, 0) < policy.replicates:
            return Next(load, "replicate")
    return None


def _untried(lo: float, hi: float, counts: Mapping[float, int], mode: Mode) -> float | None:
    """The next load to bisect with: in the gap just above ``lo``, else just below ``hi``."""
    tested = sorted(counts)
    above_lo = min(v for v in tested if v > lo)
    below_hi = max(v for v in tested if v < hi)
    for a, b in ((lo, above_lo), (below_hi, hi)):
        mid = bisect_level(a, b, mode=mode)
        if mid is not None and mid not in counts:
            return mid
    return None


# ---- the answer ---------------------------------------------------------------------------------

_PCT = re.compile(r"^(?P<metric>[a-z0-9_]+?)_p(?P<p>\d+)_ms$")
_NAMES = {"ttft": "TTFT", "itl": "ITL", "tpot": "TPOT", "e2e": "e2e", "ttft_uncorrected": "TTFT (uncorrected)"}


def slo_text(name: str, limit: float) -> str:
    """``ttft_p99_ms``, 500 → ``TTFT p99 ≤ 500 ms``; ``error_rate``, 0.01 → ``error rate ≤ 0.01``;
    ``by_tag web_search=true ttft_p99_ms`` → ``TTFT p99 ≤ 500 ms for web_search=true``."""
    if name.startswith("by_tag "):
        _, tag, sub = name.split(" ", 2)
        return f"{slo_text(sub, limit)} for {tag}"
    m = _PCT.match(name)
    if m:
        p = m.group("p")
        p = p[:2] + "." + p[2:] if len(p) > 2 else p
        return f"{_NAMES.get(m.group('metric'), m.group('metric'))} p{p} ≤ {limit:g} ms"
    if name in AT_LEAST:
        return f"{name.replace('_', ' ')} ≥ {limit:g}"
    return f"{name.replace('_', ' ')} ≤ {limit:g}"


def _load_text(load: float, mode: Mode) -> str:
    return f"{load:g} user{'s' if load != 1 else ''}" if mode == "closed" else f"{load:g}/s"


def _binding(steps: Sequence[SweepStep], load: float) -> str | None:
    """The SLO with the smallest median margin at ``load`` (throughput floors aside)."""
    per: dict[str, list[float]] = {}
    for s in steps:
        if s.load != load or s.interrupted or s.overloaded:
            continue
        for name, m in s.margins().items():
            per.setdefault(name, []).append(m)
    if not per:
        return None
    return min(per, key=lambda k: _median(per[k]))


def capacity_answer(steps: Sequence[SweepStep], policy: Policy, *, stopped: str,
                    slo: Mapping[str, float]) -> dict[str, Any]:
    """capacity.json's ``answer``: load, unit, bracket [reliably passing, reliably failing],
    the unsure levels inside it, binding SLO, replicates and pass share per level, how the search ended, whether it is conclusive, its exit code and one line.

    ``stopped``: completed | first_failure | saturated | budget | interrupted | unreachable.
    Exit code: 4 interrupted; 6 inconclusive (the generator saturated, or the budget ran out,
    before a failing level bounded the answer); 1 no level passed, or the answer is below the
    throughput floor; else 0.
    """
    judged = [s for s in steps if not s.interrupted]
    ans = judge_sweep(judged, required_share=policy.required_share)
    shares = level_shares(judged)
    lo, hi = ans.max_passing_load, ans.first_failing_load
    unit = "users" if policy.mode == "closed" else "arrivals/s"
    overloaded = sorted({s.load for s in judged if s.overloaded})
    inconclusive = hi is None and stopped in ("saturated", "budget")
    binding = _binding(judged, hi) if hi is not None else None
    if binding is None and hi is not None and hi in overloaded:
        binding = "overload"
    ended_by = {"completed": "search", "first_failure": "search"}.get(stopped, stopped)
    floor = next((float(v) for k, v in slo.items() if k in ANSWER_FLOORS), None)
    below_floor = False
    answer_tput: float | None = None
    if lo is not None:
        tputs = [s.throughput_rps for s in judged if s.load == lo and s.throughput_rps is not None]
        answer_tput = _median(tputs) if tputs else None
        below_floor = floor is not None and (answer_tput is None or answer_tput < floor)
    parts: list[str] = []
    if lo is None:
        parts.append("no level passed" if hi is not None else "no level was judged")
        if hi is not None:
            k, n = shares[hi]
            parts[-1] += f": {_load_text(hi, policy.mode)} fail{'s' if hi == 1 else ''} {n - k} of {n}"
    else:
        k, n = shares[lo]
        limits = {**{n: float(v["limit"]) for st in judged for n, v in st.judged().items()}, **slo}
        what = slo_text(binding, limits[binding]) if binding and binding in limits else "the SLOs"
        parts.append(f"{_load_text(lo, policy.mode)} sustain{'s' if lo == 1 and policy.mode == 'closed' else ''} "
                     f"{what}" + ("" if k == n else f" ({k} of {n} passed)"))
        for load in ans.unsure:
            uk, un = shares[load]
            parts.append(f"{load:g} unsure (passed {uk} of {un})")
        if hi is not None:
            hk, hn = shares[hi]
            parts.append(f"{hi:g} fail {hn - hk} of {hn}" + (" (overload)" if binding == "overload" else ""))
        elif stopped in ("completed", "first_failure"):
            parts.append("no level failed: the capacity is above the range tried")
    if hi is not None and lo is not None and _untried(lo, hi, _counts(judged), policy.mode) is not None:
        parts.append(f"not refined between {lo:g} and {hi:g}")
    if below_floor and floor is not None:
        parts.append(f"but its throughput ({answer_tput or 0:.1f} req/s) is below min_throughput_rps {floor:g}")
    if ans.saturated_at_load is not None:
        parts.append(f"INCONCLUSIVE from {_load_text(ans.saturated_at_load, policy.mode)} up: the load "
                     "generator was saturated (add workers or lower the load per process)")
    if stopped == "budget":
        parts.append("the budget, not the search, ended the sweep" + ("" if hi is not None else
                                                                          ": no failing level bounds the answer"))
    elif stopped == "interrupted":
        parts.append("sweep interrupted: partial answer")
    elif stopped == "unreachable":
        parts.append("target unreachable: partial answer")
    if stopped == "interrupted":
        code = EXIT_INTERRUPTED
    elif stopped == "unreachable":  # the process exits 3 (TargetUnreachable): capacity.json says so too
        code = EXIT_UNREACHABLE
    elif inconclusive:
        code = EXIT_INCONCLUSIVE
    elif lo is None or below_floor:
        code = EXIT_SLO_FAILED
    else:
        code = EXIT_OK
    return {
        "load": lo, "unit": unit, "bracket": [lo, hi], "unsure": list(ans.unsure), "binding_slo": binding,
        "replicates": {f"{k:g}": n for k, (_, n) in sorted(shares.items())},
        "pass_share": {f"{k:g}": p / n for k, (p, n) in sorted(shares.items())},
        "standing": {f"{k:g}": ans.standing[k] for k in sorted(shares)},
        "required_share": policy.required_share, "overloaded_levels": overloaded,
        "throughput_floor": floor, "answer_throughput_rps": answer_tput, "below_throughput_floor": below_floor,
        "ended_by": ended_by, "inconclusive": inconclusive, "exit_code": code, "line": "; ".join(parts),
    }


# ---- the curve ----------------------------------------------------------------------------------


def curve(steps: Sequence[SweepStep], policy: Policy, *, seed: int = 0) -> dict[str, Any]:
    """Every step's figures against offered load, the knee of TTFT p99, and a model: the USL
    (closed loop) or the highest rate with at least 90 % SLO attainment (open loop).

    Overloaded steps are listed (``overloaded: true``) without latency figures and are in no fit.
    """
    judged = [s for s in steps if not s.interrupted]
    points = [{
        "index": s.index, "load": s.load, "replicate": s.replicate, "passed": s.passed,
        "overloaded": s.overloaded, "offered_rate": s.offered_rate, "achieved_rate": s.achieved_rate,
        "throughput_rps": s.throughput_rps, "goodput_rps": s.goodput_rps,
        "latency_ms": {} if s.overloaded else {k: dict(v) for k, v in s.latency.items()},
    } for s in sorted(judged, key=lambda s: (s.load, s.replicate))]
    good = [s for s in judged if not s.overloaded and "ttft" in s.latency and "p99" in s.latency["ttft"]]
    knee: dict[str, Any] | None = None
    if len({s.load for s in good}) >= 3:
        xs = [s.load for s in good]
        fitted = isotonic(xs, [s.latency["ttft"]["p99"] for s in good])
        by_x = dict(zip(xs, fitted, strict=True))
        ux = sorted(by_x)
        k = kneedle(ux, [by_x[x] for x in ux])
        knee = {"metric": "ttft p99", "method": "kneedle on an isotonic (monotone) fit of TTFT p99 vs load",
                "load": k, "fit": [[x, by_x[x]] for x in ux]}
    model: dict[str, Any]
    tp = [s for s in judged if not s.overloaded and s.throughput_rps]
    if policy.mode == "closed":
        fit = fit_usl([s.load for s in tp], [float(s.throughput_rps or 0) for s in tp], seed=seed)
        model = {"kind": "usl", **(fit.to_json() if fit else {"refused": "fewer than 3 distinct loads to fit"})}
    else:
        ok = []
        for s in tp:
            if s.goodput_rps is not None and s.achieved_rate:
                ok.append((s.load, s.goodput_rps / s.achieved_rate))
        best = max((load for load, att in ok if att >= ATTAINMENT), default=None)
        model = {"kind": "attainment", "threshold": ATTAINMENT, "max_rate": best,
                 "method": "highest offered rate whose goodput / achieved rate is at least 90 %",
                 "attainment": [[load, att] for load, att in sorted(ok)]}
    return {"points": points, "knee": knee, "model": model}


def goodput_ok(row: Mapping[str, str], limits: Mapping[str, float]) -> bool:
    """Did one request (a requests.csv row) meet every per-request SLO? A percentile SLO on
    ``ttft`` or ``e2e`` is read per request as that request's own value within the limit."""
    if row.get("outcome") != "ok":
        return False
    for name, limit in limits.items():
        m = _PCT.match(name)
        if not m:
            continue
        col = {"ttft": "ttft_ms", "e2e": "e2e_ms"}.get(m.group("metric"))
        if col is None or not row.get(col):
            continue
        try:
            if float(row[col]) > limit:
                return False
        except ValueError:
            return False
    return True
