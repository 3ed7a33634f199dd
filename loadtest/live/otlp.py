"""Live metrics pushed over OTLP/HTTP (``--otlp URL``, a scenario's ``outputs: {otlp: …}``).

A daemon thread pushes the latest :class:`~loadtest.live.state.LiveSnapshot` every
``interval_s`` seconds, and :meth:`OtlpPusher.finish` pushes the final one (the run's merged
figures, as summary.json) once more. The coordinator only hands snapshots over
(:meth:`OtlpPusher.update` stores a reference); converting and sending happen on the thread, so
the workers' hot path never sees OTLP. Nothing is recorded into an SDK instrument: the
snapshot's counters and cumulative histograms are turned into the SDK's data model
(``MetricsData``) directly and handed to its OTLP/HTTP exporter.

Metrics (cumulative temporality, start = the pusher's creation):

- exponential histograms, seconds: ``gen_ai.server.time_to_first_token`` (ttft),
  ``gen_ai.server.time_per_output_token`` (tpot), ``gen_ai.client.operation.duration`` (e2e),
  the three with ``gen_ai.operation.name="chat"``; ``loadtest.itl`` (every gap between chunks);
- monotonic sums: ``loadtest.requests{outcome}``, ``loadtest.errors{error.type}`` (the error
  category), ``loadtest.chunks``, ``loadtest.output_tokens`` (only with a tokenizer);
- gauges (the run only): ``loadtest.users``, ``loadtest.in_flight``, ``loadtest.offered_rate``,
  ``loadtest.achieved_rate``, ``loadtest.loop_lag`` (s), ``loadtest.saturated`` (0/1).

Every point carries the pusher's ``attributes`` (``run``, ``run_id``), which are also on the
Resource (with ``service.name="loadtest"``, ``service.instance.id=run_id``). A tag's series carry
``tag="key=value"`` too; the run's own have no ``tag``. Percentiles are never exported.

Exponential buckets: each HdrHistogram bin (its median-equivalent value, in seconds) goes to the
bucket ``(base**i, base**(i+1)]``, ``base = 2**2**-scale``, computed exactly
(:func:`bucket_index`). The scale is the largest up to :data:`MAX_SCALE` whose buckets span the
point's values in at most :data:`MAX_BUCKETS` (the SDK's default 160): scale 8 for a narrow
point, 3 for 1 ms .. 30 s; a cumulative point's scale only goes down as its range grows.

A collector that cannot be reached or refuses a push is counted (:meth:`OtlpPusher.status`,
summary.json ``live.otlp``) and reported once through ``warn``, never raised; the exporter's own
log line per failed push is filtered out. Each push is bounded by ``timeout_s``: the exporter
(opentelemetry-exporter-otlp-proto-http 1.45) retries a connection error, 429, 502, 503 or 504
after a backoff of 1 s, 2 s, 4 s … (±20 %, or Retry-After) only while the backoff ends before
the deadline ``timeout_s`` after the push began, and each attempt gets the time left (with 2 s:
a refused connection is retried once, ~1 s later; 500 is not retried). :meth:`OtlpPusher.finish`
shuts the thread's exporter down, which ends a backoff under way at once (the client waits on
its shutdown event), and shares one deadline of ``timeout_s`` between waiting for a push under
way and the final push (at least 0.25 s for the latter).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import requests
from opentelemetry.exporter.otlp.proto.http import metric_exporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Metric,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from loadtest.live.state import LIVE_METRICS, LiveHistogram, LiveSeries, LiveSnapshot
from loadtest.version import __version__

__all__ = ["HISTOGRAM_NAMES", "MAX_BUCKETS", "MAX_SCALE", "OtlpPusher", "bucket_index", "exponential_buckets",
           "metrics_data"]

#: the finest scale used: Prometheus native histograms' finest (buckets 0.27 % wide, about
#: HdrHistogram's own 3 significant digits); finer would invent precision
MAX_SCALE = 8
#: buckets per point at most (the SDK's default ``max_size``)
MAX_BUCKETS = 160
#: LIVE_METRICS → (OTLP name, description); GenAI semantic conventions where one fits
HISTOGRAM_NAMES: dict[str, tuple[str, str]] = {
    "ttft": ("gen_ai.server.time_to_first_token", "Time to first token, from the intended send time"),
    "itl": ("loadtest.itl", "Gaps between consecutive non-empty chunks"),
    "tpot": ("gen_ai.server.time_per_output_token", "Time per output chunk of each completed answer"),
    "e2e": ("gen_ai.client.operation.duration", "Whole answer, from the intended send time to its stop"),
}
_GEN_AI = {"gen_ai.operation.name": "chat"}
_CUMULATIVE = AggregationTemporality.CUMULATIVE
_UNSET: Any = None  # an empty point's min and max: proto's optional fields left unset
_MIN_FINAL_TIMEOUT_S = 0.25  # the final push's floor when a hung push used up finish's deadline


def bucket_index(value: float, scale: int) -> int:
    """The index ``i`` of the exponential bucket ``(base**i, base**(i+1)]`` holding ``value > 0``,
    ``base = 2**2**-scale``, as the OTLP data model defines it (an exact power of two is the upper
    bound of its bucket), exact also next to a bound (``0 < scale <= 16``: checked in integers)."""
    if not (0 < value < math.inf):
        raise ValueError(f"an exponential bucket needs a positive finite value, not {value!r}")
    mantissa, exp = math.frexp(value)  # value = mantissa * 2**exp, 0.5 <= mantissa < 1
    if scale <= 0:
        below = exp - 2 if mantissa == 0.5 else exp - 1  # ceil(log2(value)) - 1
        return below >> -scale
    if mantissa == 0.5:
        return ((exp - 1) << scale) - 1
    x = math.log2(value) * (1 << scale)
    index = math.ceil(x) - 1
    if abs(x - round(x)) < 1e-6:  # next to a bound, beyond log2's rounding: decide exactly
        while not _above(value, index, scale):
            index -= 1
        while _above(value, index + 1, scale):
            index += 1
    return index


def _above(value: float, index: int, scale: int) -> bool:
    """``value > 2 ** (index / 2**scale)``, exactly: ``value ** 2**scale > 2 ** index`` in integers."""
    num, den = value.as_integer_ratio()  # den is a power of two
    shift = index + ((den.bit_length() - 1) << scale)
    return shift < 0 or num ** (1 << scale) > 1 << shift


def _indices(values: npt.NDArray[np.float64], scale: int) -> npt.NDArray[np.int64]:
    """:func:`bucket_index` of every value, vectorized: log2 in numpy, the few values next to a
    bound (within 1e-6 of a bucket's width, far beyond log2's rounding) decided exactly."""
    if scale <= 0:
        return np.array([bucket_index(float(v), scale) for v in values], dtype=np.int64)
    x = np.log2(values) * float(1 << scale)
    out = np.ceil(x).astype(np.int64) - 1
    for j in np.flatnonzero(np.abs(x - np.rint(x)) < 1e-6).tolist():
        out[j] = bucket_index(float(values[j]), scale)
    return out


def exponential_buckets(values: npt.ArrayLike, counts: npt.ArrayLike, *, max_scale: int = MAX_SCALE,
                        max_buckets: int = MAX_BUCKETS) -> tuple[int, int, list[int], int]:
    """``(scale, offset, bucket_counts, zero_count)`` of ``values`` seen ``counts`` times: the
    largest scale up to ``max_scale`` at which the positive buckets fit ``max_buckets``."""
    v = np.asarray(values, dtype=np.float64)
    n = np.asarray(counts, dtype=np.int64)
    if not np.isfinite(v).all() or (v < 0).any():
        raise ValueError("exponential buckets need finite values >= 0")
    positive = v > 0
    zeros = int(n[~positive].sum())
    v, n = v[positive], n[positive]
    if not v.size:
        return max_scale, 0, [], zeros
    index = _indices(v, max_scale)
    lo, hi = int(index.min()), int(index.max())
    shift = 0  # one scale down halves the index (exactly: a bucket is two buckets of the scale above)
    while (hi >> shift) - (lo >> shift) >= max_buckets:
        shift += 1
    offset = lo >> shift
    out = np.zeros((hi >> shift) - offset + 1, dtype=np.int64)
    np.add.at(out, (index >> shift) - offset, n)
    return max_scale - shift, offset, [int(c) for c in out], zeros


def _histogram_point(h: LiveHistogram, attrs: Mapping[str, str], start_ns: int,
                     now_ns: int) -> ExponentialHistogramDataPoint:
    values_us, n = h.arrays
    scale, offset, counts, zeros = exponential_buckets(values_us / 1e6, n)  # as v / 1e6 in Python
    lo, hi = h.min_us, h.max_us
    # LiveHistogram's count and sum_us, in int64: exact below 2**63 µs summed (292,000 years)
    count, sum_us = int(n.sum()), int((values_us * n).sum())
    return ExponentialHistogramDataPoint(
        attributes=dict(attrs), start_time_unix_nano=start_ns, time_unix_nano=now_ns,
        count=count, sum=sum_us / 1e6, scale=scale, zero_count=zeros,
        positive=Buckets(offset=offset, bucket_counts=counts), negative=Buckets(offset=0, bucket_counts=[]),
        flags=0, min=lo / 1e6 if lo is not None else _UNSET, max=hi / 1e6 if hi is not None else _UNSET,
    )


def _number(attrs: Mapping[str, str], value: int | float, start_ns: int, now_ns: int) -> NumberDataPoint:
    return NumberDataPoint(attributes=dict(attrs), start_time_unix_nano=start_ns, time_unix_nano=now_ns,
                           value=value)


def _sum(name: str, unit: str, description: str, points: list[NumberDataPoint]) -> Metric:
    return Metric(name=name, description=description, unit=unit,
                  data=Sum(data_points=points, aggregation_temporality=_CUMULATIVE, is_monotonic=True))


def metrics_data(snap: LiveSnapshot, *, attributes: Mapping[str, str], resource: Resource,
                 start_ns: int, now_ns: int) -> MetricsData:
    """One snapshot in the SDK's data model, ready for any OTLP exporter."""
    series: list[tuple[dict[str, str], LiveSeries]] = [(dict(attributes), snap.run)]
    series += [({**attributes, "tag": tag}, s) for tag, s in sorted(snap.tags.items())]

    def counter(name: str, unit: str, description: str,
                values: Callable[[LiveSeries], Iterable[tuple[dict[str, str], int]]]) -> Metric:
        points = [_number({**attrs, **extra}, n, start_ns, now_ns) for attrs, s in series for extra, n in values(s)]
        return _sum(name, unit, description, points)

    metrics = [
        counter("loadtest.requests", "{request}", "Requests of the measured cohort, by outcome",
                lambda s: (({"outcome": o}, n) for o, n in s.requests.items())),
        counter("loadtest.errors", "{request}", "Failed requests, by error category",
                lambda s: (({"error.type": c}, n) for c, n in sorted(s.errors.items()))),
        counter("loadtest.chunks", "{chunk}", "Output chunks received inside the measured window",
                lambda s: [({}, s.chunks)]),
    ]
    if snap.tokenized:
        metrics.append(counter("loadtest.output_tokens", "{token}", "Output tokens of the answers",
                               lambda s: [({}, s.output_tokens)]))
    for metric in LIVE_METRICS:
        name, description = HISTOGRAM_NAMES[metric]
        extra = _GEN_AI if name.startswith("gen_ai.") else {}
        points = [_histogram_point(s.histograms.get(metric, LiveHistogram()), {**attrs, **extra}, start_ns, now_ns)
                  for attrs, s in series]
        metrics.append(Metric(name=name, description=description, unit="s",
                              data=ExponentialHistogram(data_points=points, aggregation_temporality=_CUMULATIVE)))
    gauges: list[tuple[str, str, str, int | float]] = [
        ("loadtest.users", "{user}", "Active sessions", snap.users),
        ("loadtest.in_flight", "{request}", "Requests waiting for their answer", snap.in_flight),
        ("loadtest.offered_rate", "{request}/s", "Requests offered in the last settled second", snap.offered_rate),
        ("loadtest.achieved_rate", "{request}/s", "Requests sent in the last settled second", snap.achieved_rate),
        ("loadtest.loop_lag", "s", "Worst event-loop lag of any worker in the last settled second",
         snap.loop_lag_s),
        ("loadtest.saturated", "1", "1 when the generator, not the target, was the bottleneck",
         int(snap.saturated)),
    ]
    base = dict(attributes)
    for name, unit, description, value in gauges:
        metrics.append(Metric(name=name, description=description, unit=unit,
                              data=Gauge(data_points=[_number(base, value, start_ns, now_ns)])))
    metrics = [m for m in metrics if m.data.data_points]  # no errors yet: no metric (OTLP has no empty one)
    scope = InstrumentationScope("loadtest", __version__)
    return MetricsData(resource_metrics=[ResourceMetrics(
        resource=resource, scope_metrics=[ScopeMetrics(scope=scope, metrics=metrics, schema_url="")],
        schema_url="")])


