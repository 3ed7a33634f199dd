"""The OTLP pusher against a real OTLP/HTTP receiver (tests/support/otlpreceiver.py, decoding
with opentelemetry-proto): what arrives equals the recorders the snapshot was built from, the
final push arrives, and a collector that is down, failing or hung is counted and warned about
once, never raised, and never holds ``finish`` much past ``timeout_s``."""

from __future__ import annotations

import time

import pytest
from support.otlpreceiver import (
    OtlpReceiver,
    assert_histogram_matches,
    attrs,
    by_attrs,
    free_port,
    points,
    sample_snapshot,
)

from loadtest.live.otlp import HISTOGRAM_NAMES, OtlpPusher
from loadtest.live.state import LIVE_METRICS, LiveSnapshot

pytestmark = pytest.mark.realtime

LABELS = {"run": "smoke", "run_id": "smoke-20260101T000000Z"}
BASE = tuple(sorted(LABELS.items()))


def _key(**extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({**LABELS, **extra}.items()))


def _check_push(request: object, snap: LiveSnapshot, recs: dict) -> None:
    """Every counter of ``snap`` and every histogram of ``recs`` in one decoded request."""
    (rm,) = request.resource_metrics  # type: ignore[attr-defined]
    resource = attrs(rm.resource.attributes)
    assert resource["service.name"] == "loadtest"
    assert resource["run"] == "smoke" and resource["run_id"] == LABELS["run_id"]
    assert resource["service.instance.id"] == LABELS["run_id"]
    for tag, series in [("", snap.run), *snap.tags.items()]:
        extra = {"tag": tag} if tag else {}
        reqs = by_attrs(points(request, "loadtest.requests"))
        for outcome, n in series.requests.items():
            assert reqs[_key(outcome=outcome, **extra)].as_int == n
        errors = by_attrs(points(request, "loadtest.errors"))
        for category, n in series.errors.items():
            assert errors[_key(**{"error.type": category}, **extra)].as_int == n
        assert by_attrs(points(request, "loadtest.chunks"))[_key(**extra)].as_int == series.chunks
        assert by_attrs(points(request, "loadtest.output_tokens"))[_key(**extra)].as_int == series.output_tokens
        for metric in LIVE_METRICS:
            name = HISTOGRAM_NAMES[metric][0]
            genai = {"gen_ai.operation.name": "chat"} if name.startswith("gen_ai.") else {}
            point = by_attrs(points(request, name))[_key(**extra, **genai)]
            assert_histogram_matches(point, recs[tag][metric])
    # the run's own series have no tag; each tag's series is labelled with it
    tags = {attrs(p.attributes).get("tag") for p in points(request, "loadtest.requests")}
    assert tags == {None, *snap.tags}
    assert by_attrs(points(request, "loadtest.users"))[BASE].as_int == snap.users


def test_the_final_push_carries_the_recorders_counts_buckets_and_mean() -> None:
    snap, recs = sample_snapshot(final=True)
    warnings: list[str] = []
    with OtlpReceiver() as rx:
        pusher = OtlpPusher(rx.url, attributes=LABELS, warn=warnings.append)
        pusher.finish(snap)  # never started: the final push alone
        (request,) = rx.received()
        pusher.finish(snap)  # idempotent: nothing more is sent
        assert len(rx.received()) == 1
    _check_push(request, snap, recs)
    (ttft,) = [p for p in points(request, "gen_ai.server.time_to_first_token") if "tag" not in attrs(p.attributes)]
    assert ttft.scale == 3  # 1 ms .. 30 s in at most 160 buckets
    assert ttft.count == 1_000 and len(ttft.positive.bucket_counts) <= 160
    assert pusher.status() == {"url": rx.url, "pushes": 1, "failed": 0, "last_error": None, "warning": None}
    assert warnings == []
    assert rx.rejected == []


def test_pushes_every_interval_only_what_is_new_then_the_final_snapshot() -> None:
    first, _ = sample_snapshot(scale=1)
    later, _ = sample_snapshot(scale=2)
    final, recs = sample_snapshot(scale=3, final=True)
    with OtlpReceiver() as rx:
        pusher = OtlpPusher(rx.url, attributes=LABELS, interval_s=0.05)
        pusher.start()
        time.sleep(0.2)
        assert rx.received() == []  # nothing given yet: nothing pushed
        pusher.update(first)
        rx.wait_for(1)
        time.sleep(0.25)
        assert len(rx.received()) == 1  # the same snapshot is not pushed again
        pusher.update(later)
        rx.wait_for(2)
        started = time.monotonic()
        pusher.finish(final)
        assert time.monotonic() - started < 1.0
        got = rx.received()
    assert len(got) == 3
    counts = [by_attrs(points(r, "loadtest.requests"))[_key(outcome="ok")].as_int for r in got]
    assert counts == [9_000, 18_000, 27_000]
    _check_push(got[-1], final, recs)
    times = [points(r, "loadtest.chunks")[0].time_unix_nano for r in got]
    starts = {p.start_time_unix_nano for r in got for p in points(r, "loadtest.chunks")}
    assert times == sorted(times) and starts == {pusher.start_ns} and pusher.start_ns <= times[0]
    assert pusher.status()["pushes"] == 3 and pusher.status()["failed"] == 0


