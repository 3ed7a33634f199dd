"""Capacity sweeps: the highest load a target sustains within the scenario's SLOs.

A sweep runs the same scenario at increasing loads — closed loop: users
(``load.concurrency``), open loop: arrivals per second (``load.rate``) — one ordinary run
directory per step, then writes ``sweep.json`` (every step and the answer), ``sweep.html``
(one comparison report overlaying the steps), ``capacity.json`` (the answer with its
uncertainty, the curve, a knee and a model: :mod:`loadtest.sweep.capacity`) and
``capacity.html``. Each step runs with its own seeds (schedule and mock), so a replicate is a
new experiment; which step runs next is decided by :func:`loadtest.sweep.capacity.next_step`.

The planner (:func:`plan_levels`, :func:`bisect_level`) and the verdict
(:func:`judge_sweep`, with the verdict rule in its module docstring) are pure and live in
:mod:`loadtest.sweep.plan`, re-exported here; this module is the driver (:func:`run_sweep`).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loadtest.errors import (
    EXIT_INCONCLUSIVE,
    BadInput,
    LoadtestError,
    TargetUnreachable,
)
from loadtest.rundir.writer import prepare_output_dir
from loadtest.runner.options import RunOptions

# one step is one ordinary run (module-level name: tests replace it with a fake)
from loadtest.runner.todir import run_to_dir as _run_step
from loadtest.studies.reruns import Reruns
from loadtest.sweep.capacity import Policy, capacity_answer, curve, goodput_ok, next_step, step_seeds
from loadtest.sweep.lines import answer_line, step_line
from loadtest.sweep.plan import (
    MAX_LEVELS,
    RULE,
    Mode,
    SweepAnswer,
    SweepStep,
    _axis,
    bisect_level,
    judge_sweep,
    parse_level_list,
    plan_levels,
)

__all__ = [
    "EXIT_INCONCLUSIVE",
    "MAX_LEVELS",
    "RULE",
    "SweepAnswer",
    "SweepOutcome",
    "SweepPlan",
    "SweepStep",
    "answer_line",
    "bisect_level",
    "default_warmup_s",
    "judge_sweep",
    "parse_level_list",
    "plan_levels",
    "prepare_sweep",
    "run_sweep",
    "step_line",
]
_SCHEMA = 1


# ---- preparing and driving a sweep --------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SweepPlan:
    mode: Mode
    levels: tuple[float, ...]
    refine: int = 0
    continue_after_fail: bool = False
    scenario: str = ""
    slo: Mapping[str, float] = field(default_factory=dict)
    step_duration_s: float | None = None
    #: steps per level near the boundary; a level passes when this share of them passed
    replicates: int = 1
    required_share: float = 1.0
    #: warm-up of every step; None: the scenario's, or when it sets none max(2 s, 10 %) of the
    #: step (at most half of it)
    warmup_s: float | None = None
    budget_s: float | None = None
    seed: int = 1  # the sweep's seed: each step's seeds derive from it (capacity.step_seeds)
    mock: bool = False  # the target is the embedded mock: give it each step's own seed
    #: steps that may be run again, in all, because their generator saturated (see run_sweep)
    retries: int = 2


def default_warmup_s(duration_s: float) -> float:
    """max(2 s, 10 % of the step), never more than half of it (issue 14)."""
    return min(max(2.0, 0.1 * duration_s), duration_s / 2)


@dataclass(kw_only=True)
class SweepOutcome:
    steps: list[SweepStep]
    answer: SweepAnswer
    stopped: str  # completed | first_failure | saturated | budget | interrupted | unreachable
    path: Path
    capacity: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """4 interrupted; 6 inconclusive (saturated or budget spent before a failing level);
        1 no level passed, or the answer is below a throughput floor; else 0."""
        return int(self.capacity["answer"]["exit_code"])


def _step_overrides(base: Any, mode: Mode, load: float, run_dir: Path, **extra: Any) -> Any:
    if mode == "closed":
        return replace(base, concurrency=int(load), rate_per_s=None, out=str(run_dir), **extra)
    return replace(base, rate_per_s=float(load), concurrency=None, out=str(run_dir), **extra)


def _goodput(run_dir: Path, slo: Mapping[str, float], measure_s: float | None,
             summary: Mapping[str, Any]) -> float | None:
    """Good requests per second of the measured window: summary.json's ``goodput.per_s`` when the
    scenario defines one (slo.goodput); else requests that met every per-request reading of the
    percentile SLOs (requests.csv)."""
    if summary.get("goodput"):
        return float(summary["goodput"]["per_s"])
    path = run_dir / "requests.csv"
    if not measure_s or not path.exists():
        return None
    with path.open(encoding="utf-8", newline="") as fh:
        good = sum(1 for row in csv.DictReader(fh) if row.get("phase") == "measure" and goodput_ok(row, slo))
    return good / measure_s


def prepare_sweep(scenario_file: str | Path, *, overrides: Any, environ: Mapping[str, str],
                  levels: Sequence[float] | None, start: float | None, factor: float,
                  max_load: float | None, rates_given: bool, refine: int,
                  continue_after_fail: bool, replicates: int = 1, required_share: float = 1.0,
                  warmup_s: float | None = None, budget_s: float | None = None,
                  retries: int = 2) -> tuple[Any, SweepPlan]:
    """Load the scenario (as it would run) and plan the sweep; BadInput before anything connects.

    ``levels`` came from ``--rates`` when ``rates_given``, else from ``--levels``.
    """
    from loadtest.scenario import load_scenario
    from loadtest.slo import ALWAYS_ON

    sc = load_scenario(scenario_file, overrides=overrides, environ=environ)
    mode: Mode = sc.load.mode
    if not set(sc.slo) - set(ALWAYS_ON):
        # the error rates always apply; alone they would walk the load up until the target breaks
        raise BadInput(f"{scenario_file}: the scenario sets no latency or throughput SLO; a sweep needs "
                       "a criterion (slo: {ttft_p99_ms: …})")
    if sc.load.stages or sc.load.trace:
        what = "load.stages" if sc.load.stages else "load.trace"
        raise BadInput(f"{scenario_file}: {what} sets the load itself; a sweep varies "
                       f"{_axis(mode)[0]}: remove {what}")
    if levels is not None and rates_given != (mode == "open"):
        given, other = ("--rates", "--levels") if rates_given else ("--levels", "--rates")
        raise BadInput(f"{given} does not apply: this scenario is mode: {mode} (use {other})")
    plan = plan_levels(mode=mode, levels=levels, start=start, factor=factor, max_load=max_load)
    # every level must give a valid scenario (e.g. open loop: a rate the scenario accepts)
    load_scenario(scenario_file, overrides=_step_overrides(overrides, mode, plan[0], Path("x")), environ=environ)
    duration = float(sc.load.duration_s)
    if warmup_s is None and not sc.load.warmup_s:
        warmup_s = default_warmup_s(duration)
    if warmup_s is not None and warmup_s >= duration:
        raise BadInput(f"--warmup ({warmup_s:g}s) must be shorter than the step ({duration:g}s)")
    return sc, SweepPlan(mode=mode, levels=plan, refine=refine, continue_after_fail=continue_after_fail,
                         scenario=sc.name, slo=dict(sc.slo), step_duration_s=duration, replicates=replicates,
                         required_share=required_share, warmup_s=warmup_s, budget_s=budget_s,
                         seed=int(sc.load.seed), mock=sc.target.url == "mock", retries=retries)


def _dir_name(index: int, mode: Mode, load: float) -> str:
    return f"step-{index:02d}-{_axis(mode)[0]}-{load:g}"


def run_sweep(
    scenario_file: str | Path,
    *,
    plan: SweepPlan,
    overrides: Any,
    environ: Mapping[str, str],
    out: Path,
    options: RunOptions | None = None,
    on_step: Callable[[SweepStep], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SweepOutcome:
    """Run the sweep into ``out``: the planned levels, bisection and replicates as
    :func:`loadtest.sweep.capacity.next_step` decides, within ``plan.budget_s``.

    Stops at once when the generator saturates or a signal interrupts a step, and before a step
    that would not finish within the budget (``clock`` measures it). ``sweep.json`` and
    ``capacity.json`` are written in every case (also before TargetUnreachable is re-raised);
    the HTML files unless ``options.html`` is False. Every step runs with ``options`` (API key,
    TLS, backend, workers) into its own directory under ``out``, which must not exist or be empty.
    """
    from loadtest.scenario import load_scenario

    options = options or RunOptions(html=False, quiet=True)
    html, warn = options.html, options.warn

    prepare_output_dir(out, what="sweep directory")
    steps: list[SweepStep] = []
    stopped = "completed"
    policy = _policy(plan)
    began = clock()
    walls: list[float] = []
    reruns = Reruns(plan.retries, warn)

    def step(load: float, *, refinement: bool) -> SweepStep:
        index = len(steps) + 1
        name = _dir_name(index, plan.mode, load)
        attempt = 0
        while True:
            # a step run again draws new seeds: another experiment, not the same one twice
            seed, mock_seed = step_seeds(plan.seed + 7919 * attempt, index)
            extra: dict[str, Any] = {"seed": seed, "warmup_s": plan.warmup_s}
            if plan.mock:
                extra["mock_seed"] = mock_seed  # each step its own mock seed, derived from the sweep's (repeatable)
            sc = load_scenario(scenario_file, overrides=_step_overrides(overrides, plan.mode, load, out / name,
                                                                          **extra), environ=environ)  # fmt: skip
            t = clock()
            summary = _run_step(sc, options.replace(out=out / name))
            walls.append(clock() - t)
            gen = summary.get("generator") or {}
            if not gen.get("saturated") or summary.get("interrupted") or not reruns.left:
                break
            # Why: a step whose generator saturated measured the machine; on a shared VM that is
            # often a burst of CPU taken by the hypervisor, not the load (a 22-user step on 2
            # cores, 53 req/s, made a whole sweep inconclusive). Run it again; if the load itself
            # saturates the generator, the retries saturate too and the sweep stops as before.
            attempt += 1
            reruns.set_aside([out / name], attempt, f"step {index} ({load:g})", gen.get("reasons") or ())
        s = SweepStep.from_summary(summary, load=load, index=index, run_dir=name, refinement=refinement)
        replicate = 1 + sum(1 for p in steps if p.load == load)
        s = replace(s, replicate=replicate, seed=seed, mock_seed=mock_seed if plan.mock else None,
                    goodput_rps=_goodput(out / name, plan.slo, s.measure_s, summary))
        steps.append(s)
        if on_step is not None:
            on_step(s)
        return s

    try:
        while (nxt := next_step(steps, policy)) is not None:
            if plan.budget_s is not None:
                expect = max(walls) if walls else (plan.step_duration_s or 0.0)
                if clock() - began + expect > plan.budget_s:
                    stopped = "budget"
                    break
            s = step(nxt.load, refinement=nxt.load not in plan.levels)
            if s.interrupted:
                stopped = "interrupted"
                break
            if s.saturated:
                stopped = "saturated"
                break
        else:
            if not plan.continue_after_fail and any(not p.passed for p in steps if p.load in plan.levels):
                stopped = "first_failure"
    except KeyboardInterrupt:
        stopped = "interrupted"  # a signal between steps (outside a run's own handlers)
    except TargetUnreachable:
        _finish(out, plan, steps, "unreachable", html=html, warn=warn, rerun=reruns.lines)
        raise
    return _finish(out, plan, steps, stopped, html=html, warn=warn, rerun=reruns.lines)


def _policy(plan: SweepPlan) -> Policy:
    return Policy(mode=plan.mode, levels=plan.levels, refine=plan.refine, replicates=plan.replicates,
                  required_share=plan.required_share, continue_after_fail=plan.continue_after_fail)


def _finish(out: Path, plan: SweepPlan, steps: list[SweepStep], stopped: str, *, html: bool,
            warn: Callable[[str], None], rerun: Sequence[str] = ()) -> SweepOutcome:
    from loadtest.report.capacity import build_capacity_report
    from loadtest.report.html import build_report
    from loadtest.rundir import write_atomic
    from loadtest.rundir.writer import signals_ignored

    policy = _policy(plan)
    answer = judge_sweep(steps, required_share=plan.required_share)
    axis = _axis(plan.mode)[0]
    unit = "users" if plan.mode == "closed" else "arrivals/s"
    doc = {
        "schema": _SCHEMA,
        "scenario": plan.scenario,
        "mode": plan.mode,
        "axis": axis,
        "unit": unit,
        "levels_planned": list(plan.levels),
        "refine": plan.refine,
        "continue_after_fail": plan.continue_after_fail,
        "step_duration_s": plan.step_duration_s,
        "slo": dict(plan.slo),
        "rule": RULE,
        "steps": [s.to_json() for s in steps],
        "max_passing_load": answer.max_passing_load,
        "first_failing_load": answer.first_failing_load,
        "saturated_at_load": answer.saturated_at_load,
        "inconclusive": answer.inconclusive,
        "passed_above_first_failure": list(answer.passed_above_first_failure),
        "passed": answer.passed,
        "stopped": stopped,
        "rerun": list(rerun),
        "interrupted": stopped == "interrupted",
        "answer": answer_line(answer, mode=plan.mode, stopped=stopped),
    }
    cap_answer = capacity_answer(steps, policy, stopped=stopped, slo=plan.slo)
    doc["exit_code"] = cap_answer["exit_code"]  # the process's (every JSON a command writes carries it)
    # a pass is exit 0 only: a sweep cut short (4), whose target died (3), that could not decide (6) or
    # whose answer is below the throughput floor (1) had said "passed": true when a level had passed
    doc["passed"] = answer.passed and doc["exit_code"] == 0
    cap = {
        "schema": 1,
        "scenario": plan.scenario,
        "mode": plan.mode,
        "axis": axis,
        "unit": unit,
        "slo": dict(plan.slo),
        "policy": {"levels_planned": list(plan.levels), "refine": plan.refine, "replicates": plan.replicates,
                   "required_share": plan.required_share, "noise": policy.noise,
                   "continue_after_fail": plan.continue_after_fail, "step_duration_s": plan.step_duration_s,
                   "warmup_s": plan.warmup_s, "budget_s": plan.budget_s, "seed": plan.seed,
                   "retries": plan.retries},
        "answer": cap_answer,
        "curve": curve(steps, policy, seed=plan.seed),
        "stopped": stopped,
        "rerun": list(rerun),
        "steps": [s.to_json() for s in steps],
    }
    path = out / "sweep.json"
    with signals_ignored():
        write_atomic(path, json.dumps(doc, indent=2) + "\n")
        write_atomic(out / "capacity.json", json.dumps(cap, indent=2) + "\n")
        dirs = [out / s.run_dir for s in sorted(steps, key=lambda s: (s.load, s.index))]
        if html and dirs and stopped != "interrupted":
            try:
                build_report(dirs, out / "sweep.html")
            except LoadtestError as exc:
                warn(f"warning: sweep.html not written: {exc}")
        if html and steps:
            try:
                build_capacity_report(cap, out / "capacity.html")
            except LoadtestError as exc:
                warn(f"warning: capacity.html not written: {exc}")
    return SweepOutcome(steps=steps, answer=answer, stopped=stopped, path=path, capacity=cap)
