"""Issue 14, capacity planning: the models (pure maths), the boundary search and the answer
with faked step results (no sockets), the driver with faked runs, and the mock's predicted
percentile."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from support.fakesweep import fake_steps as _fake
from support.fakesweep import run_faked_sweep as _run
from support.fakesweep import sharp as _sharp

from loadtest.mock.latency import Dist, MockModel
from loadtest.studies.sweep import default_warmup_s
from loadtest.sweep.capacity import Next, Policy, capacity_answer, curve, next_step, slo_text, step_seeds
from loadtest.sweep.fit import fit_usl, isotonic, kneedle, usl_throughput
from loadtest.sweep.plan import SweepStep, bisect_level

# ---- the models (pure) --------------------------------------------------------------------------


@pytest.mark.parametrize(("sigma", "kappa"), [(0.05, 0.0008), (0.2, 0.002), (0.01, 0.0001)])
def test_usl_recovers_sigma_and_kappa_within_their_intervals(sigma: float, kappa: float) -> None:
    rng = random.Random(7)
    ns = [1, 2, 4, 8, 12, 16, 24, 32, 48, 64] * 3
    xs = [usl_throughput(n, lam=12.0, sigma=sigma, kappa=kappa) * (1 + rng.gauss(0, 0.02)) for n in ns]
    fit = fit_usl(ns, xs, resamples=300, seed=1)
    assert fit is not None
    assert fit.sigma_ci[0] <= sigma <= fit.sigma_ci[1], fit
    assert fit.kappa_ci[0] <= kappa <= fit.kappa_ci[1], fit
    assert fit.sigma == pytest.approx(sigma, rel=0.35, abs=0.01) and fit.kappa == pytest.approx(kappa, rel=0.35)
    # the peak N* = sqrt((1 - sigma) / kappa), reported only within twice the highest load tested
    truth = ((1 - sigma) / kappa) ** 0.5
    if truth < 2 * 64 * 0.8:
        assert fit.peak_n == pytest.approx(truth, rel=0.3)
    if truth > 2 * 64 * 1.3:
        assert fit.peak_n is None and "twice the highest load" in (fit.peak_refused or "")
    again = fit_usl(ns, xs, resamples=300, seed=1)
    assert again == fit  # seeded: the same points give the same intervals


def test_usl_without_contention_has_no_peak_and_needs_three_loads() -> None:
    ns = [1, 2, 4, 8]
    fit = fit_usl(ns, [10.0 * n for n in ns], resamples=50)
    assert fit is not None and fit.sigma == pytest.approx(0, abs=1e-9) and fit.kappa == pytest.approx(0, abs=1e-9)
    assert fit.peak_n is None and "no peak" in (fit.peak_refused or "")
    assert fit_usl([1, 2, 2], [1.0, 2.0, 2.0]) is None


def test_isotonic_pools_violators_and_kneedle_finds_the_hockey_stick() -> None:
    assert isotonic([1, 2, 3, 4], [1, 3, 2, 5]) == [1, 2.5, 2.5, 5]
    assert isotonic([3, 1, 2], [2, 1, 3]) == [2.5, 1, 2.5]  # any order in, input order out
    assert isotonic([1, 1, 2], [4, 2, 1]) == [7 / 3] * 3  # ties share one value
    # flat, then a hockey stick: the knee is the last load before latency takes off
    assert kneedle([1, 2, 3, 4, 5, 6, 7, 8], [50, 52, 55, 58, 60, 400, 800, 1200]) == 5
    assert kneedle([1, 2], [1, 2]) is None and kneedle([1, 2, 3], [5, 5, 5]) is None


def test_mock_predicts_the_percentile_it_will_serve() -> None:
    m = MockModel(ttft_ms=Dist(a=50), gap_ms=Dist(a=5), chunks=Dist(a=20), capacity=8)
    s = m.service_ms(8)  # 50 + 19 * 5 * 1.035
    assert m.predicted_ttft_ms(8, 0.99) == 50
    assert m.predicted_ttft_ms(24, 0.99) == pytest.approx(2 * s + 50)  # ≈ 347 ms: passes 430
    assert m.predicted_ttft_ms(25, 0.99) == pytest.approx(3 * s + 50)  # ≈ 495 ms: fails 430
    assert m.predicted_ttft_ms(25, 0.5) == pytest.approx(2 * s + 50)
    # its mean agrees with expected_ttft_ms: 1/8 of requests wait the extra round
    assert 0.875 * m.predicted_ttft_ms(25, 0.5) + 0.125 * m.predicted_ttft_ms(25, 0.99) == pytest.approx(
        m.expected_ttft_ms(25))
    assert Dist(kind="lognormal", a=100, b=400).quantile(0.99) == pytest.approx(400)


# ---- the boundary search and the answer, with faked step results (pure) -------------------------


def _step(load: float, p99: float, *, limit: float = 430.0, index: int = 0, replicate: int = 1,
          overloaded: bool = False, saturated: bool = False, tput: float | None = None) -> SweepStep:
    ok = p99 <= limit and not overloaded and not saturated
    return SweepStep(load=load, passed=ok, index=index, replicate=replicate, overloaded=overloaded or saturated,
                     saturated=saturated, slo={"ttft_p99_ms": {"limit": limit, "value": p99, "pass": p99 <= limit}},
                     throughput_rps=tput if tput is not None else float(load),
                     latency={} if overloaded or saturated else {"ttft": {"p50": p99 / 2, "p90": p99, "p99": p99}},
                     ttft_p99_ms=None if overloaded else p99)


def _search(truth: Callable[[float, int], float], policy: Policy, *, limit: int = 60) -> list[SweepStep]:
    """Drive next_step against a fake target: ``truth(load, replicate)`` is its TTFT p99."""
    steps: list[SweepStep] = []
    while (nxt := next_step(steps, policy)) is not None and len(steps) < limit:
        rep = 1 + sum(1 for s in steps if s.load == nxt.load)
        steps.append(_step(nxt.load, truth(nxt.load, rep), index=len(steps) + 1, replicate=rep))
    return steps


POLICY = Policy(mode="closed", levels=(5, 10, 20, 40, 80), refine=20, replicates=3)


def test_geometric_search_refines_to_adjacent_users_and_replicates_the_boundary() -> None:
    steps = _search(_sharp, POLICY)
    assert [s.load for s in steps] == [5, 10, 20, 40, 30, 25, 22, 23, 24, 24, 24, 25, 25]
    ans = capacity_answer(steps, POLICY, stopped="first_failure", slo={"ttft_p99_ms": 430.0})
    assert ans["load"] == 24 and ans["bracket"] == [24, 25] and ans["binding_slo"] == "ttft_p99_ms"
    assert (ans["replicates"]["24"], ans["replicates"]["25"], ans["pass_share"]["24"], ans["pass_share"]["25"]) == (
        3, 3, 1.0, 0.0)
    assert ans["line"] == "24 users sustain TTFT p99 ≤ 430 ms; 25 fail 3 of 3"
    assert (ans["exit_code"], ans["inconclusive"], ans["ended_by"]) == (0, False, "search")


def test_one_lucky_pass_at_the_boundary_is_not_the_answer() -> None:
    # 25 users pass once (its first run), then fail: replication moves the bracket back down
    def lucky(load: float, rep: int) -> float:
        return 420.0 if load == 25 and rep == 1 else _sharp(load, rep)

    steps = _search(lucky, POLICY)
    ans = capacity_answer(steps, POLICY, stopped="first_failure", slo={"ttft_p99_ms": 430.0})
    # 25 passed 1 of 3: neither reliably passing nor reliably failing (margins +0.02, -0.19,
    # -0.19: the 95 % upper bound of their mean is above 0), so the failing end moves up to 26
    assert ans["load"] == 24 and ans["bracket"] == [24, 26] and ans["unsure"] == [25]
    assert ans["pass_share"]["25"] == pytest.approx(1 / 3)
    assert (ans["standing"]["24"], ans["standing"]["25"], ans["standing"]["26"]) == ("pass", "unsure", "fail")
    assert ans["line"] == "24 users sustain TTFT p99 ≤ 430 ms; 25 unsure (passed 1 of 3); 26 fail 3 of 3"
    assert [s.load for s in steps].count(25) == 3 and [s.load for s in steps].count(24) == 3
    # with a majority rule instead, 25 would still fail (1 of 3 passed)
    lenient = Policy(**{**POLICY.__dict__, "required_share": 0.6})
    assert capacity_answer(steps, lenient, stopped="first_failure", slo={"ttft_p99_ms": 430.0})["load"] == 24


def test_a_level_within_noise_of_its_limit_is_replicated() -> None:
    policy = Policy(mode="closed", levels=(10, 20, 40), refine=0, replicates=3)
    # 20 users: 400 ms, within 10 % of the 430 ms limit: replicated although it is not an end
    steps = _search(lambda load, _r: {10: 100.0, 20: 400.0, 40: 900.0}[int(load)], policy)
    assert sorted(s.load for s in steps) == [10, 20, 20, 20, 40, 40, 40]
    assert next_step([], policy) == Next(10, "plan")


def test_open_loop_refines_to_two_percent() -> None:
    policy = Policy(mode="open", levels=(10, 20, 40, 80), refine=20, replicates=1)
    steps = _search(lambda rate, _r: 100.0 if rate <= 50.0 else 900.0, policy)
    ans = capacity_answer(steps, policy, stopped="first_failure", slo={"ttft_p99_ms": 430.0})
    lo, hi = ans["bracket"]
    assert lo <= 50 < hi and (hi - lo) <= 0.02 * lo and ans["unit"] == "arrivals/s"
    assert bisect_level(49.5, 50.4, mode="open") is None and bisect_level(40, 50, mode="open") == 45


def test_overloaded_steps_fail_and_give_no_latency_figure() -> None:
    steps = [_step(10, 100, index=1), _step(20, 150, index=2), _step(30, 200, index=3),
             _step(40, 120, index=4, overloaded=True)]
    ans = capacity_answer(steps, POLICY, stopped="first_failure", slo={"ttft_p99_ms": 430.0})
    assert ans["bracket"] == [30, 40] and ans["overloaded_levels"] == [40] and ans["binding_slo"] == "overload"
    cur = curve(steps, POLICY)
    over = [p for p in cur["points"] if p["overloaded"]]
    assert len(over) == 1 and over[0]["latency_ms"] == {}
    assert [x for x, _ in cur["knee"]["fit"]] == [10, 20, 30]  # 40 is in no fit
    # from a summary: achieved under 98 % of offered is overload, its latency is dropped
    summary = {"passed": True, "error_rate": 0.0, "slo": {"ttft_p99_ms": {"limit": 430, "value": 50, "pass": True}},
               "latency_ms": {"ttft": {"p50": 20, "p90": 40, "p99": 50}}, "throughput": {"requests_per_s": 97.0},
               "schedule": {"offered_rate": 100.0, "achieved_rate": 97.0},
               "generator": {"saturated": False, "reasons": []}}
    s = SweepStep.from_summary(summary, load=100, index=1, run_dir="x", refinement=False)
    assert s.overloaded and not s.passed and s.latency == {} and s.ttft_p99_ms is None
    s = SweepStep.from_summary({**summary, "schedule": {"offered_rate": 100.0, "achieved_rate": 98.5}},
                               load=100, index=1, run_dir="x", refinement=False)
    assert not s.overloaded and s.passed and s.latency["ttft"]["p99"] == 50
    # sent all it offered, but the target completed 90 of every 98.5 sent: its queue grew
    # through the step (open loop above capacity), so the p99 is the step's length: overload
    grew = {**summary, "schedule": {"offered_rate": 100.0, "achieved_rate": 98.5}, "throughput": {"requests_per_s": 90.0}}
    s = SweepStep.from_summary(grew, load=100, index=1, run_dir="x", refinement=False)
    assert s.overloaded and not s.passed and s.latency == {}
    closed = {**summary, "schedule": {"offered_rate": None, "achieved_rate": None}, "throughput": {"requests_per_s": 9.0}}
    assert not SweepStep.from_summary(closed, load=8, index=1, run_dir="x", refinement=False).overloaded


def test_inconclusive_answers_exit_6_and_say_why() -> None:
    steps = [_step(5, 60, index=1), _step(10, 60, index=2), _step(20, 60, index=3, saturated=True)]
    ans = capacity_answer(steps, POLICY, stopped="saturated", slo={"ttft_p99_ms": 430.0})
    assert (ans["exit_code"], ans["inconclusive"], ans["load"]) == (6, True, 10)
    assert "INCONCLUSIVE from 20 users up" in ans["line"]
    assert next_step(steps, POLICY) is None  # nothing runs after a saturated step
    budget = capacity_answer(steps[:2], POLICY, stopped="budget", slo={"ttft_p99_ms": 430.0})
    assert (budget["exit_code"], budget["ended_by"]) == (6, "budget")
    assert "the budget, not the search, ended the sweep" in budget["line"]
    # a bracket found before the budget ran out is an answer, with the note
    bracketed = capacity_answer([*steps[:2], _step(40, 900, index=3)], POLICY, stopped="budget",
                                slo={"ttft_p99_ms": 430.0})
    assert bracketed["exit_code"] == 0 and "not refined between 10 and 40" in bracketed["line"]


def test_throughput_floor_is_judged_on_the_answer_not_per_step() -> None:
    slo = {"ttft_p99_ms": 430.0, "min_throughput_rps": 15.0}
    floor = {"limit": 15.0, "value": 5.0, "pass": False}
    steps = [_step(5, 60, index=1), _step(10, 60, index=2), _step(20, 60, index=3), _step(40, 900, index=4)]
    steps = [SweepStep(**{**s.__dict__, "slo": {**s.slo, "min_throughput_rps": floor}}) for s in steps]
    s = SweepStep.from_summary({"passed": False, "error_rate": 0.0,
                                "slo": {"ttft_p99_ms": {"limit": 430, "value": 60, "pass": True},
                                        "min_throughput_rps": floor}, "latency_ms": {},
                                "throughput": {"requests_per_s": 5.0}, "schedule": {},
                                "generator": {"saturated": False}}, load=5, index=1, run_dir="x", refinement=False)
    assert s.passed  # the low step is not failed by the floor
    ans = capacity_answer(steps, POLICY, stopped="first_failure", slo=slo)
    assert ans["load"] == 20 and ans["exit_code"] == 0 and not ans["below_throughput_floor"]
    slow = [SweepStep(**{**s.__dict__, "throughput_rps": 1.0}) for s in steps]
    ans = capacity_answer(slow, POLICY, stopped="first_failure", slo=slo)
    assert ans["exit_code"] == 1 and "below min_throughput_rps 15" in ans["line"]


def test_seeds_differ_per_step_and_repeat_per_sweep() -> None:
    seeds = [step_seeds(1, i) for i in range(1, 50)]
    flat = [x for pair in seeds for x in pair]
    assert len(set(flat)) == len(flat) and seeds == [step_seeds(1, i) for i in range(1, 50)]
    assert step_seeds(2, 1) != step_seeds(1, 1)
    assert (default_warmup_s(60), default_warmup_s(4), default_warmup_s(600)) == (6.0, 2.0, 60.0)
    assert default_warmup_s(2) == 1.0
    assert slo_text("e2e_p999_ms", 2000) == "e2e p99.9 ≤ 2000 ms" and slo_text("error_rate", 0.01) == "error rate ≤ 0.01"


def test_curve_fits_the_usl_in_closed_loop_and_attainment_in_open_loop() -> None:
    steps = [_step(n, 100.0 + n, index=i, tput=usl_throughput(n, lam=10, sigma=0.05, kappa=0.001))
             for i, n in enumerate((1, 2, 4, 8, 16, 32, 64), 1)]
    cur = curve(steps, POLICY)
    assert cur["model"]["kind"] == "usl" and cur["model"]["sigma"] == pytest.approx(0.05, abs=1e-6)
    assert cur["model"]["peak_users"] == pytest.approx((0.95 / 0.001) ** 0.5, rel=1e-3)
    open_policy = Policy(mode="open", levels=(10, 20, 40))
    opened = [SweepStep(**{**_step(r, 100, index=i).__dict__, "achieved_rate": float(r), "goodput_rps": g})
              for i, (r, g) in enumerate(((10, 10.0), (20, 18.5), (40, 30.0)), 1)]
    model = curve(opened, open_policy)["model"]
    assert model["kind"] == "attainment" and model["max_rate"] == 20


# ---- the driver, runs faked: budget, interruption ------------------------------------------------

@pytest.mark.realtime
def test_driver_finds_24_with_independent_seeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _fake(monkeypatch, [0.0])
    outcome, cap = _run(tmp_path, [0.0])
    assert outcome.exit_code == 0 and cap["answer"]["line"] == "24 users sustain TTFT p99 ≤ 430 ms; 25 fail 3 of 3"
    seeds = [(sc.load.seed, sc.mock_seed) for sc in seen]
    assert len({a for a, _ in seeds}) == len(seen) and all(a != b for a, b in seeds)
    assert all(sc.load.warmup_s == 2.0 for sc in seen)
    assert [s["replicate"] for s in cap["steps"] if s["load"] == 24] == [1, 2, 3]
    html = (tmp_path / "out" / "capacity.html").read_text(encoding="utf-8")
    assert "24 users sustain TTFT p99 ≤ 430 ms; 25 fail 3 of 3" in html and "Plotly" in html


@pytest.mark.realtime
def test_driver_budget_ends_the_search_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    seen = _fake(monkeypatch, clock)
    outcome, cap = _run(tmp_path, clock, budget_s=40.0)  # 12 s steps: the 4th would end after 48 s
    assert len(seen) == 3 and outcome.stopped == "budget"
    assert (outcome.exit_code, cap["answer"]["ended_by"], cap["answer"]["inconclusive"]) == (6, "budget", True)


@pytest.mark.realtime
def test_driver_ctrl_c_keeps_finished_steps_and_exits_4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(monkeypatch, [0.0], ctrl_c_at=5)
    outcome, cap = _run(tmp_path, [0.0])
    assert outcome.exit_code == 4 and cap["stopped"] == "interrupted" and len(cap["steps"]) == 4
    assert cap["answer"]["bracket"] == [20, 40] and "interrupted" in cap["answer"]["line"]


def test_three_lucky_passes_are_not_a_reliable_level() -> None:
    """A level whose replicates all pass, but whose SLO margins spread so widely that their mean
    could be below zero (open loop near capacity), is not reliably passing; a tight one is."""
    from loadtest.sweep.plan import margin_bounds

    def margin_bound(margins: list[float]) -> float | None:  # the lower bound
        bounds = margin_bounds(margins)
        return None if bounds is None else bounds[0]

    lucky = [(430 - v) / 430 for v in (250.0, 330.0, 410.0)]  # what 49.4/s gave against 430 ms
    tight = [(430 - v) / 430 for v in (374.0, 374.0, 367.0)]  # 24 users, closed loop
    assert margin_bound(lucky) is not None and margin_bound(lucky) <= 0  # type: ignore[operator]
    assert margin_bound(tight) is not None and margin_bound(tight) > 0.1  # type: ignore[operator]
    assert margin_bound([0.2]) is None  # one run says nothing about its spread


def test_level_status_needs_confidence_on_both_sides() -> None:
    from loadtest.sweep.plan import FAIL, PASS, UNSURE, level_status

    def reps(*p99s: float) -> list[SweepStep]:
        return [_step(30, v, replicate=i + 1) for i, v in enumerate(p99s)]

    assert level_status(reps(370, 365, 375)) == PASS  # 370 ± 5 ms against 430: reliable
    assert level_status(reps(250, 330, 410)) == UNSURE  # three passes, but the spread reaches the limit
    assert level_status(reps(420, 510, 510)) == UNSURE  # one pass in three: not a reliable failure
    assert level_status(reps(440, 445, 450)) == FAIL  # every one failed
    assert level_status(reps(500, 520, 420, 510, 515, 505)) == FAIL  # one pass in six, upper bound < 0
    assert level_status(reps(500)) == FAIL and level_status(reps(400)) == PASS  # one step: its own verdict
    overloaded = [_step(30, 0, overloaded=True), _step(30, 0, overloaded=True, replicate=2)]
    assert level_status(overloaded) == FAIL


def test_the_bracket_holds_the_rate_that_passes_half_the_time() -> None:
    # A noisy open-loop target: a step's SLO margin is 2 (50 − rate)/50 plus N(0, 0.1) noise, so
    # 50/s passes half the time, 47.5/s 84 %, 45/s 98 %. Over 200 independent searches the
    # bracket [reliably passing, reliably failing] must hold 50/s in nearly every search; its low
    # end passes at least 90 % of the time in about two searches of three (a bound on the mean
    # margin: a prediction bound would do better here but calls sharp closed-loop levels
    # unsure, see loadtest.sweep.plan.margin_bounds).
    from math import erf, sqrt

    policy = Policy(mode="open", levels=(20, 40, 80), refine=20, replicates=3)
    held = reliable = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)

        def truth(load: float, _rep: int, rng: np.random.Generator = rng) -> float:
            margin = 2 * (50 - load) / 50 + rng.normal(0, 0.1)
            return 430.0 * (1 - margin)

        steps = _search(truth, policy, limit=200)
        lo, hi = capacity_answer(steps, policy, stopped="first_failure", slo={"ttft_p99_ms": 430.0})["bracket"]
        held += lo is not None and hi is not None and lo <= 50 <= hi
        pass_prob = 0.5 * (1 + erf((2 * (50 - lo) / 50) / 0.1 / sqrt(2)))
        reliable += pass_prob >= 0.9
    assert held >= 185, held  # 192 of 200 when written
    assert reliable >= 125, reliable  # 135 of 200 when written