def _wait_failed(pusher: OtlpPusher, n: int) -> None:
    deadline = time.monotonic() + 10
    while pusher.status()["failed"] < n:
        assert time.monotonic() < deadline, pusher.status()
        time.sleep(0.01)


def test_an_unreachable_collector_is_a_warning_and_each_failed_push_is_counted() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/metrics"
    warnings: list[str] = []
    # a timeout under the exporter's first backoff (0.8 .. 1.2 s): no retry, one attempt a push
    pusher = OtlpPusher(url, attributes=LABELS, interval_s=0.05, timeout_s=0.5, warn=warnings.append)
    pusher.start()
    pusher.update(sample_snapshot(scale=1)[0])
    _wait_failed(pusher, 1)
    pusher.update(sample_snapshot(scale=2)[0])
    _wait_failed(pusher, 2)
    started = time.monotonic()
    pusher.finish(sample_snapshot(scale=3)[0])
    assert time.monotonic() - started < 0.5 + 1.0
    status = pusher.status()
    assert status == {"url": url, "pushes": 0, "failed": 3, "last_error": "connection refused",
                      "warning": f"OTLP collector {url}: 3 of 3 pushes failed (connection refused)"}
    assert len(warnings) == 1 and url in warnings[0] and "connection refused" in warnings[0]
    pusher.finish(sample_snapshot()[0])  # idempotent
    assert pusher.status() == status


def test_with_the_default_timeout_an_unreachable_collector_holds_finish_at_most_that_long() -> None:
    snap, _ = sample_snapshot()
    url = f"http://127.0.0.1:{free_port()}/v1/metrics"
    warnings: list[str] = []
    pusher = OtlpPusher(url, attributes=LABELS, interval_s=0.05, warn=warnings.append)
    assert pusher.timeout_s == 2.0
    pusher.start()
    pusher.update(snap)
    time.sleep(0.2)  # a periodic push under way (its retry's backoff, if any, is cut short)
    started = time.monotonic()
    pusher.finish(snap)  # the final push: refused, one retry after ~1 s if it fits the deadline
    assert time.monotonic() - started < 2.0 + 1.0
    status = pusher.status()
    assert status["pushes"] == 0 and status["failed"] >= 1 and status["last_error"] == "connection refused"
    assert len(warnings) == 1


def test_a_collector_answering_500_is_counted_as_failed() -> None:
    snap, _ = sample_snapshot()
    warnings: list[str] = []
    with OtlpReceiver(status=500) as rx:
        pusher = OtlpPusher(rx.url, attributes=LABELS, timeout_s=1.0, warn=warnings.append)
        started = time.monotonic()
        pusher.finish(snap)
        assert time.monotonic() - started < 2.0
        assert len(rx.received()) == 1  # 500 is not retried
    status = pusher.status()
    assert (status["pushes"], status["failed"]) == (0, 1)
    assert status["last_error"] == "HTTP 500 Internal Server Error"
    assert status["warning"] == f"OTLP collector {rx.url}: 1 of 1 pushes failed (HTTP 500 Internal Server Error)"
    assert len(warnings) == 1


def test_a_collector_that_never_answers_holds_finish_no_longer_than_the_timeout() -> None:
    snap, _ = sample_snapshot()
    warnings: list[str] = []
    with OtlpReceiver(delay_s=30) as rx:
        pusher = OtlpPusher(rx.url, attributes=LABELS, interval_s=0.05, timeout_s=1.0, warn=warnings.append)
        pusher.start()
        pusher.update(snap)
        rx.wait_for(1)  # a periodic push hangs; finish comes while it waits
        started = time.monotonic()
        pusher.finish(snap)
        took = time.monotonic() - started
    assert took < 1.0 + 1.0
    status = pusher.status()
    assert status["failed"] >= 1 and status["pushes"] == 0
    assert status["last_error"] == "no answer in time"
    assert len(warnings) == 1


def test_a_bad_url_is_a_failed_push_not_an_exception() -> None:
    snap, _ = sample_snapshot()
    pusher = OtlpPusher("not a url", attributes=LABELS, timeout_s=0.5)
    pusher.finish(snap)
    status = pusher.status()
    assert status["failed"] == 1 and status["last_error"]


def test_a_snapshot_that_cannot_be_converted_is_a_failed_push_not_an_exception(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import loadtest.live.otlp as otlp

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("ttft")

    monkeypatch.setattr(otlp, "metrics_data", broken)
    warnings: list[str] = []
    with OtlpReceiver() as rx:
        pusher = OtlpPusher(rx.url, attributes=LABELS, warn=warnings.append)
        pusher.finish(sample_snapshot()[0])
        assert rx.received() == []
    status = pusher.status()
    assert status["failed"] == 1 and status["last_error"] == "snapshot not converted: KeyError: 'ttft'"
    assert len(warnings) == 1
