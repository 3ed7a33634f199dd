"""Tests for loadtest.metrics: the HdrHistogram wrapper and the metric set (pure, no loop)."""

from __future__ import annotations

import io
import math
import pickle

import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtest.metrics.metricset import IntervalSnapshot, MetricSet
from loadtest.metrics.recorder import (
    HIGHEST_US,
    METRICS,
    Recorder,
    merge,
)

SUMMARY_KEYS = ["count", "min", "mean", "p50", "p90", "p95", "p99", "p999", "max", "out_of_range"]


def _recorder(values: list[int]) -> Recorder:
    rec = Recorder()
    for v in values:
        rec.record_us(v)
    return rec


# -- rounding and clamping ----------------------------------------------------------------


def test_float_rounds_half_up_not_truncated() -> None:
    rec = Recorder()
    rec.record_us(1.6)
    assert rec.count == 1
    assert rec.min_us == 2
    assert rec.max_us == 2
    assert rec.out_of_range == 0


@pytest.mark.parametrize(("value", "expected"), [(1.4, 1), (1.5, 2), (2.5, 3), (999.5, 1000), (7, 7)])
def test_rounding_table(value: float, expected: int) -> None:
    rec = Recorder()
    rec.record_us(value)
    assert rec.percentile_us(100) == expected


def test_clamps_below_range_and_counts() -> None:
    rec = Recorder()
    for v in (0, -5, 0.4, -math.inf):
        rec.record_us(v)
    rec.record_us(0.5)  # rounds half-up to 1: in range
    assert rec.count == 5
    assert rec.below_range == 4
    assert rec.above_range == 0
    assert rec.out_of_range == 4
    assert rec.max_us == 1


def test_clamps_above_range_and_counts() -> None:
    rec = Recorder()
    rec.record_us(HIGHEST_US)  # in range
    rec.record_us(HIGHEST_US + 1)
    rec.record_us(HIGHEST_US + 0.5)  # rounds up to HIGHEST_US + 1
    rec.record_us(math.inf)
    assert rec.count == 4
    assert rec.above_range == 3
    assert rec.below_range == 0
    # recorded as 1 h, i.e. not dropped: max is within 0.1% of 1 h
    assert rec.max_us is not None
    assert abs(rec.max_us - HIGHEST_US) <= HIGHEST_US * 0.001


def test_nan_is_counted_but_not_recorded() -> None:
    rec = Recorder()
    rec.record_us(math.nan)
    rec.record_us(10)
    assert rec.count == 1
    assert rec.invalid == 1
    assert rec.out_of_range == 1
    assert rec.below_range == rec.above_range == 0
    assert rec.summary_ms()["out_of_range"] == 1


# -- summary --------------------------------------------------------------------------------


def test_summary_uniform_percentiles_within_hdr_precision() -> None:
    rec = _recorder(list(range(1, 10_001)))
    s = rec.summary_ms()
    assert list(s) == SUMMARY_KEYS
    assert s["count"] == 10_000
    assert s["out_of_range"] == 0
    assert s["min"] == 0.001
    for key, expected_ms in [
        ("p50", 5.0),
        ("p90", 9.0),
        ("p95", 9.5),
        ("p99", 9.9),
        ("p999", 9.99),
        ("max", 10.0),
    ]:
        value = s[key]
        assert isinstance(value, float)
        assert value == pytest.approx(expected_ms, rel=0.001), key
    assert s["mean"] == pytest.approx(5.0005, rel=0.001)


def test_summary_empty_has_none_figures() -> None:
    rec = Recorder()
    rec.record_us(math.nan)
    s = rec.summary_ms()
    assert list(s) == SUMMARY_KEYS
    assert s["count"] == 0
    assert s["out_of_range"] == 1
    assert all(s[k] is None for k in SUMMARY_KEYS if k not in ("count", "out_of_range"))
    assert rec.percentile_us(50) is None
    assert rec.min_us is None and rec.max_us is None and rec.mean_us is None


def test_summary_rounds_to_microseconds() -> None:
    rec = _recorder([1234])
    s = rec.summary_ms()
    assert s["min"] == 1.234
    assert s["max"] == 1.234  # 1234 µs is exact at 3 significant digits (bucket width 1)


