"""Several workers' figures merge exactly (issues 11 and 12): histograms bucket for bucket,
counters and per-second rows alike, equal to one collector that saw every event. Pure: no
loop, no sockets; hypothesis draws the requests and how they are split among workers."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from support.records import synthetic_request

from loadtest.metrics.collector import Collector, RequestRecord
from loadtest.metrics.figures import Figures
from loadtest.metrics.recorder import Recorder

S = 1_000_000_000
T0 = 5 * S
END = T0 + 6 * S  # the final close of every collector


def _request(rid: int, start_ms: int, ttft_ms: int, gaps_ms: list[int], outcome: str) -> RequestRecord:
    return synthetic_request(rid, start_ms, ttft_ms, gaps_ms, outcome, t0=T0)


requests = st.lists(
    st.tuples(st.integers(0, 4_500), st.integers(1, 400), st.lists(st.integers(1, 200), max_size=6),
              st.sampled_from(["ok", "ok", "ok", "failed"]), st.integers(0, 3)),
    min_size=1, max_size=60,
)


def _feed(c: Collector, recs: list[RequestRecord]) -> None:
    for r in sorted(recs, key=lambda r: r.t_stop or r.t_last):
        r.phase = c.phase_of(r.t_intended)
        c.on_sent(r)
        c.on_request(r, r.t_stop or r.t_last)
    c.on_failure("connect", "refused", T0 + 2 * S)  # one failed session step per worker
    c.close_intervals(END, final=True)


def _hists(f: Figures) -> dict[tuple[float, str], Recorder]:
    return {(snap.start_s, name): Recorder.decode(text) for snap in f.intervals for name, text in snap.histograms.items()}


@settings(max_examples=30, deadline=None)
@given(requests, st.integers(1, 4))
def test_figures_of_workers_merge_into_those_of_one_collector(draw: list, workers: int) -> None:
    recs = [_request(i + 1, *row[:4]) for i, row in enumerate(draw)]
    shards: list[list[RequestRecord]] = [[] for _ in range(workers)]
    for r, row in zip(recs, draw, strict=True):
        shards[row[4] % workers].append(r)
    one = Collector(t0_ns=T0, warmup_s=1, duration_s=4)
    _feed(one, [_request(i + 1, *row[:4]) for i, row in enumerate(draw)])
    for _ in range(workers - 1):  # the single collector sees every worker's failed step too
        one.on_failure("connect", "refused", T0 + 2 * S)
    parts = []
    for shard in shards:
        c = Collector(t0_ns=T0, warmup_s=1, duration_s=4)
        _feed(c, shard)
        # what crosses a process boundary: JSON text
        parts.append(Figures.from_plain(json.loads(json.dumps(c.export().to_plain()))))
    merged = Figures.merge(parts, warmup_s=1, window_end_s=4)
    whole = one.export()
    assert merged.counts == whole.counts
    assert (merged.errors, merged.drain, merged.failed_samples) == (whole.errors, whole.drain, whole.failed_samples)
    assert merged.chunks_per_answer == whole.chunks_per_answer
    # histograms: interval by interval, bucket for bucket (Recorder equality compares every count)
    assert _hists(merged) == _hists(whole)
    for name, rec in whole.metrics.totals.items():
        assert merged.metrics.totals[name] == rec, name
    # per-second rows: the same counters and histograms, so the same timeseries.csv
    assert merged.timeseries() == whole.timeseries()
    # error samples are pooled: distinct, at most 5 a category, each one a real message
    for cat, msgs in merged.error_samples.items():
        assert len(msgs) == len(set(msgs)) <= 5 and set(msgs) <= {"refused", "boom 0", "boom 1", "boom 2"}, cat
