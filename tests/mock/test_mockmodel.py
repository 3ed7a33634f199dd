"""Pure tests of the mock's latency/capacity model and fault model: no loop, no sockets."""

from __future__ import annotations

import math
import random
import statistics
from typing import Any

import pytest

from loadtest.errors import EXIT_BAD_INPUT, BadInput
from loadtest.mock.faults import STREAM_FAULTS, FaultModel, FaultPlan, StreamFault, parse_faults
from loadtest.mock.latency import Dist, MockModel, parse_dist

# --------------------------------------------------------------------------- parse_dist


@pytest.mark.parametrize(
    ("spec", "dist"),
    [
        (100, Dist(kind="const", a=100.0)),
        (0, Dist(kind="const", a=0.0)),
        (2.5, Dist(kind="const", a=2.5)),
        ({"dist": "uniform", "low": 1, "high": 3}, Dist(kind="uniform", a=1.0, b=3.0)),
        ({"dist": "uniform", "low": 2, "high": 2}, Dist(kind="uniform", a=2.0, b=2.0)),
        ({"dist": "normal", "mean": 100, "sd": 15.5}, Dist(kind="normal", a=100.0, b=15.5)),
        ({"dist": "lognormal", "median": 100, "p99": 400}, Dist(kind="lognormal", a=100.0, b=400.0)),
    ],
)
def test_parse_dist_forms(spec: Any, dist: Dist) -> None:
    parsed = parse_dist(spec)
    assert parsed == dist
    assert isinstance(parsed.a, float) and isinstance(parsed.b, float)
    # to_spec is the inverse of parse_dist
    assert parse_dist(parsed.to_spec()) == parsed


def test_parse_dist_passes_a_dist_through() -> None:
    d = Dist(kind="uniform", a=1.0, b=2.0)
    assert parse_dist(d) is d


@pytest.mark.parametrize(
    "spec",
    [
        -1,
        -0.001,
        math.nan,
        math.inf,
        True,
        "100",
        None,
        [100],
        {},
        {"dist": "weibull", "a": 1},
        {"dist": None},
        {"dist": "uniform", "low": 1},
        {"dist": "uniform", "low": 3, "high": 1},
        {"dist": "uniform", "low": 1, "high": 2, "mean": 3},
        {"dist": "uniform", "low": True, "high": 2},
        {"dist": "uniform", "low": -1, "high": 2},
        {"dist": "normal", "mean": "1", "sd": 1},
        {"dist": "normal", "mean": 100},
        {"dist": "normal", "mean": 100, "sd": math.inf},
        {"dist": "lognormal", "median": 0, "p99": 5},
        {"dist": "lognormal", "median": 5, "p99": 5},
        {"dist": "lognormal", "median": 10, "p99": 5},
        {"dist": "lognormal", "median": 10, "p99": 50, "sd": 1},
    ],
)
def test_parse_dist_refuses_bad_forms(spec: Any) -> None:
    with pytest.raises(BadInput) as info:
        parse_dist(spec, name="ttft_ms")
    assert "ttft_ms" in str(info.value)
    assert info.value.exit_code == EXIT_BAD_INPUT


# --------------------------------------------------------------------------- Dist sampling

N = 20_000


def test_const_sample_is_the_constant() -> None:
    rng = random.Random(1)
    assert {Dist(kind="const", a=7.5).sample(rng) for _ in range(10)} == {7.5}


def test_lognormal_median_and_p99_match_the_spec() -> None:
    """Seeded, so deterministic; the tolerances (2% median, 5% p99, 2% mean) are about 3
    standard errors of the estimators at n=20000, so any seed would pass them."""
    d = Dist(kind="lognormal", a=100.0, b=400.0)
    rng = random.Random(1)
    xs = sorted(d.sample(rng) for _ in range(N))
    assert statistics.median(xs) == pytest.approx(100.0, rel=0.02)
    assert xs[int(0.99 * N)] == pytest.approx(400.0, rel=0.05)
    # mean = exp(mu + sigma^2 / 2) with mu = ln 100, sigma = ln(4) / z99
    sigma = math.log(4.0) / 2.3263478740408408
    assert d.mean == pytest.approx(100.0 * math.exp(sigma * sigma / 2), rel=1e-9)
    assert statistics.fmean(xs) == pytest.approx(d.mean, rel=0.02)


