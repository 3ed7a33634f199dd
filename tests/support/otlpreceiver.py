"""A small OTLP/HTTP metrics receiver for tests, and the live snapshots sent to it.

:class:`OtlpReceiver` serves ``POST /v1/metrics`` (``application/x-protobuf``) on 127.0.0.1 at a
free port from a thread, decodes every request with ``opentelemetry-proto`` and keeps it; it
answers 200 with an empty ``ExportMetricsServiceResponse``, or ``status`` (a failing collector),
after ``delay_s`` (a hung one). :func:`points` and :func:`attrs` read the decoded requests;
:func:`sample_snapshot` builds a :class:`~loadtest.live.state.LiveSnapshot` from real
:class:`~loadtest.metrics.recorder.Recorder` s with known values.
"""

from __future__ import annotations

import functools
import math
import random
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from decimal import Decimal, localcontext
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from loadtest.live.state import LIVE_METRICS, LiveHistogram, LiveSeries, LiveSnapshot
from loadtest.metrics.recorder import Recorder

__all__ = ["OtlpReceiver", "assert_histogram_matches", "attrs", "by_attrs", "exact_index", "free_port", "metrics",
           "points", "sample_snapshot", "spread_recorder"]


class OtlpReceiver:
    """``with OtlpReceiver() as rx: … rx.url … rx.requests``: every request decoded, in order."""

    def __init__(self, *, status: int = 200, delay_s: float = 0.0) -> None:
        self.status = status
        self.delay_s = delay_s
        self.requests: list[ExportMetricsServiceRequest] = []
        self.rejected: list[str] = []  # requests that were not OTLP metrics (path, content type)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="otlp-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1/metrics"

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()  # a delayed answer stops waiting
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def received(self) -> list[ExportMetricsServiceRequest]:
        with self._lock:
            return list(self.requests)

    def wait_for(self, n: int, timeout_s: float = 10.0) -> list[ExportMetricsServiceRequest]:
        """The requests once at least ``n`` have arrived (AssertionError after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.received()
            if len(got) >= n:
                return got
            time.sleep(0.01)
        raise AssertionError(f"{len(self.received())} OTLP requests arrived, expected {n}")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                kind = self.headers.get("Content-Type", "")
                if self.path != "/v1/metrics" or kind != "application/x-protobuf":
                    with receiver._lock:
                        receiver.rejected.append(f"{self.path} {kind}")
                    self._answer(404, b"")
                    return
                request = ExportMetricsServiceRequest()
                request.ParseFromString(body)
                with receiver._lock:
                    receiver.requests.append(request)
                if receiver.delay_s:
                    receiver._closing.wait(receiver.delay_s)
                if receiver.status == 200:
                    self._answer(200, ExportMetricsServiceResponse().SerializeToString())
                else:
                    self._answer(receiver.status, b"")

            def _answer(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (a hung collector's test)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler


def free_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def attrs(kvs: Any) -> dict[str, Any]:
    """An OTLP attribute list as a dict (string, int, double or bool values)."""
    out: dict[str, Any] = {}
    for kv in kvs:
        assert isinstance(kv, KeyValue)
        out[kv.key] = getattr(kv.value, kv.value.WhichOneof("value") or "string_value")
    return out


def points(request: ExportMetricsServiceRequest, name: str) -> list[Any]:
    """Every data point of metric ``name`` in ``request`` (of whichever kind it is)."""
    out: list[Any] = []
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    kind = metric.WhichOneof("data")
                    out += list(getattr(metric, kind).data_points)
    return out


def metrics(request: ExportMetricsServiceRequest) -> Iterator[Any]:
    """Every metric of ``request``."""
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            yield from sm.metrics


def spread_recorder(seed: int, n: int, lo_us: float = 1_000, hi_us: float = 30_000_000) -> Recorder:
    """A recorder of ``n`` values log-uniform in ``lo_us .. hi_us`` (default 1 ms .. 30 s)."""
    rng = random.Random(seed)
    rec = Recorder()
    for _ in range(n):
        rec.record_us(round(math.exp(rng.uniform(math.log(lo_us), math.log(hi_us)))))
    return rec


def sample_snapshot(*, seed: int = 1, scale: int = 1, tokenized: bool = True,
                    final: bool = False) -> tuple[LiveSnapshot, dict[str, dict[str, Recorder]]]:
    """A snapshot of a run (and its tag ``tier=free``) from recorders with known values, and the
    recorders: ``{"": run's, "tier=free": the tag's}`` by metric. ``scale`` multiplies the counts
    (a later snapshot of the same run)."""
    recs: dict[str, dict[str, Recorder]] = {
        "": {m: spread_recorder(seed + i, 1_000 * scale) for i, m in enumerate(LIVE_METRICS)},
        "tier=free": {m: spread_recorder(seed + 10 + i, 100 * scale, 5_000, 2_000_000) for i, m in enumerate(LIVE_METRICS)},
    }

    def series(tag: str, k: int) -> LiveSeries:
        return LiveSeries(
            requests={"ok": 900 * k, "failed": 60 * k, "dropped": 5 * k, "cancelled": 0, "abandoned": 2 * k},
            errors={"timeout": 40 * k, "server_error": 20 * k}, chunks=12_345 * k, output_tokens=23_456 * k,
            histograms={m: LiveHistogram.of(r) for m, r in recs[tag].items()})

    snap = LiveSnapshot(elapsed_s=10.0 * scale, phase="done" if final else "measure", run=series("", 10 * scale),
                        tags={"tier=free": series("tier=free", scale)}, users=32, in_flight=7,
                        offered_rate=12.5, achieved_rate=12.25, loop_lag_s=0.004, saturated=False,
                        tokenized=tokenized, final=final)
    return snap, recs


def by_attrs(pts: list[Any]) -> Mapping[tuple[tuple[str, Any], ...], Any]:
    """Points keyed by their attributes, sorted (``(("outcome", "ok"), ("run", …), …)``)."""
    return {tuple(sorted(attrs(p.attributes).items())): p for p in pts}


@functools.cache
def _bound(k: int, scale: int) -> Decimal:
    """``2 ** (k / 2**scale)`` to 80 digits (exact when the exponent is an integer)."""
    with localcontext() as ctx:
        ctx.prec = 80
        exponent = Decimal(k) / Decimal(2) ** scale
        return Decimal(2) ** exponent


def exact_index(value: float, scale: int) -> int:
    """The bucket ``(base**k, base**(k+1)]`` holding ``value``, decided on 80-digit bounds: the
    OTLP definition, independent of :func:`loadtest.live.otlp.bucket_index`."""
    v = Decimal(value)  # a float converts exactly
    k = math.floor(math.log2(value) * 2.0**scale)
    while not _bound(k, scale) < v:
        k -= 1
    while v > _bound(k + 1, scale):
        k += 1
    return k


def assert_histogram_matches(point: Any, rec: Recorder) -> None:
    """An OTLP exponential histogram point carries ``rec``: its count, its mean to 1e-9, every
    HdrHistogram bin in the bucket whose bounds hold it, its min and max."""
    bins = rec.bins()
    assert point.count == rec.count
    assert point.zero_count + sum(point.positive.bucket_counts) == point.count
    assert not point.negative.bucket_counts
    mean_us = rec.mean_us
    assert mean_us is not None
    assert point.sum / point.count * 1e6 == pytest.approx(mean_us, rel=1e-9, abs=0)
    expected = [0] * len(point.positive.bucket_counts)
    for value_us, n in bins:
        i = exact_index(value_us / 1e6, point.scale) - point.positive.offset
        assert 0 <= i < len(expected), f"{value_us} µs falls outside the point's buckets"
        expected[i] += n
    assert list(point.positive.bucket_counts) == expected
    assert point.min == bins[0][0] / 1e6
    assert point.max == bins[-1][0] / 1e6
