"""Capacity sweeps: the highest load a target sustains within the scenario's SLOs.

A sweep runs the same scenario at increasing loads — closed loop: users
(``load.concurrency``), open loop: arrivals per second (``load.rate``) — one ordinary run
directory per step, then writes ``sweep.json`` (every step and the answer) and
``sweep.html`` (one comparison report overlaying the steps).

The planner (:func:`plan_levels`, :func:`bisect_level`) and the verdict
(:func:`judge_sweep`, with the verdict rule in its module docstring) are pure and live in
:mod:`loadtest.sweep_plan`, re-exported here; this module is the driver (:func:`run_sweep`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

# one step is one ordinary run (module-level name: tests replace it with a fake)
from loadtest.coordinator import run_to_dir as _run_step
from loadtest.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SLO_FAILED,
    BadInput,
    LoadtestError,
    TargetUnreachable,
)
from loadtest.sweep.plan import (
    MAX_LEVELS,
    RULE,
    Mode,
    SweepAnswer,
    SweepStep,
    _axis,
    answer_line,
    bisect_level,
    judge_sweep,
    parse_level_list,
    plan_levels,
    step_line,
)

__all__ = [
    "MAX_LEVELS",
    "RULE",
    "SweepAnswer",
    "SweepOutcome",
    "SweepPlan",
    "SweepStep",
    "answer_line",
    "bisect_level",
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


@dataclass(kw_only=True)
class SweepOutcome:
    steps: list[SweepStep]
    answer: SweepAnswer
    stopped: str  # completed | first_failure | saturated | interrupted | unreachable
    path: Path

    @property
    def exit_code(self) -> int:
        """4 interrupted; else 0 when a level passed (by the verdict rule), 1 when none did."""
        if self.stopped == "interrupted":
            return EXIT_INTERRUPTED
        return EXIT_OK if self.answer.passed else EXIT_SLO_FAILED


def _step_overrides(base: Any, mode: Mode, load: float, run_dir: Path) -> Any:
    if mode == "closed":
        return replace(base, concurrency=int(load), rate_per_s=None, out=str(run_dir))
    return replace(base, rate_per_s=float(load), concurrency=None, out=str(run_dir))


def prepare_sweep(scenario_file: str | Path, *, overrides: Any, environ: Mapping[str, str],
                  levels: Sequence[float] | None, start: float | None, factor: float,
                  max_load: float | None, rates_given: bool, refine: int,
                  continue_after_fail: bool) -> tuple[Any, SweepPlan]:
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
    return sc, SweepPlan(mode=mode, levels=plan, refine=refine, continue_after_fail=continue_after_fail,
                         scenario=sc.name, slo=dict(sc.slo), step_duration_s=float(sc.load.duration_s))


def _dir_name(index: int, mode: Mode, load: float) -> str:
    return f"step-{index:02d}-{_axis(mode)[0]}-{load:g}"


def run_sweep(
    scenario_file: str | Path,
    *,
    plan: SweepPlan,
    overrides: Any,
    environ: Mapping[str, str],
    out: Path,
    api_key: str | None = None,
    ssl_context: Any = None,
    insecure: bool = False,
    html: bool = True,
    quiet: bool = False,
    on_step: Callable[[SweepStep], None] | None = None,
    warn: Callable[[str], None] = lambda _msg: None,
) -> SweepOutcome:
    """Run the planned levels (then up to ``plan.refine`` bisection steps) into ``out``.

    Stops after the first failing level unless ``plan.continue_after_fail``, and at once when
    the generator saturates or a signal interrupts a step. ``sweep.json`` is written in every
    case (also before TargetUnreachable is re-raised); ``sweep.html`` unless ``html`` is False.
    ``out`` must not exist or be empty.

    Its length is the sweep's control flow (plan, steps, refinement, stop reasons, writing
    sweep.json in every case) kept in one loop, so that every way it can end is visible.
    """
    from loadtest.scenario import load_scenario

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInput(f"{out}: exists and is not empty; a sweep writes a fresh directory (choose another --out)")
    out.mkdir(parents=True, exist_ok=True)
    steps: list[SweepStep] = []
    stopped = "completed"

    def step(load: float, *, refinement: bool) -> SweepStep:
        index = len(steps) + 1
        name = _dir_name(index, plan.mode, load)
        sc = load_scenario(scenario_file, overrides=_step_overrides(overrides, plan.mode, load, out / name),
                           environ=environ)
        summary = _run_step(sc, out / name, api_key=api_key, ssl_context=ssl_context, insecure=insecure,
                            html=html, quiet=quiet, warn=warn)
        s = SweepStep.from_summary(summary, load=load, index=index, run_dir=name, refinement=refinement)
        steps.append(s)
        if on_step is not None:
            on_step(s)
        return s

    try:
        for load in plan.levels:
            s = step(load, refinement=False)
            if s.interrupted:
                stopped = "interrupted"
                break
            if s.saturated:
                stopped = "saturated"
                break
            if not s.passed and not plan.continue_after_fail:
                stopped = "first_failure"
                break
        for _ in range(plan.refine if stopped in ("completed", "first_failure") else 0):
            answer = judge_sweep(steps)
            if answer.max_passing_load is None or answer.first_failing_load is None:
                break
            mid = bisect_level(answer.max_passing_load, answer.first_failing_load, mode=plan.mode)
            if mid is None:
                break
            s = step(mid, refinement=True)
            if s.interrupted or s.saturated:
                stopped = "interrupted" if s.interrupted else "saturated"
                break
    except KeyboardInterrupt:
        stopped = "interrupted"  # a signal between steps (outside a run's own handlers)
    except TargetUnreachable:
        _finish(out, plan, steps, "unreachable", html=html, warn=warn)
        raise
    return _finish(out, plan, steps, stopped, html=html, warn=warn)


def _finish(out: Path, plan: SweepPlan, steps: list[SweepStep], stopped: str, *, html: bool,
            warn: Callable[[str], None]) -> SweepOutcome:
    from loadtest.report.html import build_report
    from loadtest.rundir import write_atomic
    from loadtest.rundir.writer import signals_ignored

    answer = judge_sweep(steps)
    axis = _axis(plan.mode)[0]
    doc = {
        "schema": _SCHEMA,
        "scenario": plan.scenario,
        "mode": plan.mode,
        "axis": axis,
        "unit": "users" if plan.mode == "closed" else "arrivals/s",
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
        "interrupted": stopped == "interrupted",
        "answer": answer_line(answer, mode=plan.mode, stopped=stopped),
    }
    path = out / "sweep.json"
    with signals_ignored():
        write_atomic(path, json.dumps(doc, indent=2) + "\n")
        dirs = [out / s.run_dir for s in sorted(steps, key=lambda s: s.load)]
        if html and dirs and stopped != "interrupted":
            try:
                build_report(dirs, out / "sweep.html")
            except LoadtestError as exc:
                warn(f"warning: sweep.html not written: {exc}")
    return SweepOutcome(steps=steps, answer=answer, stopped=stopped, path=path)