@pytest.mark.parametrize("p", [-0.1, 100.1])
def test_percentile_out_of_bounds(p: float) -> None:
    with pytest.raises(ValueError, match=r"0\.\.100"):
        _recorder([1]).percentile_us(p)


def test_spectrum_points() -> None:
    rec = _recorder(list(range(1, 10_001)))
    points = rec.spectrum()
    quantiles = [q for q, _ in points]
    values = [v for _, v in points]
    assert quantiles[0] == 0.0
    assert quantiles[-1] == 1.0
    assert values[-1] == pytest.approx(10.0, rel=0.001)
    assert quantiles == sorted(quantiles)
    assert values == sorted(values)
    assert quantiles[1] == pytest.approx(0.1)
    assert quantiles[-2] > 0.999  # the tail is sampled finely enough for a 1/(1-p) axis
    # the same points as hdrh's own .hgrm output (CSV: value in ms, then quantile)
    out = io.BytesIO()
    hist = HdrHistogram(1, HIGHEST_US, 3)
    for value in range(1, 10_001):
        hist.record_value(value)
    hist.output_percentile_distribution(out, 1000, ticks_per_half_distance=5, use_csv=True)
    rows = [line.split(",") for line in out.getvalue().decode().splitlines()[1:]]
    assert len(rows) == len(points)
    for (q, v), row in zip(points, rows, strict=True):
        assert v == pytest.approx(float(row[0]), abs=0.0005)
        assert q == pytest.approx(float(row[1]), abs=1e-12)
    assert Recorder().spectrum() == []


# -- merging and plain data ---------------------------------------------------------------


def test_add_equals_recording_all() -> None:
    a_values = [3, 700, 12_345, 999_999, 5]
    b_values = [1, 2, 50_000_000, 77]
    a, b = _recorder(a_values), _recorder(b_values)
    a.record_us(-1)
    b.record_us(math.inf)
    a.add(b)
    everything = _recorder(a_values + b_values)
    everything.record_us(-1)
    everything.record_us(math.inf)
    assert a == everything
    assert a.count == 11
    assert a.min_us == 1
    assert a.encode() == everything.encode()
    assert (a.below_range, a.above_range) == (1, 1)


def test_add_empty_keeps_min() -> None:
    # hdrh's own add() sets min to 0 when the other histogram is empty
    rec = _recorder([100])
    rec.add(Recorder())
    assert rec.min_us == 100
    assert merge([Recorder(), rec, Recorder()]).min_us == 100


def test_encode_decode_round_trip() -> None:
    values = [1, 2, 3, 999, 1000, 1001, 123_456, 7_000_000, HIGHEST_US]
    rec = _recorder(values)
    back = Recorder.decode(rec.encode())
    assert back.count == rec.count == len(values)
    for p in (0, 10, 25, 50, 75, 90, 99, 99.9, 100):
        assert back.percentile_us(p) == rec.percentile_us(p)
    assert (back.min_us, back.max_us, back.mean_us) == (rec.min_us, rec.max_us, rec.mean_us)
    assert back.encode() == rec.encode()
    assert back == rec


def test_decode_rejects_garbage_and_foreign_parameters() -> None:
    with pytest.raises(ValueError, match="not an HdrHistogram"):
        Recorder.decode("not base64 !!")
    foreign = HdrHistogram(1, 1000, 2)
    foreign.record_value(5)
    with pytest.raises(ValueError, match="parameters differ"):
        Recorder.decode(foreign.encode().decode())


def test_to_dict_carries_counters_across_pickle() -> None:
    rec = _recorder([10, 20])
    rec.record_us(0)
    rec.record_us(math.inf)
    rec.record_us(math.nan)
    data = pickle.loads(pickle.dumps(rec.to_dict()))
    back = Recorder.from_dict(data)
    assert back == rec
    assert (back.below_range, back.above_range, back.invalid, back.count) == (1, 1, 1, 4)


def test_copy_and_reset_are_independent() -> None:
    rec = _recorder([5, 6])
    rec.record_us(0)
    dup = rec.copy()
    rec.reset()
    assert (rec.count, rec.out_of_range) == (0, 0)
    assert (dup.count, dup.out_of_range, dup.max_us) == (3, 1, 6)
    rec.record_us(9)
    assert rec.min_us == 9
    assert dup.count == 3


# -- MetricSet ----------------------------------------------------------------------------


