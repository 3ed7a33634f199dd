"""The capacity sweep on goodput and on request classes (issue 19): ``min_goodput`` is judged
per step like a latency SLO (a floor with a signed margin), per-tag SLOs are judged with their
step, and the answer names the binding one. Pure: steps are built from summaries."""

from __future__ import annotations

from typing import Any

from loadtest.sweep.capacity import Policy, capacity_answer, next_step
from loadtest.sweep.plan import SweepStep

POLICY = Policy(mode="closed", levels=(5, 10, 20, 40, 80), refine=20, replicates=3)


def _summary(share: float, *, tag_p99: float | None = None) -> dict[str, Any]:
    slo = {"ttft_p99_ms": {"limit": 2000.0, "value": 100.0, "pass": True},
           "min_goodput": {"limit": 0.95, "value": share, "pass": share >= 0.95}}
    by_tag = {} if tag_p99 is None else {
        "web_search=true": {"ttft_p99_ms": {"limit": 900.0, "value": tag_p99, "pass": tag_p99 <= 900}}}
    return {"passed": True, "error_rate": 0.0, "slo": slo, "slo_by_tag": by_tag, "latency_ms": {},
            "throughput": {"requests_per_s": 10.0}, "schedule": {}, "generator": {"saturated": False},
            "goodput": {"good": 0, "offered": 0, "share": share, "per_s": 9.5}}


def _step(summary: dict[str, Any], load: float, index: int) -> SweepStep:
    return SweepStep.from_summary(summary, load=load, index=index, run_dir="x", refinement=False)


def test_min_goodput_fails_a_step_with_a_signed_margin() -> None:
    good = _step(_summary(0.99), 5, 1)
    bad = _step(_summary(0.90), 5, 2)
    assert good.passed and good.margins()["min_goodput"] == (0.99 - 0.95) / 0.95
    assert not bad.passed and bad.margin is not None and bad.margin < 0
    assert bad.margins()["min_goodput"] == (0.90 - 0.95) / 0.95


def test_a_failing_tag_slo_fails_its_step() -> None:
    s = _step(_summary(0.99, tag_p99=1200.0), 5, 1)
    assert not s.passed
    assert s.margins()["by_tag web_search=true ttft_p99_ms"] == (900 - 1200) / 900
    assert s.to_json()["slo_by_tag"]["web_search=true"]["ttft_p99_ms"]["value"] == 1200.0


def share_at(users: float) -> float:
    """A target whose goodput share stays at 0.99 up to 24 users, then falls off."""
    return 0.99 if users <= 24 else 0.80


def test_the_sweep_finds_the_highest_load_whose_goodput_holds() -> None:
    steps: list[SweepStep] = []
    while (nxt := next_step(steps, POLICY)) is not None and len(steps) < 60:
        rep = 1 + sum(1 for s in steps if s.load == nxt.load)
        s = _step(_summary(share_at(nxt.load)), nxt.load, len(steps) + 1)
        steps.append(SweepStep(**{**s.__dict__, "replicate": rep}))
    ans = capacity_answer(steps, POLICY, stopped="first_failure", slo={"min_goodput": 0.95})
    assert ans["load"] == 24 and ans["bracket"] == [24, 25]
    assert ans["binding_slo"] == "min_goodput"
    assert ans["line"].startswith("24 users sustain min goodput ≥ 0.95")


def test_the_answer_names_a_binding_tag_slo() -> None:
    steps: list[SweepStep] = []
    while (nxt := next_step(steps, POLICY)) is not None and len(steps) < 60:
        rep = 1 + sum(1 for s in steps if s.load == nxt.load)
        s = _step(_summary(0.99, tag_p99=300 if nxt.load <= 24 else 1500), nxt.load, len(steps) + 1)
        steps.append(SweepStep(**{**s.__dict__, "replicate": rep}))
    ans = capacity_answer(steps, POLICY, stopped="first_failure", slo={})
    assert ans["load"] == 24
    assert ans["binding_slo"] == "by_tag web_search=true ttft_p99_ms"
    assert "TTFT p99 ≤ 900 ms for web_search=true" in ans["line"]
