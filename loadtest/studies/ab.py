"""``loadtest ab``: run a baseline and a candidate in alternating rounds, then gate.

Round *i* runs both sides with one fresh ``load.seed`` (the same workload draw for the two
sides of a round, a new one per round); the order alternates A B, B A, A B, … so a slow
drift of the machine or the network falls on both sides alike. Each run is an ordinary run
directory (``OUT/round-1-baseline/``, …) written by :func:`loadtest.runner.todir.run_to_dir`;
then :func:`loadtest.compare.gate.gate` judges the rounds (paired) and ``OUT/compare.json``,
``OUT/compare.md`` and ``OUT/junit.xml`` are written.

A round in which either side's generator was saturated (its loop ran late: on a shared
machine, usually CPU taken by the hypervisor, `generator.host_steal_percent`) measured the
machine, not the target: it is run again, both sides with a new seed, up to ``retries`` times
in all; the spoiled runs stay in ``OUT/round-N-<side>.spoiled-K/`` and the verdict's notes say
which rounds were run again and why. (On a 2-core VM a burst of 18-32 % steal in one round
turned a +20 % regression into INCONCLUSIVE: BENCHMARKS.md.)

A side whose URL is ``mock`` gets its own embedded mock (a fresh mock seed per run);
``baseline_mock``/``candidate_mock`` override that side's ``mock`` section (e.g.
``{"ttft_ms": 120}``): the way to stage a known slow-down. The mock section is not part of
the workload fingerprint, so such runs still compare.

``tag`` (``ab --tag web_search=true``): every run is read as that request class only
(:func:`loadtest.compare.runs.load_run`), so the final gate and the fail-fast floor check after
the first baseline run count the class's samples; a first baseline run none of whose requests
carried the tag stops the rounds there (exit 2).

Every input is checked before the first run starts (issue 22: a bad ``--candidate-mock`` was
found only after the whole first baseline run): both sides' scenarios (each with its URL and
mock overrides), the tag, a calibration's workload, a ``load.requests`` cap below a floor.

The final gate judges every check it can: a check a run has too few samples for (a slower
closed-loop candidate completes fewer answers) is INCONCLUSIVE on its own; only a verdict that
judged nothing is exit 2 (:attr:`loadtest.compare.gate.GateVerdict.exit_code`).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loadtest.compare.floors import sample_shortfalls
from loadtest.compare.gate import GateRules, GateVerdict, InvalidComparison, gate
from loadtest.compare.output import gate_json, gate_junit, gate_markdown, write_text_file
from loadtest.compare.rundata import RunData, refuse_untagged
from loadtest.compare.runs import load_run
from loadtest.compare.tagged import refuse_impossible_tag
from loadtest.compare.validity import calibration_workload_mismatch
from loadtest.errors import BadInput
from loadtest.rundir.writer import prepare_run_dir
from loadtest.runner.options import RunOptions
from loadtest.runner.todir import run_to_dir
from loadtest.scenario import fingerprint, load_scenario
from loadtest.studies.reruns import Reruns

__all__ = ["AbResult", "AbSide", "fail_fast", "order", "refuse_unfillable", "run_ab"]


@dataclass(frozen=True, kw_only=True)
class AbSide:
    """One side: its URL (``mock``: an embedded mock of its own) and mock overrides."""

    url: str
    mock: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class AbResult:
    verdict: GateVerdict | None
    baseline: list[RunData]
    candidate: list[RunData]
    interrupted: bool = False
    #: one line per round that was run again (which round, which side, why)
    rerun: list[str] = field(default_factory=list)


def order(round_no: int) -> tuple[str, str]:
    """Which side goes first in round ``round_no`` (1-based): A B, B A, A B, …"""
    return ("baseline", "candidate") if round_no % 2 else ("candidate", "baseline")


def run_ab(scenario_path: str | Path, *, baseline: AbSide, candidate: AbSide, rounds: int, out: Path,
           environ: Mapping[str, str], rules: GateRules, checks: Sequence[tuple[str, str]],
           duration_s: float | None = None, seed: int | None = None, options: RunOptions | None = None,
           retries: int = 2, on_run: Callable[[int, str, Path, dict[str, Any]], None] = lambda *_: None,
           tag: str | None = None) -> AbResult:  # fmt: skip
    """Run the rounds into ``out`` (new or empty) and judge them.

    Every run takes ``options`` (API key, TLS, backend, workers; ``html``), quiet, in its own
    directory. ``seed``: round *i* uses ``seed + i - 1`` (default: fresh random seeds; a round run again
    takes the next unused one). ``retries``: how many rounds in all may be run again because a
    generator saturated. ``tag``: judge that request class only. Raises BadInput (exit 2) for a
    bad input (before any run) or an invalid comparison (a tag a run's requests never carried
    too), TargetUnreachable (exit 3) when a side cannot be reached; an interrupted run stops the
    rounds (``interrupted``; no verdict). A verdict that judged no check is returned (its files
    written) with :attr:`GateVerdict.exit_code` 2.
    """
    if rounds < 1:
        raise BadInput(f"--rounds must be >= 1, got {rounds}")
    options = (options or RunOptions(html=False)).replace(quiet=True)
    reruns = Reruns(retries, options.warn)
    if tag is not None:
        refuse_untagged([m for m, _ in checks], tag)
    sides = {"baseline": baseline, "candidate": candidate}
    # every input before the first run: each side's scenario as it will run (its URL, its mock)
    first = {role: _scenario(scenario_path, side, role, options.overrides(target_url=side.url, duration_s=duration_s),
                             environ) for role, side in sides.items()}  # fmt: skip
    sc0 = first["baseline"]
    refuse_unfillable(sc0, checks, rules, single=rounds == 1)
    if tag is not None:
        refuse_impossible_tag(sc0.session.tag_space(), tag)
    mismatch = calibration_workload_mismatch(rules, {fingerprint(sc) for sc in first.values()})
    if mismatch:
        raise InvalidComparison(mismatch)
    prepare_run_dir(out)
    base_seed = seed if seed is not None else secrets.randbits(31)
    runs: dict[str, list[RunData]] = {"baseline": [], "candidate": []}
    latency = sorted({m for m, stat in checks if stat})
    seeds_used = 0
    for i in range(1, rounds + 1):
        attempt = 0
        while True:
            round_seed = (base_seed + seeds_used) % 2**31
            seeds_used += 1
            pair: dict[str, RunData] = {}
            for role in order(i):
                side = sides[role]
                overrides = options.overrides(target_url=side.url, duration_s=duration_s, seed=round_seed)
                sc = _scenario(scenario_path, side, role, overrides, environ)
                run_dir = out / f"round-{i}-{role}"
                summary = run_to_dir(sc, options.replace(out=run_dir))
                on_run(i, role, run_dir, summary)
                if summary.get("interrupted"):
                    return AbResult(None, runs["baseline"], runs["candidate"], interrupted=True,
                                    rerun=reruns.lines)  # fmt: skip
                pair[role] = load_run(run_dir, latency, tag=tag)
                if i == 1 and role == "baseline" and not pair[role].saturated:
                    fail_fast(pair[role], sc, checks, rules, single=rounds == 1)
            spoiled = [role for role in order(i) if pair[role].saturated]
            if not spoiled or not reruns.left:
                break
            attempt += 1
            reruns.set_aside([out / f"round-{i}-{role}" for role in order(i)], attempt,
                             f"round {i}",
                             [f"{role}: {why}" for role in spoiled for why in pair[role].saturation_reasons])  # fmt: skip
        for role in ("baseline", "candidate"):
            runs[role].append(pair[role])
    verdict = gate(runs["baseline"], runs["candidate"], rules, checks=checks)
    if reruns.lines:
        verdict = replace(verdict, notes=(*reruns.lines, *verdict.notes))
    write_text_file(out / "compare.json", gate_json(verdict, runs["baseline"], runs["candidate"]))
    write_text_file(out / "compare.md", gate_markdown(verdict, runs["baseline"], runs["candidate"]))
    write_text_file(out / "junit.xml", gate_junit(verdict))
    return AbResult(verdict, runs["baseline"], runs["candidate"], rerun=reruns.lines)


def fail_fast(run: RunData, sc: Any, checks: Sequence[tuple[str, str]], rules: GateRules, *, single: bool) -> None:
    """After the first baseline run: a gated percentile it could not fill is a set-up problem
    (the runs are too short for it), refused now with the duration that would fill it, not
    after every round (issue 18). A candidate that falls short only because it is slower is
    judged by the gate instead: that check INCONCLUSIVE, the others judged (issue 22). With
    ``--tag`` the run is the class's: its samples, its rate."""
    shortfalls = sample_shortfalls(run, checks, rules, single=single)
    if not shortfalls:
        return
    measure_s = float(run.meta.get("measure_s") or 0.0)
    worst = max(shortfalls, key=lambda s: s.needed / max(s.count, 1))
    advice = "leave it out with --metric"
    if measure_s > 0 and worst.count > 0:
        per_s = worst.count / measure_s
        need_s = math.ceil(1.2 * (float(sc.load.warmup_s) + worst.needed / per_s))
        answers = f"{run.tag} answers" if run.tag else "answers"  # --tag: the class's rate, not the run's
        advice = (f"at ~{per_s:.3g} {answers}/s, {worst.metric} {worst.stat} needs runs of ≥ {need_s} s; use "
                  f"--duration {need_s}s, or {advice}")
    raise InvalidComparison(f"round 1 baseline: {worst.text}: {advice}. Stopped after the first run; "
                            f"it is in {run.meta.get('path', 'the output directory')}.")


