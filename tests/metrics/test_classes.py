"""Request classes in the collector (issue 19): per-tag figures follow the run's own
definitions, merge exactly across workers, and stay bounded. Pure: no loop, no sockets."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from loadtest.metrics.collector import Collector, RequestRecord
from loadtest.metrics.figures import Figures
from loadtest.metrics.goodput import GoodputRule
from loadtest.metrics.recorder import Recorder
from loadtest.metrics.tags import MAX_VALUES_PER_KEY, TAG_METRICS

S = 1_000_000_000
MS = 1_000_000
T0 = 5 * S
END = T0 + 6 * S
RULE = GoodputRule(ttft_ms=150, tpot_ms=60)


def _request(rid: int, start_ms: int, ttft_ms: int, gaps_ms: list[int], outcome: str, web: bool) -> RequestRecord:
    t_send = T0 + start_ms * MS
    r = RequestRecord(request_id=rid, user=rid % 7, t_intended=t_send, t_send=t_send)
    r.t_first = t_send + ttft_ms * MS
    r.gaps_ns = [g * MS for g in gaps_ms]
    r.chunks = 1 + len(gaps_ms)
    r.texts = ["ab "] * r.chunks
    r.chars = 3 * r.chunks
    r.t_last = r.t_first + sum(r.gaps_ns)
    r.outcome = outcome
    r.tags = ("step=ask", f"web_search={'true' if web else 'false'}")
    if outcome == "ok":
        r.t_stop = r.t_last
    else:
        r.error_category, r.error_message = "server_error", "boom"
    return r


def _feed(c: Collector, recs: list[RequestRecord]) -> None:
    for r in sorted(recs, key=lambda r: r.t_stop or r.t_last):
        r.phase = c.phase_of(r.t_intended)
        c.on_sent(r)
        c.on_request(r, r.t_stop or r.t_last)
    c.close_intervals(END, final=True)


requests = st.lists(
    st.tuples(st.integers(0, 4_500), st.integers(1, 400), st.lists(st.integers(1, 200), max_size=6),
              st.sampled_from(["ok", "ok", "ok", "failed"]), st.booleans(), st.integers(0, 3)),
    min_size=1, max_size=60,
)


@settings(max_examples=30, deadline=None)
@given(requests)
def test_a_tags_figures_are_the_runs_figures_of_its_requests(draw: list) -> None:
    """by_tag[web_search=true] is what a run of only those requests would report: the same
    counters (window rates' numerators included) and the same histograms, bucket for bucket."""
    whole = Collector(t0_ns=T0, warmup_s=1, duration_s=4, goodput=RULE)
    _feed(whole, [_request(i + 1, *row[:5]) for i, row in enumerate(draw)])
    only = Collector(t0_ns=T0, warmup_s=1, duration_s=4, goodput=RULE)
    _feed(only, [_request(i + 1, *row[:5]) for i, row in enumerate(draw) if row[4]])
    tf = whole.export().tags.get("web_search=true")
    if tf is None:
        assert only.completed + only.failed == 0
        return
    for name in ("completed", "failed", "ok_in_window", "chunks", "chars", "good", "good_in_window"):
        assert tf.counts[name] == getattr(only, name), name
    mine, theirs = tf.metrics().totals, only.metrics.totals
    for name in TAG_METRICS:
        assert mine[name] == theirs[name], name
    # and the two classes of a key add up to the run
    tf_no = whole.export().tags.get("web_search=false")
    assert tf.offered + (tf_no.offered if tf_no else 0) == whole.completed + whole.failed


@settings(max_examples=25, deadline=None)
@given(requests)
def test_a_tag_every_request_carries_hands_out_the_runs_own_histograms(draw: list) -> None:
    """``step=ask`` is on every request: kept as a mirror (no histograms of its own, the
    run's intervals handed out), its figures are those it would have had kept apart."""
    kept = Collector(t0_ns=T0, warmup_s=1, duration_s=4, goodput=RULE)
    _feed(kept, [_request(i + 1, *row[:5]) for i, row in enumerate(draw)])
    mirrored = Collector(t0_ns=T0, warmup_s=1, duration_s=4, goodput=RULE, mirror_tags=frozenset({"step=ask"}))
    _feed(mirrored, [_request(i + 1, *row[:5]) for i, row in enumerate(draw)])
    assert "step=ask" not in mirrored.tags.metrics  # nothing recorded twice
    a, b = kept.export().tags["step=ask"], mirrored.export().tags["step=ask"]
    assert a.counts == b.counts and a.errors == b.errors
    for name in TAG_METRICS:
        assert a.metrics().totals[name] == b.metrics().totals[name], name
    hist = {(s.start_s, n): Recorder.decode(h) for s in a.intervals for n, h in s.histograms.items()}
    assert hist == {(s.start_s, n): Recorder.decode(h) for s in b.intervals for n, h in s.histograms.items()}


@settings(max_examples=25, deadline=None)
@given(requests, st.integers(2, 4))
def test_tags_of_workers_merge_into_those_of_one_collector(draw: list, workers: int) -> None:
    one = Collector(t0_ns=T0, warmup_s=1, duration_s=4, goodput=RULE)
    _feed(one, [_request(i + 1, *row[:5]) for i, row in enumerate(draw)])
    shards: list[list[RequestRecord]] = [[] for _ in range(workers)]
    for i, row in enumerate(draw):
        shards[row[5] % workers].append(_request(i + 1, *row[:5]))
    parts = []
    for shard in shards:
        c = Collector(t0_ns=T0, warmup_s=1, duration_s=4, goodput=RULE)
        _feed(c, shard)
        parts.append(Figures.from_plain(json.loads(json.dumps(c.export().to_plain()))))
    merged = Figures.merge(parts, warmup_s=1, window_end_s=4).tags
    whole = one.export().tags
    assert set(merged) == set(whole)
    for tag, tf in whole.items():
        assert merged[tag].counts == tf.counts and merged[tag].errors == tf.errors, tag
        hist = {(s.start_s, n): Recorder.decode(h) for s in tf.intervals for n, h in s.histograms.items()}
        got = {(s.start_s, n): Recorder.decode(h) for s in merged[tag].intervals for n, h in s.histograms.items()}
        assert got == hist, tag


def _tagged(rid: int, value: str) -> RequestRecord:
    r = _request(rid, 1_500 + rid, 50, [10], "ok", False)
    r.tags = (f"user={value}",)
    return r


def test_a_key_keeps_at_most_100_values_and_folds_the_rest_into_other() -> None:
    c = Collector(t0_ns=T0, warmup_s=1, duration_s=4)
    n = MAX_VALUES_PER_KEY + 50
    _feed(c, [_tagged(i, f"u{i}") for i in range(n)] + [_tagged(n + i, f"u{i}") for i in range(n)])
    f = c.export()
    assert len(f.tags) == MAX_VALUES_PER_KEY + 1 and "user=other" in f.tags
    assert f.tags["user=other"].counts["completed"] == 2 * 50  # both requests of each folded value
    assert f.tags_folded == {"user": 50}
    assert sum(tf.counts["completed"] for tf in f.tags.values()) == 2 * n


def test_workers_that_met_different_values_still_merge_to_at_most_100() -> None:
    parts = []
    for w in range(2):
        c = Collector(t0_ns=T0, warmup_s=1, duration_s=4)
        _feed(c, [_tagged(i, f"w{w}-{i}") for i in range(80)] + [_tagged(100 + i, "shared") for i in range(3)])
        parts.append(c.export())
    merged = Figures.merge(parts, warmup_s=1, window_end_s=4)
    assert len(merged.tags) == MAX_VALUES_PER_KEY
    assert merged.tags["user=shared"].counts["completed"] == 6  # the busiest value is kept
    total = sum(tf.counts["completed"] for tf in merged.tags.values())
    assert total == 2 * 83
    assert merged.tags_folded == {"user": (2 * 80 + 1) - (MAX_VALUES_PER_KEY - 1)}  # 161 distinct, 99 kept
    other = merged.tags["user=other"]
    assert other.metrics().totals["ttft"].count == other.counts["completed"]


def test_goodput_counts_completed_requests_within_every_limit() -> None:
    rule = GoodputRule(ttft_ms=100, tpot_ms=20, e2e_ms=300)
    fast = _request(1, 1_500, 50, [10, 10], "ok", False)
    slow_first = _request(2, 1_500, 150, [10], "ok", False)
    slow_stream = _request(3, 1_500, 50, [30, 30], "ok", False)
    long = _request(4, 1_500, 90, [19] * 12, "ok", False)  # e2e 318 ms
    one_chunk = _request(5, 1_500, 50, [], "ok", False)  # no TPOT: not held against it
    failed = _request(6, 1_500, 10, [1], "failed", False)
    assert [rule.good(r) for r in (fast, slow_first, slow_stream, long, one_chunk, failed)] == [
        True, False, False, False, True, False]
    late = _request(7, 1_500, 50, [10], "ok", False)
    late.t_intended -= 80 * MS  # sent 80 ms after its schedule: TTFT 130 ms from the intended time
    assert not rule.good(late)