def _reason(exc: BaseException) -> str:
    """Why a request failed, in a few words: the root OS error (``connection refused``) if any."""
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    todo: list[object] = [exc]
    seen: set[int] = set()
    while todo:
        e = todo.pop(0)
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.strerror:
            return str(e.strerror).lower()
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


class _Session(requests.Session):
    """requests' session for the exporter, remembering why its last request failed: the
    exporter's own result says only SUCCESS or FAILURE."""

    def __init__(self) -> None:
        super().__init__()
        self.failure: str | None = None

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            response = super().request(method, url, *args, **kwargs)
        except Exception as exc:
            self.failure = _reason(exc)
            raise
        status = int(response.status_code)
        self.failure = None if status < 400 else f"HTTP {status} {response.reason or ''}".strip()
        return response


class _DropLogs(logging.Filter):
    """The exporter logs every failed push (on stderr through logging's last resort, once per
    push, in the middle of the live console); the pusher counts them and warns once instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


_DROP_LOGS = _DropLogs()


def _ignore(_text: str) -> None:
    return None


class OtlpPusher:
    """Pushes the run's live snapshots to an OTLP/HTTP collector (``url``: its ``/v1/metrics``)."""

    def __init__(self, url: str, *, attributes: Mapping[str, str], interval_s: float = 5.0,
                 timeout_s: float = 2.0, warn: Callable[[str], None] = _ignore) -> None:
        self.url = url
        self.attributes = {str(k): str(v) for k, v in attributes.items()}
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._warn = warn
        resource = {"service.name": "loadtest", **self.attributes}
        if "run_id" in self.attributes:
            resource["service.instance.id"] = self.attributes["run_id"]
        self.resource = Resource.create(resource)  # OTEL_RESOURCE_ATTRIBUTES adds to it
        self.start_ns = time.time_ns()
        self._latest: LiveSnapshot | None = None
        self._pushed: LiveSnapshot | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._exporter: tuple[OTLPMetricExporter, _Session] | None = None
        self._ok = 0
        self._failed = 0
        self._last_error: str | None = None
        self._finished = False
        logging.getLogger(metric_exporter.__name__).addFilter(_DROP_LOGS)  # once: filters are a set

    def _new_exporter(self, timeout_s: float) -> tuple[OTLPMetricExporter, _Session]:
        session = _Session()
        return OTLPMetricExporter(endpoint=self.url, timeout=timeout_s, session=session), session

    def start(self) -> None:
        """Push the latest snapshot every ``interval_s`` from a daemon thread."""
        if self._thread is not None or self._finished:
            return
        try:
            self._exporter = self._new_exporter(self.timeout_s)
        except Exception as exc:  # the exporter's environment (OTEL_EXPORTER_OTLP_*) refused
            self._count(False, f"exporter not set up: {type(exc).__name__}: {exc}", periodic=False)
            return
        self._thread = threading.Thread(target=self._loop, name="loadtest-otlp", daemon=True)
        self._thread.start()

    def update(self, snapshot: LiveSnapshot) -> None:
        """The run so far (on the coordinator's loop: only a reference is stored)."""
        self._latest = snapshot

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            snap = self._latest
            if snap is None or snap is self._pushed or self._exporter is None:
                continue
            self._pushed = snap
            self._push(snap, self._exporter, periodic=True)

    def _push(self, snap: LiveSnapshot, exporter: tuple[OTLPMetricExporter, _Session], *, periodic: bool) -> None:
        try:
            data = metrics_data(snap, attributes=self.attributes, resource=self.resource, start_ns=self.start_ns,
                                now_ns=time.time_ns())
        except Exception as exc:  # a bug: shown in live.otlp, never a failed run
            self._count(False, f"snapshot not converted: {type(exc).__name__}: {exc}", periodic=periodic)
            return
        exp, session = exporter
        try:
            ok = exp.export(data) is MetricExportResult.SUCCESS
        except Exception as exc:  # the exporter catches its own; never let the network raise
            ok, session.failure = False, _reason(exc)
        self._count(ok, None if ok else session.failure or "export failed", periodic=periodic)

    def _count(self, ok: bool, error: str | None, *, periodic: bool) -> None:
        with self._lock:
            if periodic and not ok and self._stop.is_set():
                return  # cut short by finish (its exporter shut down under it): not counted
            if ok:
                self._ok += 1
                return
            self._failed += 1
            self._last_error = error
            first = self._failed == 1
        if first:
            self._warn(f"OTLP collector {self.url}: push failed ({error}); the run goes on, "
                       "failed pushes are counted in summary.json live.otlp")

    def finish(self, final: LiveSnapshot) -> None:
        """Stop the thread and push ``final``, within about ``timeout_s`` in all (idempotent)."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
        deadline = time.monotonic() + self.timeout_s
        self._stop.set()
        if self._exporter is not None:
            # wakes a retry backoff under way at once (the exporter's client waits on its
            # shutdown event) and closes its idle connections
            self._exporter[0].shutdown()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        try:
            exporter = self._new_exporter(max(deadline - time.monotonic(), _MIN_FINAL_TIMEOUT_S))
        except Exception as exc:
            self._count(False, f"exporter not set up: {type(exc).__name__}: {exc}", periodic=False)
            return
        try:
            self._push(final, exporter, periodic=False)
        finally:
            exporter[0].shutdown()

    def status(self) -> dict[str, Any]:
        """summary.json's ``live.otlp``: pushes that arrived, that failed, and why."""
        with self._lock:
            ok, failed, error = self._ok, self._failed, self._last_error
        warning = (f"OTLP collector {self.url}: {failed} of {ok + failed} pushes failed ({error})"
                   if failed else None)
        return {"url": self.url, "pushes": ok, "failed": failed, "last_error": error, "warning": warning}
