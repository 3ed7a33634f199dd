"""The live view (issue 21): what the coordinator publishes each second adds up exactly, from
the workers' streamed ticks, and the final snapshot equals the merged run that summary.json is
written from. The Prometheus text of a snapshot holds the same numbers. Pure: no sockets."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from support.records import synthetic_request

from loadtest.engine.result import Progress, RunResult
from loadtest.live.prometheus import BUCKETS_S, render_text
from loadtest.live.state import LIVE_METRICS, LiveHistogram, LiveState
from loadtest.metrics.collector import Collector, RequestRecord
from loadtest.metrics.figures import Figures
from loadtest.metrics.recorder import Recorder
from loadtest.metrics.tags import MAX_VALUES_PER_KEY
from loadtest.runner.fleet import WorkerView

S = 1_000_000_000
T0 = 5 * S


def _request(rid: int, start_ms: int, ttft_ms: int, gaps_ms: list[int], outcome: str, tag: str) -> RequestRecord:
    return synthetic_request(rid, start_ms, ttft_ms, gaps_ms, outcome, t0=T0, tags=(tag, "step=gen1"))


PROGRESS = Progress(elapsed_s=1, total_s=6, active_sessions=3, in_flight=2, completed=0, failed=0, errors=0,
                    ttft_p50_ms=None, ttft_p99_ms=None, phase="measure")

requests = st.lists(
    st.tuples(st.integers(0, 4_500), st.integers(1, 400), st.lists(st.integers(1, 200), max_size=5),
              st.sampled_from(["ok", "ok", "ok", "failed"]), st.sampled_from(["kind=a", "kind=b"]),
              st.integers(0, 3)),
    min_size=1, max_size=50,
)


def _stream(draw: list, workers: int) -> tuple[LiveState, list, Figures, list[Figures]]:
    """Workers' collectors fed request by request, ticked each second like a worker; the
    coordinator's views take each tick, the live state folds the views after each second.
    Also the merged run (what summary.json is written from) and each worker's final figures."""
    collectors = [Collector(t0_ns=T0, warmup_s=1, duration_s=4) for _ in range(workers)]
    views = [WorkerView(i) for i in range(workers)]
    recs = sorted((_request(i + 1, *row[:5]) for i, row in enumerate(draw)), key=lambda r: r.t_stop or r.t_last)
    owner = {i + 1: row[5] % workers for i, row in enumerate(draw)}
    state, snaps = LiveState(), []
    pending = list(recs)
    for second in range(1, 8):
        now = T0 + second * S
        while pending and (pending[0].t_stop or pending[0].t_last) < now:
            r = pending.pop(0)
            c = collectors[owner[r.request_id]]
            r.phase = c.phase_of(r.t_intended)
            c.on_sent(r)
            c.on_request(r, r.t_stop or r.t_last)
        for c, v in zip(collectors, views, strict=True):
            if second == 7:
                c.close_intervals(now, final=True)
            c.tick(now, active_sessions=1, in_flight=0)
            v.on_tick(c.take_partial(now), PROGRESS)
        snaps.append(state.update([v.partial for v in views], PROGRESS))
    merged = Figures.merge([c.export() for c in collectors], warmup_s=1, window_end_s=4)
    return state, snaps, merged, [c.export() for c in collectors]


def _result(f: Figures) -> RunResult:
    return RunResult(scenario=None, figures=f, target="", started_at="", duration_s=7, measure_s=f.window_s)