def test_sampling_is_reproducible_by_seed() -> None:
    d = Dist(kind="lognormal", a=100.0, b=400.0)
    r1, r2, r3 = random.Random(5), random.Random(5), random.Random(6)
    s1 = [d.sample(r1) for _ in range(50)]
    assert s1 == [d.sample(r2) for _ in range(50)]
    assert s1 != [d.sample(r3) for _ in range(50)]


def test_uniform_stays_in_bounds_and_fills_them() -> None:
    d = Dist(kind="uniform", a=20.0, b=30.0)
    rng = random.Random(3)
    xs = [d.sample(rng) for _ in range(N)]
    assert min(xs) >= 20.0 and max(xs) <= 30.0
    assert min(xs) < 20.01 and max(xs) > 29.99
    assert statistics.fmean(xs) == pytest.approx(25.0, rel=0.01)
    assert d.mean == 25.0


def test_normal_clamps_at_zero() -> None:
    d = Dist(kind="normal", a=1.0, b=10.0)
    rng = random.Random(4)
    xs = [d.sample(rng) for _ in range(N)]
    assert min(xs) == 0.0
    # P(N(1, 10) < 0) = Phi(-0.1) = 0.4602
    assert sum(x == 0.0 for x in xs) / N == pytest.approx(0.4602, abs=0.015)
    assert d.mean == 1.0


def test_normal_far_from_zero_keeps_its_mean_and_sd() -> None:
    d = Dist(kind="normal", a=100.0, b=10.0)
    rng = random.Random(5)
    xs = [d.sample(rng) for _ in range(N)]
    assert statistics.fmean(xs) == pytest.approx(100.0, abs=0.3)
    assert statistics.stdev(xs) == pytest.approx(10.0, rel=0.03)


# --------------------------------------------------------------------------- MockModel


def test_plan_with_constants() -> None:
    model = MockModel(ttft_ms=Dist(a=100.0), gap_ms=Dist(a=10.0), chunks=Dist(a=20.0))
    assert model.plan(random.Random(0)) == (100.0, 20, 10.0)


@pytest.mark.parametrize(("chunks", "n"), [(0.0, 1), (0.4, 1), (1.0, 1), (2.6, 3), (7.0, 7)])
def test_plan_rounds_chunks_and_never_gives_zero(chunks: float, n: int) -> None:
    model = MockModel(chunks=Dist(a=chunks))
    assert model.plan(random.Random(0))[1] == n


def test_plan_is_seeded() -> None:
    model = MockModel(
        ttft_ms=parse_dist({"dist": "lognormal", "median": 100, "p99": 400}),
        gap_ms=parse_dist({"dist": "uniform", "low": 5, "high": 15}),
        chunks=parse_dist({"dist": "normal", "mean": 20, "sd": 5}),
    )
    r1, r2 = random.Random(9), random.Random(9)
    plans = [model.plan(r1) for _ in range(100)]
    assert plans == [model.plan(r2) for _ in range(100)]
    assert all(p[1] >= 1 and 5 <= p[2] <= 15 and p[0] > 0 for p in plans)
    assert len({p[0] for p in plans}) == 100


def test_gap_factor() -> None:
    assert MockModel().slowdown == 0.0
    assert MockModel().gap_factor(50) == 1.0
    capped = MockModel(capacity=4)
    assert capped.slowdown == 0.005
    assert capped.gap_factor(0) == 1.0
    assert capped.gap_factor(1) == 1.0
    assert capped.gap_factor(4) == pytest.approx(1.015)
    assert capped.gap_factor(101) == pytest.approx(1.5)
    assert MockModel(gap_slowdown=0.1).gap_factor(3) == pytest.approx(1.2)
    assert MockModel(capacity=4, gap_slowdown=0.0).gap_factor(4) == 1.0


def test_service_ms() -> None:
    model = MockModel(ttft_ms=Dist(a=50.0), gap_ms=Dist(a=5.0), chunks=Dist(a=10.0), capacity=4)
    # ttft + 9 gaps, each gap slowed by 0.5% per extra active stream
    assert model.service_ms(1) == pytest.approx(95.0)
    assert model.service_ms(4) == pytest.approx(50 + 9 * 5 * 1.015)  # 95.675
    assert MockModel(ttft_ms=Dist(a=50.0), chunks=Dist(a=1.0)).service_ms(1) == 50.0
    # means, not samples: uniform 9..11 chunks counts as 10, uniform 4..6 ms gap as 5
    spread = MockModel(
        ttft_ms=parse_dist({"dist": "uniform", "low": 40, "high": 60}),
        gap_ms=parse_dist({"dist": "uniform", "low": 4, "high": 6}),
        chunks=parse_dist({"dist": "uniform", "low": 9, "high": 11}),
    )
    assert spread.service_ms(1) == pytest.approx(95.0)