def test_metricset_snapshot_moves_interval_into_totals() -> None:
    ms = MetricSet()
    ms.record("ttft", 1000)
    ms.record("ttft", 2000.4)
    ms.record("itl", 0)
    assert ms.totals["ttft"].count == 0  # recorded in the interval only
    snap = ms.snapshot(0.0, 1.0)
    assert (snap.start_s, snap.end_s) == (0.0, 1.0)
    assert set(snap.histograms) == {"ttft", "itl"}
    assert snap.out_of_range == {"itl": 1}
    assert Recorder.decode(snap.histograms["ttft"]).count == 2
    assert ms.totals["ttft"].count == 2
    assert ms.interval("ttft").count == 0
    ms.record("ttft", 3000)
    snap2 = ms.snapshot(1.0, 2.0)
    assert set(snap2.histograms) == {"ttft"}
    assert snap2.out_of_range == {}
    assert ms.totals["ttft"] == _recorder([1000, 2000, 3000])
    assert ms.totals["itl"].below_range == 1


def test_metricset_merge_snapshot_equals_recording_all() -> None:
    worker_a, worker_b, coordinator, everything = MetricSet(), MetricSet(), MetricSet(), Recorder()
    for i in range(1, 500):
        (worker_a if i % 3 else worker_b).record("e2e", i * 37)
        everything.record_us(i * 37)
    worker_b.record("e2e", math.nan)
    worker_a.record("e2e", HIGHEST_US * 2)
    everything.record_us(math.nan)
    everything.record_us(HIGHEST_US * 2)
    snaps = [worker_a.snapshot(0, 1), worker_b.snapshot(0, 1)]
    for snap in pickle.loads(pickle.dumps(snaps)):
        coordinator.merge_snapshot(snap)
    assert coordinator.totals["e2e"] == everything
    assert coordinator.totals["e2e"].count == 500
    assert coordinator.summary_ms()["e2e"]["out_of_range"] == 2
    assert coordinator.totals["e2e"].invalid == 1


def test_metricset_unknown_name() -> None:
    ms = MetricSet()
    with pytest.raises(KeyError, match="unknown metric 'ttfb'"):
        ms.record("ttfb", 1)
    with pytest.raises(KeyError, match="unknown metrics"):
        ms.merge_snapshot(IntervalSnapshot(0, 1, {"ttfb": Recorder().encode()}, {}))


def test_metricset_summary_covers_all_metrics() -> None:
    ms = MetricSet()
    ms.record("loop_lag", 250)
    ms.snapshot(0, 1)
    summary = ms.summary_ms()
    assert list(summary) == list(METRICS)
    assert summary["loop_lag"]["p99"] == 0.25
    assert summary["ttft"]["count"] == 0
    assert summary["ttft"]["p99"] is None


def test_snapshot_rejects_reversed_interval() -> None:
    with pytest.raises(ValueError, match="ends before"):
        MetricSet().snapshot(2.0, 1.0)


# -- property -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.integers(min_value=-10, max_value=HIGHEST_US + 10),
            st.floats(min_value=-10, max_value=1e10, allow_nan=False),
        ),
        min_size=1,
        max_size=200,
    ),
    parts=st.integers(min_value=1, max_value=6),
    data=st.data(),
)
def test_split_then_merge_equals_single(values: list[float], parts: int, data: st.DataObject) -> None:
    assignment = data.draw(st.lists(st.integers(0, parts - 1), min_size=len(values), max_size=len(values)))
    pieces = [Recorder() for _ in range(parts)]
    single = Recorder()
    for value, idx in zip(values, assignment, strict=True):
        pieces[idx].record_us(value)
        single.record_us(value)
    merged = merge(pieces)
    assert merged.count == single.count == len(values)
    assert merged.min_us == single.min_us
    assert merged.max_us == single.max_us
    assert merged.percentile_us(99) == single.percentile_us(99)
    assert merged.out_of_range == single.out_of_range
    assert merged == single


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.5, max_value=4e9), min_size=1, max_size=400))
def test_fast_mean_equals_hdrh_mean_exactly(values: list[float]) -> None:
    """summary_ms's mean visits only non-empty buckets; it must equal hdrh's full walk."""
    r = Recorder()
    for v in values:
        r.record_us(v)
    assert r.mean_us == r._h.get_mean_value()