@settings(max_examples=10, deadline=None)
@given(requests, st.integers(1, 3))
def test_the_live_view_adds_up_to_the_merged_run(draw: list, workers: int) -> None:
    state, snaps, merged, finals = _stream(draw, workers)
    final = state.final(_result(merged), finals)
    totals = merged.metrics
    for m in LIVE_METRICS:
        rec = totals.totals[m]
        h = final.run.histograms[m]
        assert h.count == rec.count
        if rec.count:
            assert h.sum_us / h.count == rec.mean_us  # summary.json's mean, to the bit
        # the last streamed second has every interval: live == final
        assert snaps[-1].run.histograms[m] == h
    assert final.run.requests["ok"] == merged.completed
    assert final.run.requests["failed"] == merged.failed
    assert final.run.errors.get("server_error", 0) == merged.errors.get("server_error", 0)
    assert snaps[-1].run.requests == final.run.requests
    # counters and histograms never go down from one second to the next
    for a, b in itertools.pairwise(snaps):
        assert all(b.run.requests[o] >= a.run.requests[o] for o in a.run.requests)
        assert all(b.run.histograms[m].count >= a.run.histograms[m].count for m in LIVE_METRICS)
    for tag, tf in merged.tags.items():
        assert final.tags[tag].requests["ok"] == tf.counts.get("completed", 0)
        assert final.tags[tag].histograms["ttft"].count == tf.metrics().totals["ttft"].count


def test_a_key_keeps_at_most_the_cap_of_values_live_too() -> None:
    state = LiveState()
    labels = {state.label(f"user=u{i}") for i in range(MAX_VALUES_PER_KEY + 30)}
    assert len(labels) == MAX_VALUES_PER_KEY + 1
    assert "user=other" in labels
    assert state.label("user=u3") == "user=u3"  # a value kept stays itself
    assert state.label("user=u150") == "user=other"


def test_prometheus_text_holds_the_snapshot() -> None:
    rng = random.Random(7)
    rec = Recorder()
    values_us = [round(rng.lognormvariate(11, 1.5)) for _ in range(2_000)]  # ~60 ms median, 1 ms .. minutes
    for v in values_us:
        rec.record_us(v)
    state, _, merged, finals = _stream([(100 * i, 50, [10, 20], "ok", "kind=a", 0) for i in range(30)], 1)
    snap = state.final(_result(merged), finals)
    snap = type(snap)(**{**snap.__dict__, "run": type(snap.run)(**{**snap.run.__dict__, "histograms": {
        **snap.run.histograms, "ttft": LiveHistogram.of(rec)}})})
    text = render_text(snap, {"run": "r", "run_id": 'id"1\\'}).decode()  # a label value that needs escaping
    families = {f.name: f for f in text_string_to_metric_families(text)}  # prometheus-client's own parser
    ttft = [s for s in families["loadtest_ttft_seconds"].samples if "tag" not in s.labels]
    assert all(s.labels["run"] == "r" and s.labels["run_id"] == 'id"1\\' for s in ttft)
    buckets = [(s.labels["le"], s.value) for s in ttft if s.name.endswith("_bucket")]
    assert [le for le, _ in buckets] == [*(repr(b) for b in BUCKETS_S), "+Inf"]
    counts = [n for _, n in buckets]
    assert counts == sorted(counts) and counts[-1] == len(values_us)
    for bound, n in zip(BUCKETS_S, counts, strict=False):
        exact = sum(v <= bound * 1e6 for v in values_us)
        near = sum(abs(v - bound * 1e6) <= bound * 1e6 * 0.002 for v in values_us)  # HdrHistogram's 3 digits
        assert abs(n - exact) <= near, bound
    (count,) = [s.value for s in ttft if s.name.endswith("_count")]
    (total,) = [s.value for s in ttft if s.name.endswith("_sum")]
    assert count == len(values_us)
    assert total / count * 1e6 == pytest.approx(rec.mean_us, rel=1e-12)
    ok = [s for s in families["loadtest_requests"].samples if s.labels["outcome"] == "ok"]
    assert {s.labels.get("tag", "") for s in ok} == {"", "kind=a", "step=gen1"}
    assert merged.completed == 20 and all(s.value == merged.completed for s in ok)  # those intended after warmup
    gauges = {name: families[name].samples[0].value for name in ("loadtest_users", "loadtest_saturated")}
    assert gauges == {"loadtest_users": 0.0, "loadtest_saturated": 0.0}
    errors = {s.labels["category"] for s in families["loadtest_errors"].samples if "tag" not in s.labels}
    assert "server_error" in errors and "unknown_events" in errors