def test_expected_ttft_ms() -> None:
    model = MockModel(ttft_ms=Dist(a=50.0), gap_ms=Dist(a=5.0), chunks=Dist(a=10.0), capacity=4)
    s = 95.675
    assert model.expected_ttft_ms(1) == 50.0
    assert model.expected_ttft_ms(4) == 50.0
    # (users / K - 1) * S + ttft
    assert model.expected_ttft_ms(16) == pytest.approx(3 * s + 50)  # 337.025
    assert model.expected_ttft_ms(5) == pytest.approx(0.25 * s + 50)  # 73.92
    assert model.expected_ttft_ms(16, client_overhead_ms=10) == pytest.approx(3 * s + 50 - 10)
    # an overhead longer than the queue wait leaves no queue
    assert model.expected_ttft_ms(5, client_overhead_ms=100) == 50.0
    assert MockModel(ttft_ms=Dist(a=50.0)).expected_ttft_ms(1000) == 50.0
    with pytest.raises(ValueError):
        model.expected_ttft_ms(0)


# --------------------------------------------------------------------------- parse_faults


def test_parse_faults_none_is_inactive() -> None:
    assert parse_faults(None) == FaultModel()
    assert not parse_faults(None).active
    assert not parse_faults({}).active


@pytest.mark.parametrize("kind", [k for k in STREAM_FAULTS if k != "close_code"])
def test_parse_faults_stream_rate(kind: str) -> None:
    fm = parse_faults({kind: 0.25})
    assert fm.rates == ((kind, 0.25),)
    assert fm.active
    assert fm.spec == {kind: 0.25}


def test_parse_faults_close_code() -> None:
    fm = parse_faults({"close_code": {"rate": 0.1, "code": 4000}})
    assert fm.rates == (("close_code", 0.1),)
    assert fm.close_code == 4000
    assert parse_faults({"close_code": {"rate": 0.1}}).close_code == 1011


def test_parse_faults_zero_rate_is_dropped_and_order_is_fixed() -> None:
    fm = parse_faults({"unknown_event": 0.2, "no_stop": 0, "abrupt_close": 0.1})
    assert fm.rates == (("abrupt_close", 0.1), ("unknown_event", 0.2))
    # rates may add up to exactly 1
    assert len(parse_faults({"abrupt_close": 0.5, "error_instead": 0.5}).rates) == 2


def test_parse_faults_stall() -> None:
    assert parse_faults({"stall": {"at_s": 4, "ms": 1000}}).stalls == ((4.0, 1.0),)
    fm = parse_faults({"stall": [{"at_s": 9, "ms": 250}, {"at_s": 1.5, "ms": 100}]})
    assert fm.stalls == ((1.5, 0.1), (9.0, 0.25))
    assert fm.active


def test_parse_faults_refuse_upgrade() -> None:
    fm = parse_faults({"refuse_upgrade": {"rate": 0.5, "status": 401}})
    assert (fm.refuse_rate, fm.refuse_status) == (0.5, 401)
    fm = parse_faults({"refuse_upgrade": {}})
    assert (fm.refuse_rate, fm.refuse_status) == (1.0, 503)
    assert fm.active


def test_parse_faults_slow_handshake() -> None:
    fm = parse_faults({"slow_handshake": {"rate": 1, "ms": 300}})
    assert (fm.slow_handshake_rate, fm.slow_handshake_s) == (1.0, 0.3)
    assert fm.active


