"""OTLP exponential buckets and the conversion of a live snapshot to OTLP points, without sockets:
:func:`loadtest.live.otlp.bucket_index` against the data model's definition at exact powers of
two and next to bucket bounds, the scale chosen per point, and what :func:`metrics_data`
encodes (names, units, kinds, temporality)."""

from __future__ import annotations

import math
import random

import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics._internal.exponential_histogram.mapping.exponent_mapping import ExponentMapping
from opentelemetry.sdk.metrics._internal.exponential_histogram.mapping.logarithm_mapping import (
    LogarithmMapping,
)
from opentelemetry.sdk.resources import Resource
from support.otlpreceiver import (
    assert_histogram_matches,
    attrs,
    by_attrs,
    exact_index,
    metrics,
    points,
    sample_snapshot,
)

from loadtest.live.otlp import MAX_BUCKETS, MAX_SCALE, bucket_index, exponential_buckets, metrics_data
from loadtest.live.state import LiveSeries, LiveSnapshot

SCALES = [-3, -1, 0, 1, 2, 3, 4, 8]


@pytest.mark.parametrize("scale", SCALES)
def test_an_exact_power_of_two_is_the_upper_bound_of_its_bucket(scale: int) -> None:
    for e in range(-25, 15):
        value = 2.0**e
        got = bucket_index(value, scale)
        assert got == exact_index(value, scale), (value, scale)
        if scale >= 0:
            assert got == (e << scale) - 1
        else:
            assert got == (e - 1) >> -scale
        # the next float up is in the next bucket (at scale >= 0 a power of two is a bound)
        if scale >= 0:
            assert bucket_index(math.nextafter(value, math.inf), scale) == got + 1


