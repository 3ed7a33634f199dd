"""Arrival schedules: statistics of each kind, exact constant offsets, ramps, traces."""

from __future__ import annotations

import itertools
import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from loadtest.errors import BadInput
from loadtest.schedule.arrivals import (
    ARRIVAL_KINDS,
    Arrival,
    RateProfile,
    Stage,
    paced_starts,
    parse_trace,
    schedule,
    trace_schedule,
)


def offsets(kind: str, profile: RateProfile, *, seed: int = 1, burstiness: float = 1.0) -> list[float]:
    return [a.offset_s for a in schedule(kind, profile, seed=seed, burstiness=burstiness)]


def gaps(offs: list[float]) -> list[float]:
    return [b - a for a, b in zip([0.0, *offs], offs, strict=False)]


# --- rate profiles -------------------------------------------------------------------


def test_constant_profile_values() -> None:
    p = RateProfile(rate_per_s=50, duration_s=10)
    assert p.duration_s == 10.0
    assert p.total == 500.0
    assert p.value_at(3.3) == 50.0
    assert p.cumulative(2.0) == 100.0
    assert p.inverse_cumulative(100.0) == 2.0
    assert p.inverse_cumulative(500.0) == 10.0
    assert p.inverse_cumulative(500.5) is None


def test_stages_ramp_linearly_from_start_zero() -> None:
    # k6 semantics: start defaults to 0; each stage ramps from the previous target.
    p = RateProfile(stages=[Stage(duration_s=10, target=100), Stage(duration_s=5, target=100)])
    assert p.start == 0.0
    assert p.value_at(0) == 0.0
    assert p.value_at(2.5) == 25.0
    assert p.value_at(12.0) == 100.0
    assert p.value_at(99.0) == 100.0  # past the end: the last target (closed-loop users)
    assert p.cumulative(10) == 500.0
    assert p.cumulative(15) == p.total == 1000.0
    assert p.inverse_cumulative(125.0) == pytest.approx(5.0, rel=1e-15)
    assert p.peak == 100.0


def test_zero_duration_stage_is_a_step_and_pause_pushes_arrivals_to_resume() -> None:
    p = RateProfile(
        start=10,
        stages=[
            Stage(duration_s=1, target=10),
            Stage(duration_s=0, target=0),
            Stage(duration_s=5, target=0),
            Stage(duration_s=0, target=10),
            Stage(duration_s=1, target=10),
        ],
    )
    assert p.duration_s == 7.0
    assert p.value_at(0.5) == 10.0
    assert p.value_at(1.0) == 0.0  # right-continuous at a step
    assert p.value_at(6.0) == 10.0
    assert p.value_at(-1.0) == 10.0
    stepped_off = RateProfile(stages=[Stage(duration_s=2, target=8), Stage(duration_s=0, target=0)])
    assert (stepped_off.value_at(1.0), stepped_off.value_at(2.0)) == (4.0, 0.0)
    # the arrival due when the pause begins lands where the rate resumes
    assert p.inverse_cumulative(10.0) == 6.0
    offs = offsets("constant", p)
    assert len(offs) == 20
    assert offs[:10] == pytest.approx([n / 10 for n in range(10)], abs=1e-12)
    assert offs[10:] == pytest.approx([6 + n / 10 for n in range(10)], abs=1e-12)