@pytest.mark.parametrize(
    "spec",
    [
        [],
        "abrupt_close",
        {"abrupt-close": 0.1},
        {"abrupt_close": -0.1},
        {"abrupt_close": 1.5},
        {"abrupt_close": True},
        {"abrupt_close": "0.5"},
        {"no_stop": None},
        {"close_code": 0.1},
        {"close_code": {"rate": 0.1, "reason": "x"}},
        {"close_code": {"rate": 0.1, "code": 999}},
        {"close_code": {"rate": 0.1, "code": 5000}},
        {"close_code": {"rate": 0.1, "code": "4000"}},
        {"close_code": {"rate": 2, "code": 4000}},
        {"stall": "4s"},
        {"stall": 5},
        {"stall": [{"at_s": 4}]},
        {"stall": [{"ms": 100}]},
        {"stall": {"at_s": -1, "ms": 100}},
        {"stall": {"at_s": 1, "ms": -100}},
        {"stall": {"at_s": 1, "ms": 100, "every_s": 2}},
        {"stall": [5]},
        {"refuse_upgrade": 0.5},
        {"refuse_upgrade": {"rate": 1, "status": 200}},
        {"refuse_upgrade": {"rate": 1, "status": 399}},
        {"refuse_upgrade": {"rate": 1, "status": 600}},
        {"refuse_upgrade": {"rate": 1.1}},
        {"refuse_upgrade": {"rate": 1, "code": 503}},
        {"slow_handshake": {"rate": 1, "ms": -1}},
        {"slow_handshake": {"rate": 1, "ms": math.inf}},
        {"slow_handshake": {"rate": 1, "delay": 5}},
        {"slow_handshake": 300},
    ],
)
def test_parse_faults_refuses_bad_values(spec: Any) -> None:
    with pytest.raises(BadInput) as info:
        parse_faults(spec)
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert "faults" in str(info.value)


def test_parse_faults_refuses_rates_summing_over_one() -> None:
    with pytest.raises(BadInput, match="add up to more than 1"):
        parse_faults({"abrupt_close": 0.6, "no_stop": 0.5})
    with pytest.raises(BadInput, match="add up to more than 1"):
        parse_faults({k: 0.15 if k != "close_code" else {"rate": 0.15} for k in STREAM_FAULTS})


# --------------------------------------------------------------------------- FaultPlan


def test_fault_plan_is_seeded_and_deterministic() -> None:
    fm = parse_faults({"error_instead": 0.5})

    def draws(seed: int) -> list[StreamFault]:
        plan = FaultPlan(fm, seed=seed)
        return [plan.stream_fault(20) for _ in range(400)]

    a = draws(3)
    assert a == draws(3)
    assert a != draws(4)
    hit = sum(f.kind == "error_instead" for f in a)
    assert 160 <= hit <= 240  # 400 draws at rate 0.5: 200 +- 5 sd
    assert {f.kind for f in a} == {"", "error_instead"}


def test_fault_plan_kinds_follow_the_cumulative_rates() -> None:
    fm = parse_faults({"abrupt_close": 0.2, "close_code": {"rate": 0.3, "code": 4001}, "no_stop": 0.5})
    plan = FaultPlan(fm, seed=1)
    faults = [plan.stream_fault(10) for _ in range(4000)]
    counts = {k: sum(f.kind == k for f in faults) / 4000 for k in ("abrupt_close", "close_code", "no_stop")}
    assert counts["abrupt_close"] == pytest.approx(0.2, abs=0.03)
    assert counts["close_code"] == pytest.approx(0.3, abs=0.03)
    assert counts["no_stop"] == pytest.approx(0.5, abs=0.03)
    assert all(f.at_chunk == 5 and f.code == 4001 for f in faults)


def test_fault_plan_positions() -> None:
    assert FaultPlan(parse_faults({"error_instead": 1}), seed=0).stream_fault(20) == StreamFault(
        "error_instead", 0, 1011
    )
    assert FaultPlan(parse_faults({"error_mid_stream": 1}), seed=0).stream_fault(20).at_chunk == 10
    assert FaultPlan(parse_faults({"error_mid_stream": 1}), seed=0).stream_fault(1).at_chunk == 0
    assert FaultPlan(FaultModel(), seed=0).stream_fault(20) == StreamFault()


def test_fault_plan_stall_window() -> None:
    plan = FaultPlan(parse_faults({"stall": [{"at_s": 4, "ms": 1000}, {"at_s": 10, "ms": 500}]}))
    assert plan.stall_s(3.999) == 0.0
    assert plan.stall_s(4.0) == pytest.approx(1.0)
    assert plan.stall_s(4.25) == pytest.approx(0.75)
    assert plan.stall_s(5.0) == 0.0
    assert plan.stall_s(10.1) == pytest.approx(0.4)


def test_fault_plan_handshake_faults() -> None:
    plan = FaultPlan(parse_faults({"refuse_upgrade": {"status": 401}, "slow_handshake": {"ms": 250}}))
    assert plan.refuse_upgrade() == 401
    assert plan.handshake_delay_s() == 0.25
    none = FaultPlan(FaultModel())
    assert none.refuse_upgrade() == 0
    assert none.handshake_delay_s() == 0.0
