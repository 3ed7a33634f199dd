"""``/metrics`` in the Prometheus text format while a run goes (``--prometheus HOST:PORT``).

The endpoint is prometheus-client's own HTTP server on a thread; what it serves is the latest
:class:`~loadtest.live.state.LiveSnapshot` the coordinator published, rendered when a scraper
asks (a custom collector: nothing is recorded into prometheus-client's instruments, so the
workers' hot path never sees it). Families:

- counters ``loadtest_requests_total{outcome}``, ``loadtest_errors_total{category}``,
  ``loadtest_chunks_total``, ``loadtest_output_tokens_total`` (with a tokenizer);
- histograms in seconds ``loadtest_ttft_seconds``, ``loadtest_itl_seconds``,
  ``loadtest_tpot_seconds``, ``loadtest_e2e_seconds`` on :data:`BUCKETS_S` (1 ms .. 60 s);
- gauges ``loadtest_users``, ``loadtest_in_flight``, ``loadtest_offered_rate``,
  ``loadtest_achieved_rate``, ``loadtest_loop_lag_seconds``, ``loadtest_saturated``.

Every series carries ``run`` (the scenario's name) and ``run_id`` (the run directory's name).
The run's own series have no ``tag`` label; each ``key=value`` of ``by_tag`` has its own
series with ``tag="key=value"`` (one label, not one per key: a request carries several tags,
so label sets per key would count it once per key under ``sum``). ``{tag=""}`` selects the
whole run; ``sum by (tag) (…{tag=~"web_search=.*"})`` compares one key's classes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
from prometheus_client import start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import CollectorRegistry

from loadtest.errors import ERROR_CATEGORIES, BadInput
from loadtest.live.state import LIVE_METRICS, LiveHistogram, LiveSeries, LiveSnapshot

__all__ = ["BUCKETS_S", "PrometheusEndpoint", "render_families"]

#: histogram bucket bounds, seconds: dense enough for LLM latencies from 1 ms to 60 s
BUCKETS_S: tuple[float, ...] = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
    0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
)  # fmt: skip
_HELP = {
    "ttft": "Time to first token, from the intended send time (s)",
    "itl": "Gaps between consecutive non-empty chunks (s)",
    "tpot": "Time per output chunk of each completed answer (s)",
    "e2e": "Whole answer, from the intended send time to its stop (s)",
}


_BOUNDS_US = np.array(BUCKETS_S) * 1e6


def _add_series(fams: dict[str, Metric], s: LiveSeries, base: dict[str, str], tokenized: bool) -> None:
    for outcome, n in s.requests.items():
        fams["requests"].add_sample("loadtest_requests_total", {**base, "outcome": outcome}, n)
    # every category from the start (a series that appears from nowhere loses its first increase in rate())
    for category in (*ERROR_CATEGORIES, *sorted(set(s.errors) - set(ERROR_CATEGORIES))):
        fams["errors"].add_sample("loadtest_errors_total", {**base, "category": category}, s.errors.get(category, 0))
    fams["chunks"].add_sample("loadtest_chunks_total", base, s.chunks)
    if tokenized:
        fams["output_tokens"].add_sample("loadtest_output_tokens_total", base, s.output_tokens)
    for metric in LIVE_METRICS:
        h = s.histograms.get(metric, LiveHistogram())
        fam, name = fams[metric], f"loadtest_{metric}_seconds"
        counts = h.cumulative(_BOUNDS_US)
        for bound, n in zip(BUCKETS_S, counts, strict=True):
            fam.add_sample(f"{name}_bucket", {**base, "le": repr(bound)}, n)
        fam.add_sample(f"{name}_bucket", {**base, "le": "+Inf"}, h.count)
        fam.add_sample(f"{name}_count", base, h.count)
        fam.add_sample(f"{name}_sum", base, h.sum_us / 1e6)


def render_families(snap: LiveSnapshot, labels: dict[str, str]) -> list[Metric]:
    """The metric families of ``snap``, every series with ``labels`` (run, run_id)."""
    fams: dict[str, Metric] = {
        "requests": Metric("loadtest_requests", "Requests of the measured cohort by how they ended", "counter"),
        "errors": Metric("loadtest_errors", "Failed requests of the measured cohort by error category", "counter"),
        "chunks": Metric("loadtest_chunks", "Non-empty chunks received inside the measured window", "counter"),
    }
    if snap.tokenized:
        fams["output_tokens"] = Metric("loadtest_output_tokens", "Output tokens of completed answers", "counter")
    for metric in LIVE_METRICS:
        fams[metric] = Metric(f"loadtest_{metric}_seconds", _HELP[metric], "histogram")
    _add_series(fams, snap.run, labels, snap.tokenized)
    for tag in sorted(snap.tags):
        _add_series(fams, snap.tags[tag], {**labels, "tag": tag}, snap.tokenized)
    gauges = (
        ("users", "Sessions (users or pooled connections) open", snap.users),
        ("in_flight", "Requests awaiting or streaming an answer", snap.in_flight),
        ("offered_rate", "Requests offered in the last settled second (final: per second over the window)",
         snap.offered_rate),
        ("achieved_rate", "Requests sent in the last settled second (final: per second over the window)",
         snap.achieved_rate),
        ("loop_lag_seconds", "Worst event-loop lag of any worker in the last settled second (s)", snap.loop_lag_s),
        ("saturated", "1 when the generator is saturated (its figures describe itself, not the target)",
         float(snap.saturated)),
    )
    out = list(fams.values())
    for name, doc, value in gauges:
        g = Metric(f"loadtest_{name}", doc, "gauge")
        g.add_sample(f"loadtest_{name}", labels, value)
        out.append(g)
    return out


class _Latest:
    """The registry's one collector: renders the latest snapshot on each scrape."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.snapshot: LiveSnapshot | None = None
        self.scrapes = 0
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snap = self.snapshot
            self.scrapes += 1
        if snap is not None:
            yield from render_families(snap, self.labels)


class PrometheusEndpoint:
    """``/metrics`` on ``host:port`` for one run: :meth:`open` binds (BadInput, exit 2, if it
    cannot), :meth:`publish` replaces what is served, :meth:`close` stops serving."""

    def __init__(self, host: str, port: int, labels: dict[str, str]) -> None:
        self.host, self.port = host, port
        self._latest = _Latest(labels)
        self._server: Any = None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def open(self) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self._latest)
        try:
            self._server, _thread = start_http_server(self.port, addr=self.host, registry=registry)
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise BadInput(f"--prometheus {self.address}: cannot serve /metrics there ({why}); "
                           "choose a free port (outputs.prometheus)") from None

    def publish(self, snap: LiveSnapshot) -> None:
        with self._latest._lock:
            self._latest.snapshot = snap

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def status(self) -> dict[str, Any]:
        return {"address": self.address, "scrapes": self._latest.scrapes}