def refuse_unfillable(sc: Any, checks: Sequence[tuple[str, str]], rules: GateRules, *, single: bool) -> None:
    """Before any run: a scenario whose every run is capped below a gated percentile's floor
    (``load.requests``) can never be judged on it."""
    cap = sc.load.requests
    if cap is None:
        return
    probe = RunData(label="scenario", summary_ms={m: {"count": cap} for m, _ in checks})
    shortfalls = sample_shortfalls(probe, checks, rules, single=single)
    if shortfalls:
        s = shortfalls[0]
        raise InvalidComparison(f"load.requests caps every run at {cap} answers; {s.metric} {s.stat} needs at least "
                                f"{s.needed} per run ({s.beyond} beyond the {s.q:g}th percentile): raise "
                                "load.requests, or leave it out with --metric")


def _scenario(path: str | Path, side: AbSide, role: str, overrides: Any, environ: Mapping[str, str]) -> Any:
    """The scenario one side runs: the file with ``overrides`` (its URL, duration, seed) and the
    side's mock overrides."""
    sc = load_scenario(path, overrides=overrides, environ=environ)
    if not side.mock:
        return sc
    if side.url != "mock":
        raise BadInput(f"--{role}-mock needs --{role} mock (an embedded mock), not {side.url}")
    return _with_mock(sc, side.mock, role)


def _with_mock(sc: Any, overrides: Mapping[str, Any], role: str) -> Any:
    """``sc`` with its ``mock`` section updated by ``overrides`` (validated like the file's)."""
    from pydantic import ValidationError

    data = {**sc.mock.model_dump(mode="json", by_alias=True), **overrides}
    try:
        mock = type(sc.mock).model_validate(data)
        mock.model  # noqa: B018 — the latency model, built as the mock will build it
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "mock"
        raise BadInput(f"--{role}-mock: {where}: {str(first['msg']).removeprefix('Value error, ')}") from None
    return sc.model_copy(update={"mock": mock})