@pytest.mark.parametrize("scale", [1, 2, 3, 4, 8])
def test_values_next_to_a_bound_fall_on_the_right_side(scale: int) -> None:
    per_octave = 1 << scale
    for k in range(-22 * per_octave, 13 * per_octave, max(1, per_octave // 8) * 7 + 1):
        bound = 2.0 ** (k / per_octave)  # the float nearest base**k (a hair above or below it)
        candidates = [bound]
        for _ in range(3):
            candidates += [math.nextafter(candidates[-1], 0.0)]
        up = bound
        for _ in range(3):
            up = math.nextafter(up, math.inf)
            candidates.append(up)
        for v in candidates:
            assert bucket_index(v, scale) == exact_index(v, scale), (v, k, scale)


def test_the_vectorized_bucketing_decides_values_next_to_a_bound_exactly_too() -> None:
    values = []
    for k in range(-3000, 3000, 13):
        bound = 2.0 ** (k / 256)
        values += [math.nextafter(bound, 0.0), bound, math.nextafter(bound, math.inf)]
    values.sort()
    scale, offset, counts, _ = exponential_buckets(values, [1] * len(values), max_buckets=10_000)
    assert scale == MAX_SCALE == 8
    expected = [0] * len(counts)
    for v in values:
        expected[exact_index(v, scale) - offset] += 1
    assert counts == expected


def test_microsecond_values_of_the_hdr_range_match_the_exact_definition() -> None:
    rng = random.Random(3)
    values = [us / 1e6 for us in (1, 2, 3, 999, 1000, 1024, 4096, 1_000_000, 2**21, 3_600_000_000)]
    values += [round(math.exp(rng.uniform(0, math.log(3.6e9)))) / 1e6 for _ in range(500)]
    for v in values:
        for scale in (2, 3, 8):
            assert bucket_index(v, scale) == exact_index(v, scale), (v, scale)


def test_agrees_with_the_sdks_own_mapping_away_from_bounds() -> None:
    rng = random.Random(5)
    for _ in range(2_000):
        v = math.exp(rng.uniform(math.log(1e-6), math.log(3600)))
        for scale in SCALES:
            mapping = LogarithmMapping(scale) if scale > 0 else ExponentMapping(scale)
            assert bucket_index(v, scale) == mapping.map_to_index(v), (v, scale)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_refuses_what_has_no_positive_bucket(bad: float) -> None:
    with pytest.raises(ValueError):
        bucket_index(bad, 3)


def test_the_scale_is_the_finest_whose_buckets_fit() -> None:
    rng = random.Random(9)
    bins = sorted((math.exp(rng.uniform(math.log(1e-3), math.log(30))), rng.randint(1, 5)) for _ in range(3_000))
    scale, offset, counts, zeros = exponential_buckets([v for v, _ in bins], [n for _, n in bins])
    assert scale == 3  # 1 ms .. 30 s is ~15 octaves: 8 buckets each fit 160, 16 do not
    assert len(counts) <= MAX_BUCKETS
    assert zeros == 0
    assert sum(counts) == sum(n for _, n in bins)
    direct = [0] * len(counts)
    for v, n in bins:  # downscaling by shifting indices equals bucketing at that scale
        direct[bucket_index(v, scale) - offset] += n
    assert counts == direct
    assert counts[0] and counts[-1]


def test_a_narrow_point_keeps_the_finest_scale_and_zeros_are_counted_apart() -> None:
    scale, offset, counts, zeros = exponential_buckets([0.0, 0.25, 0.2501], [2, 3, 4])
    assert scale == MAX_SCALE
    assert zeros == 2
    assert offset == bucket_index(0.25, MAX_SCALE)
    assert counts == [3, 4]  # 0.25 is the bound: the next value is in the next bucket
    assert exponential_buckets([], []) == (MAX_SCALE, 0, [], 0)
    with pytest.raises(ValueError):
        exponential_buckets([1.0, math.inf], [1, 1])


def test_the_whole_hdr_range_fits_at_scale_2() -> None:
    scale, _, counts, _ = exponential_buckets([1e-6, 3600.0], [1, 1])
    assert scale == 2
    assert len(counts) <= MAX_BUCKETS


def _encoded(snap: LiveSnapshot) -> object:
    resource = Resource({"service.name": "loadtest", "run": "smoke", "run_id": "smoke-1"})
    data = metrics_data(snap, attributes={"run": "smoke", "run_id": "smoke-1"}, resource=resource,
                        start_ns=1_000, now_ns=2_000)
    return encode_metrics(data)


def test_a_snapshot_becomes_cumulative_sums_exponential_histograms_and_gauges() -> None:
    snap, recs = sample_snapshot()
    request = _encoded(snap)
    kinds = {m.name: (m.WhichOneof("data"), m.unit) for m in metrics(request)}
    assert kinds == {
        "loadtest.requests": ("sum", "{request}"), "loadtest.errors": ("sum", "{request}"),
        "loadtest.chunks": ("sum", "{chunk}"), "loadtest.output_tokens": ("sum", "{token}"),
        "gen_ai.server.time_to_first_token": ("exponential_histogram", "s"),
        "gen_ai.server.time_per_output_token": ("exponential_histogram", "s"),
        "gen_ai.client.operation.duration": ("exponential_histogram", "s"),
        "loadtest.itl": ("exponential_histogram", "s"),
        "loadtest.users": ("gauge", "{user}"), "loadtest.in_flight": ("gauge", "{request}"),
        "loadtest.offered_rate": ("gauge", "{request}/s"), "loadtest.achieved_rate": ("gauge", "{request}/s"),
        "loadtest.loop_lag": ("gauge", "s"), "loadtest.saturated": ("gauge", "1"),
    }
    for m in metrics(request):
        kind = m.WhichOneof("data")
        if kind in ("sum", "exponential_histogram"):
            assert getattr(m, kind).aggregation_temporality == 2  # CUMULATIVE
        if kind == "sum":
            assert m.sum.is_monotonic
        for p in getattr(m, kind).data_points:
            assert attrs(p.attributes)["run_id"] == "smoke-1"
            assert p.time_unix_nano == 2_000
            if kind != "gauge":
                assert p.start_time_unix_nano == 1_000
            # never a percentile: no point of any kind carries one
            assert not any("p99" in k or "quantile" in k for k in attrs(p.attributes))
    ttft = by_attrs(points(request, "gen_ai.server.time_to_first_token"))
    base = (("gen_ai.operation.name", "chat"), ("run", "smoke"), ("run_id", "smoke-1"))
    assert_histogram_matches(ttft[base], recs[""]["ttft"])
    assert_histogram_matches(ttft[(*base, ("tag", "tier=free"))], recs["tier=free"]["ttft"])
    itl = by_attrs(points(request, "loadtest.itl"))
    assert_histogram_matches(itl[(("run", "smoke"), ("run_id", "smoke-1"))], recs[""]["itl"])
    gauges = {m.name: m.gauge.data_points[0] for m in metrics(request) if m.WhichOneof("data") == "gauge"}
    assert gauges["loadtest.users"].as_int == 32
    assert gauges["loadtest.offered_rate"].as_double == 12.5
    assert gauges["loadtest.loop_lag"].as_double == 0.004
    assert gauges["loadtest.saturated"].as_int == 0
    assert all(len(m.gauge.data_points) == 1 for m in metrics(request) if m.WhichOneof("data") == "gauge")


def test_no_token_counter_without_a_tokenizer_and_empty_histograms_are_points_of_zero() -> None:
    empty = LiveSeries(requests={"ok": 0, "failed": 0}, errors={}, chunks=0, output_tokens=0, histograms={})
    request = _encoded(LiveSnapshot(elapsed_s=0.5, phase="warmup", run=empty))
    names = {m.name for m in metrics(request)}
    assert "loadtest.output_tokens" not in names
    assert not points(request, "loadtest.errors")
    (p,) = points(request, "gen_ai.client.operation.duration")
    assert p.count == 0 and p.sum == 0 and not p.positive.bucket_counts
    assert not p.HasField("min") and not p.HasField("max")
