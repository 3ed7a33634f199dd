"""``/metrics`` in the Prometheus text format while a run goes (``--prometheus HOST:PORT``).

The endpoint is prometheus-client's threading WSGI server on a thread; what it serves is the
latest :class:`~loadtest.live.state.LiveSnapshot` the coordinator published, rendered when a
scraper asks (nothing is recorded into instruments, so the workers' hot path never sees it).
Families:

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

import socket
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.exposition import CONTENT_TYPE_LATEST, ThreadingWSGIServer

from loadtest.errors import ERROR_CATEGORIES, BadInput
from loadtest.live.state import LIVE_METRICS, LiveHistogram, LiveSnapshot, bound_indices

__all__ = ["BUCKETS_S", "PrometheusEndpoint", "render_text"]

#: histogram bucket bounds, seconds: dense enough for LLM latencies from 1 ms to 60 s
BUCKETS_S: tuple[float, ...] = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
    0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
)  # fmt: skip
_UPTO = bound_indices([b * 1e6 for b in BUCKETS_S])
_LE = [repr(b) for b in BUCKETS_S]
_HELP = {
    "ttft": "Time to first token, from the intended send time (s)",
    "itl": "Gaps between consecutive non-empty chunks (s)",
    "tpot": "Time per output chunk of each completed answer (s)",
    "e2e": "Whole answer, from the intended send time to its stop (s)",
}
_GAUGES = (
    ("users", "Sessions (users or pooled connections) open"),
    ("in_flight", "Requests awaiting or streaming an answer"),
    ("offered_rate", "Requests offered in the last settled second (final: per second over the window)"),
    ("achieved_rate", "Requests sent in the last settled second (final: per second over the window)"),
    ("loop_lag_seconds", "Worst event-loop lag of any worker in the last settled second (s)"),
    ("saturated", "1 when the generator is saturated (its figures describe itself, not the target)"),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _head(out: list[str], name: str, kind: str, doc: str) -> None:
    out.append(f"# HELP {name} {doc}")
    out.append(f"# TYPE {name} {kind}")


def render_text(snap: LiveSnapshot, labels: dict[str, str]) -> bytes:
    """The exposition (text format 0.0.4) of ``snap``, every series with ``labels`` (run, run_id).

    Written here rather than through prometheus-client's ``generate_latest``, which escapes and
    validates every label of every sample in Python: ~10 ms a scrape for the ~1,000 series of
    a run with six classes, several times this (benchmarks/bench_live.py)."""
    base = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    series = [(base, snap.run)] + [(f'{base},tag="{_escape(t)}"', snap.tags[t]) for t in sorted(snap.tags)]
    out: list[str] = []
    _head(out, "loadtest_requests_total", "counter", "Requests of the measured cohort by how they ended")
    for lab, s in series:
        out.extend(f'loadtest_requests_total{{{lab},outcome="{o}"}} {n}' for o, n in s.requests.items())
    _head(out, "loadtest_errors_total", "counter", "Failed requests of the measured cohort by error category")
    for lab, s in series:
        # every category from the start (a series that appears from nowhere loses its first increase in rate())
        cats = (*ERROR_CATEGORIES, *sorted(set(s.errors) - set(ERROR_CATEGORIES)))
        out.extend(f'loadtest_errors_total{{{lab},category="{_escape(c)}"}} {s.errors.get(c, 0)}' for c in cats)
    _head(out, "loadtest_chunks_total", "counter", "Non-empty chunks received inside the measured window")
    out.extend(f"loadtest_chunks_total{{{lab}}} {s.chunks}" for lab, s in series)
    if snap.tokenized:
        _head(out, "loadtest_output_tokens_total", "counter", "Output tokens of completed answers")
        out.extend(f"loadtest_output_tokens_total{{{lab}}} {s.output_tokens}" for lab, s in series)
    for metric in LIVE_METRICS:
        name = f"loadtest_{metric}_seconds"
        _head(out, name, "histogram", _HELP[metric])
        for lab, s in series:
            h = s.histograms.get(metric, LiveHistogram())
            counts = h.cumulative(_UPTO)
            out.extend(f'{name}_bucket{{{lab},le="{le}"}} {n}' for le, n in zip(_LE, counts, strict=True))
            out.append(f'{name}_bucket{{{lab},le="+Inf"}} {h.count}')
            out.append(f"{name}_count{{{lab}}} {h.count}")
            out.append(f"{name}_sum{{{lab}}} {h.sum_us / 1e6!r}")
    values = (snap.users, snap.in_flight, snap.offered_rate, snap.achieved_rate, snap.loop_lag_s,
              int(snap.saturated))
    for (name, doc), value in zip(_GAUGES, values, strict=True):
        _head(out, f"loadtest_{name}", "gauge", doc)
        out.append(f"loadtest_{name}{{{base}}} {float(value)!r}")
    out.append("")
    return "\n".join(out).encode("utf-8")


class _Silent(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing (the console is the run's)."""


class _Latest:
    """The WSGI app of /metrics: the latest snapshot, rendered when a scraper asks."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.snapshot: LiveSnapshot | None = None
        self.scrapes = 0
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("PATH_INFO", "/") not in ("/metrics", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"only /metrics here\n"]
        with self.lock:
            snap = self.snapshot
            self.scrapes += 1
        body = b"" if snap is None else render_text(snap, self.labels)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
        return [body]


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
        try:
            family = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
            server_class = type("_Server", (ThreadingWSGIServer,), {"address_family": family})
            self._server = make_server(self.host, self.port, self._latest, server_class, handler_class=_Silent)
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise BadInput(f"--prometheus {self.address}: cannot serve /metrics there ({why}); "
                           "choose a free port (outputs.prometheus)") from None
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="loadtest-metrics",
                         daemon=True).start()

    def publish(self, snap: LiveSnapshot) -> None:
        with self._latest.lock:
            self._latest.snapshot = snap

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def status(self) -> dict[str, Any]:
        return {"address": self.address, "scrapes": self._latest.scrapes}