def test_profile_that_starts_with_a_pause_starts_arrivals_after_it() -> None:
    p = RateProfile(
        stages=[Stage(duration_s=2, target=0), Stage(duration_s=0, target=4), Stage(duration_s=1, target=4)]
    )
    assert offsets("constant", p) == [2.0, 2.25, 2.5, 2.75]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"rate_per_s": -1.0, "duration_s": 10.0}, "rate_per_s must be >= 0"),
        ({"rate_per_s": 0.0, "duration_s": 10.0}, "rate_per_s must be > 0"),
        ({"rate_per_s": math.nan, "duration_s": 10.0}, "rate_per_s must be a finite number"),
        ({"rate_per_s": 5.0}, "give rate_per_s and duration_s"),
        ({"rate_per_s": 5.0, "duration_s": 0.0}, "total duration must be > 0"),
        ({"rate_per_s": 5.0, "duration_s": 1.0, "start": 2.0}, "start applies only"),
        ({"stages": []}, "at least one stage"),
        ({"stages": [Stage(duration_s=1, target=1)], "rate_per_s": 1.0}, "not both"),
        ({"stages": [Stage(duration_s=-1, target=1)]}, "stage 1 duration_s must be >= 0"),
        ({"stages": [Stage(duration_s=1, target=1), Stage(duration_s=1, target=math.inf)]}, "stage 2 target"),
        ({"stages": [Stage(duration_s=3, target=0)]}, "0 throughout"),
        ({"stages": [Stage(duration_s=1, target=1)], "start": -2.0}, "start must be >= 0"),
    ],
)
def test_invalid_profiles_are_refused(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(BadInput, match=needle):
        RateProfile(**kwargs)  # type: ignore[arg-type]


stage_lists = st.lists(
    st.builds(
        Stage,
        duration_s=st.one_of(st.just(0.0), st.floats(0.001, 100)),
        target=st.one_of(st.just(0.0), st.floats(0.0, 1000)),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(stages=stage_lists, start=st.floats(0, 1000), frac=st.floats(0, 1), tfrac=st.floats(0, 1))
def test_inverse_cumulative_inverts_cumulative(
    stages: list[Stage], start: float, frac: float, tfrac: float
) -> None:
    try:
        p = RateProfile(stages=stages, start=start)
    except BadInput:
        return  # all durations 0, or zero rate throughout
    tol = 1e-9 * max(1.0, p.total)
    x = frac * p.total
    t = p.inverse_cumulative(x)
    assert t is not None
    assert 0.0 <= t <= p.duration_s
    assert p.cumulative(t) == pytest.approx(x, abs=tol)
    # from time space: where the rate is clearly positive, inverse(cumulative(t)) == t
    t0 = tfrac * p.duration_s
    t1 = p.inverse_cumulative(p.cumulative(t0))
    assert t1 is not None
    assert p.cumulative(t1) == pytest.approx(p.cumulative(t0), abs=tol)
    # (a peak in the subnormal range, e.g. 5e-324/s found by Hypothesis, has no "clearly positive" rate)
    if p.peak > 1e-9 and p.value_at(t0) >= 1e-3 * p.peak:
        assert t1 == pytest.approx(t0, abs=1e-9 * max(1.0, p.duration_s))
    assert p.inverse_cumulative(p.total * (1 + 1e-6) + 1e-6) is None


def test_rounding_edge_cases_found_by_hypothesis() -> None:
    # cumulative() just before the end must not round past the total (inverse would be None)
    p = RateProfile(start=95, stages=[Stage(duration_s=33, target=0)])
    t = 33 * (1 - 2**-53)
    assert p.cumulative(t) <= p.total
    assert p.inverse_cumulative(p.cumulative(t)) is not None
    # rates so small that v0^2 underflows: the quadratic is solved on a rescaled segment
    tiny = RateProfile(start=2.8e-159, stages=[Stage(duration_s=1, target=0)])
    half = tiny.inverse_cumulative(tiny.total * 0.75)
    assert half == pytest.approx(0.5, rel=1e-9)
    ramp = RateProfile(stages=[Stage(duration_s=1, target=1e-300)])
    assert ramp.inverse_cumulative(ramp.total / 4) == pytest.approx(0.5, rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(stages=stage_lists, start=st.floats(0, 1000), fracs=st.lists(st.floats(0, 1), min_size=2, max_size=20))
def test_inverse_cumulative_is_monotonic(stages: list[Stage], start: float, fracs: list[float]) -> None:
    try:
        p = RateProfile(stages=stages, start=start)
    except BadInput:
        return
    ts = [p.inverse_cumulative(f * p.total) for f in sorted(fracs)]
    assert all(a is not None and b is not None and a <= b for a, b in itertools.pairwise(ts))


# --- arrival kinds -------------------------------------------------------------------


def test_constant_rate_is_exactly_n_over_rate() -> None:
    offs = offsets("constant", RateProfile(rate_per_s=50, duration_s=10))
    assert len(offs) == 500
    assert offs == [n / 50 for n in range(500)]  # exact: from the schedule, not summed


def test_constant_offsets_do_not_accumulate_error() -> None:
    # 1/3 is not representable: summing gaps would drift; the schedule does not.
    offs = offsets("constant", RateProfile(rate_per_s=3, duration_s=100_000))
    assert len(offs) == 300_000
    assert offs[-1] == 299_999 / 3
    drift = 0.0
    for _ in range(299_999):
        drift += 1 / 3
    assert drift != offs[-1]


def test_poisson_gaps_pass_ks_against_exponential_and_the_test_has_power() -> None:
    offs = offsets("poisson", RateProfile(rate_per_s=100, duration_s=100), seed=7)
    assert abs(len(offs) - 10_000) < 400  # 4 sigma of Poisson(10000)
    g = gaps(offs)
    right = stats.kstest(g, "expon", args=(0, 1 / 100)).pvalue
    wrong = stats.kstest(g, "expon", args=(0, 1 / 90)).pvalue
    assert right > 0.01
    assert wrong < 1e-6
    assert all(0 <= t < 100 for t in offs)


@pytest.mark.parametrize(("burstiness", "cv"), [(0.25, 2.0), (1.0, 1.0), (4.0, 0.5)])
def test_gamma_cv_is_one_over_sqrt_burstiness(burstiness: float, cv: float) -> None:
    offs = offsets("gamma", RateProfile(rate_per_s=200, duration_s=100), seed=3, burstiness=burstiness)
    assert abs(len(offs) - 20_000) < 20_000 * 0.05
    g = gaps(offs)
    assert statistics.pstdev(g) / statistics.fmean(g) == pytest.approx(cv, abs=0.1)
    assert statistics.fmean(g) == pytest.approx(1 / 200, rel=0.05)


def test_gamma_gaps_pass_ks_against_their_gamma() -> None:
    offs = offsets("gamma", RateProfile(rate_per_s=100, duration_s=100), seed=11, burstiness=0.5)
    # shape k, scale 1/(k * rate): mean 1/rate
    assert stats.kstest(gaps(offs), "gamma", args=(0.5, 0, 1 / (0.5 * 100))).pvalue > 0.01


def test_constant_ramp_density_last_second_is_19x_first() -> None:
    offs = offsets("constant", RateProfile(stages=[Stage(duration_s=10, target=100)]))
    assert len(offs) == 500
    first = sum(t < 1 for t in offs)
    last = sum(t >= 9 for t in offs)
    assert (first, last) == (5, 95)
    assert offs[1] == pytest.approx(math.sqrt(1 / 5), rel=1e-12)  # cumulative(t) = 5 t^2


def test_poisson_ramp_follows_the_profile() -> None:
    p = RateProfile(stages=[Stage(duration_s=10, target=100)])
    assert abs(len(offsets("poisson", p, seed=2)) - 500) < 4 * math.sqrt(500)
    big = offsets("poisson", RateProfile(stages=[Stage(duration_s=10, target=20_000)]), seed=2)
    first = sum(t < 1 for t in big)
    last = sum(t >= 9 for t in big)
    assert last / first == pytest.approx(19, abs=2)
    # Given their count, inhomogeneous Poisson points are iid with density ∝ rate: CDF (t/10)^2.
    assert stats.kstest(big, lambda t: (t / 10) ** 2).pvalue > 0.01


def test_same_seed_same_offsets_and_different_seeds_differ() -> None:
    p = RateProfile(stages=[Stage(duration_s=5, target=50), Stage(duration_s=5, target=10)])
    for kind, b in (("poisson", 1.0), ("gamma", 0.3)):
        a1 = offsets(kind, p, seed=42, burstiness=b)
        a2 = offsets(kind, p, seed=42, burstiness=b)
        a3 = offsets(kind, p, seed=43, burstiness=b)
        assert a1 == a2
        assert a1 != a3
    assert [a.index for a in schedule("poisson", p, seed=1)] == list(range(len(offsets("poisson", p))))


@pytest.mark.parametrize(
    ("kind", "burstiness", "needle"),
    [
        ("uniform", 1.0, "unknown arrival kind 'uniform': use one of constant, poisson, gamma"),
        ("gamma", 0.0, "burstiness must be a finite number > 0"),
        ("gamma", -1.0, "burstiness must be a finite number > 0"),
        ("gamma", math.nan, "burstiness must be a finite number > 0"),
        ("poisson", 0.5, "burstiness applies only to kind 'gamma'"),
    ],
)
def test_bad_kind_or_burstiness_raises_at_call(kind: str, burstiness: float, needle: str) -> None:
    with pytest.raises(BadInput) as info:
        schedule(kind, RateProfile(rate_per_s=1, duration_s=1), seed=0, burstiness=burstiness)  # no next()
    assert needle in str(info.value)
    assert ARRIVAL_KINDS == ("constant", "poisson", "gamma")


def test_paced_starts_from_the_schedule() -> None:
    assert paced_starts(0.1, 1000) == 100.0
    naive = 0.0
    for _ in range(1000):
        naive += 0.1
    assert naive != 100.0  # what adding up the previous start would give
    assert paced_starts(2.0, 3, phase_s=0.5) == 6.5
    with pytest.raises(BadInput, match="pace must be"):
        paced_starts(-1.0, 1)


# --- traces --------------------------------------------------------------------------

TRACE = """\
# recorded 2024-05-01
{"t": 0.0, "prompt": "Explain artificial intelligence"}

{"t": 0.125, "prompt_chars": 300}
{"t_ms": 250}
{"t": 0.25, "prompt": "hi", "prompt_chars": 2}
  {"t": 1, "prompt": null}
"""


def test_parse_valid_trace() -> None:
    arrivals = parse_trace(TRACE.splitlines(), source="trace.jsonl")
    assert arrivals == [
        Arrival(0, 0.0, "Explain artificial intelligence", None),
        Arrival(1, 0.125, None, 300),
        Arrival(2, 0.25, None, None),
        Arrival(3, 0.25, "hi", 2),
        Arrival(4, 1.0, None, None),
    ]
    assert isinstance(arrivals[4].offset_s, float)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", 'expected a JSON object like {"t": 0.5}, got list'),
        ('{"t": 1, "ts": 2}', "unknown key 'ts' (allowed: t, t_ms, prompt, prompt_chars, conversation, turn, think)"),
        ('{"prompt": "x"}', 'missing "t" (seconds) or "t_ms" (milliseconds)'),
        ('{"t": 1, "t_ms": 1000}', "not both"),
        ('{"t": -0.5}', "t must be >= 0"),
        ('{"t": NaN}', "t must be a finite number of seconds"),
        ('{"t_ms": "5"}', "t_ms must be a finite number of milliseconds, got '5'"),
        ('{"t": true}', "t must be a finite number of seconds"),
        ('{"t": 0.5}', "t=0.5s is before t=1s on line 2; a trace must be in time order"),
        ('{"t": 2, "prompt": 7}', "prompt must be a string"),
        ('{"t": 2, "prompt_chars": -1}', "prompt_chars must be an integer >= 0"),
        ('{"t": 2, "prompt_chars": 1.5}', "prompt_chars must be an integer >= 0"),
        ('{"t": 2, "prompt": "abc", "prompt_chars": 5}', "prompt_chars=5 but the prompt has 3 characters"),
    ],
)
def test_trace_errors_name_the_line(body: str, needle: str) -> None:
    lines = ["# header", '{"t": 1}', "", body]
    with pytest.raises(BadInput) as info:
        parse_trace(lines, source="trace.jsonl")
    message = str(info.value)
    assert message.startswith("trace.jsonl:4: ")
    assert needle in message


def test_empty_trace_is_refused() -> None:
    with pytest.raises(BadInput, match=r"^t\.jsonl: the trace holds no arrivals$"):
        parse_trace(["# nothing", "   "], source="t.jsonl")


def test_trace_speed_factor() -> None:
    arrivals = parse_trace(TRACE.splitlines())
    assert [a.offset_s for a in trace_schedule(arrivals, speed=2)] == [0.0, 0.0625, 0.125, 0.125, 0.5]
    assert [a.offset_s for a in trace_schedule(arrivals, speed=0.5)] == [0.0, 0.25, 0.5, 0.5, 2.0]
    replay = list(trace_schedule(arrivals))
    assert replay == arrivals
    assert replay[0].prompt == "Explain artificial intelligence"


@pytest.mark.parametrize("speed", [0.0, -1.0, math.inf, math.nan])
def test_bad_speed_is_refused(speed: float) -> None:
    with pytest.raises(BadInput, match="speed must be a finite number > 0"):
        trace_schedule([Arrival(0, 0.0)], speed=speed)


def test_trace_schedule_refuses_out_of_order_arrivals() -> None:
    with pytest.raises(BadInput, match="trace arrival 1"):
        trace_schedule([Arrival(0, 1.0), Arrival(1, 0.5)])
