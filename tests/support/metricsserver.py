"""metricsserver: a small Prometheus endpoint with known figures, for judging ``--scrape``.

Written on :mod:`http.server` alone (nothing from ``loadtest`` nor ``prometheus_client``), on
127.0.0.1 and a free port, in a daemon thread::

    with MetricsServer() as server:
        url = server.url("/metrics")
        ...
    server.log   # every request it answered: path, wall time, status, the values it served

``/metrics`` serves, as Prometheus text 0.0.4:

- ``test_requests_total``: the ``/metrics`` answers served so far, this one included (1, 2, …)
- ``test_ticks_total``: whole ``tick_s`` periods since the server started (a known rate)
- ``test_queue_depth``: a gauge, ``queue_depth`` (settable)
- ``test_latency_seconds``: a histogram (``_bucket`` with ``le``, ``_sum``, ``_count``)
- ``test_labelled{path="/v2/chat",note="a \\"quoted\\" value"}``: a label value to escape

Other paths answer badly, on purpose: ``/html`` (a 200 HTML page), ``/garbage`` (200, text
that is not Prometheus), ``/binary`` (200, random bytes), ``/status500``, ``/slow`` (sleeps
``slow_s`` before answering), ``/big?n=N`` (N samples), ``/empty`` (200, no body), ``/auth``
(``/metrics`` behind basic auth ``user:s3cret-pw``; 401 otherwise); anything else is 404.
"""

from __future__ import annotations

import base64
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

AUTH_USER, AUTH_PASSWORD = "user", "s3cret-pw"


@dataclass(frozen=True)
class Served:
    path: str
    t_ns: int  # time.time_ns() as the answer was written
    status: int  # 0: the client had gone before the answer was written
    #: the values of the counters in the answer (``/metrics`` and ``/auth`` only)
    values: dict[str, float]


class MetricsServer:
    def __init__(self, *, tick_s: float = 0.1, slow_s: float = 3.0) -> None:
        self.tick_s = tick_s
        self.slow_s = slow_s
        self.queue_depth = 0.0
        self.log: list[Served] = []
        self._lock = threading.Lock()
        self._requests = 0
        self._pending = 0  # requests being answered, not yet in the log
        self._start = time.monotonic()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def url(self, path: str = "/metrics") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> MetricsServer:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def served(self, path: str = "/metrics") -> list[Served]:
        """Every answer to ``path``, once the answers being written are logged (a client may
        read an answer before the handler thread has logged it)."""
        deadline = time.monotonic() + 2.0
        while True:
            with self._lock:
                if not self._pending or time.monotonic() > deadline:
                    return [s for s in self.log if s.path == path]
            time.sleep(0.01)

    def begin(self) -> None:
        with self._lock:
            self._pending += 1

    # ---------------------------------------------------------------- answers

    def metrics_body(self, path: str) -> tuple[bytes, dict[str, float]]:
        with self._lock:
            self._requests += 1
            requests = self._requests
        ticks = int((time.monotonic() - self._start) / self.tick_s)
        values = {"test_requests_total": float(requests), "test_ticks_total": float(ticks),
                  "test_queue_depth": float(self.queue_depth)}
        text = (
            "# HELP test_requests_total /metrics answers served, this one included.\n"
            "# TYPE test_requests_total counter\n"
            f"test_requests_total {requests}\n"
            "# HELP test_ticks_total Whole ticks since the server started.\n"
            "# TYPE test_ticks_total counter\n"
            f"test_ticks_total {ticks}\n"
            "# HELP test_queue_depth Waiting work.\n"
            "# TYPE test_queue_depth gauge\n"
            f"test_queue_depth {self.queue_depth:g}\n"
            "# HELP test_latency_seconds A histogram.\n"
            "# TYPE test_latency_seconds histogram\n"
            'test_latency_seconds_bucket{le="0.1"} 1\n'
            'test_latency_seconds_bucket{le="1.0"} 3\n'
            'test_latency_seconds_bucket{le="+Inf"} 4\n'
            "test_latency_seconds_sum 2.5\n"
            "test_latency_seconds_count 4\n"
            "# TYPE test_labelled gauge\n"
            'test_labelled{path="/v2/chat",note="a \\"quoted\\" value"} 7\n'
        )
        return text.encode(), values

    def record(self, path: str, status: int, values: dict[str, float] | None = None) -> None:
        with self._lock:
            self.log.append(Served(path, time.time_ns(), status, values or {}))
            self._pending -= 1


def _handler(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes, ctype: str = "text/plain; version=0.0.4; charset=utf-8",
                  values: dict[str, float] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            try:
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a scrape timed out)
                status = 0
            server.record(self.path.split("?", 1)[0], status, values)

        def do_GET(self) -> None:
            server.begin()  # every path ends in _send, which logs it
            parts = urllib.parse.urlsplit(self.path)
            path, query = parts.path, urllib.parse.parse_qs(parts.query)
            if path == "/metrics":
                body, values = server.metrics_body(path)
                self._send(200, body, values=values)
            elif path == "/auth":
                expected = "Basic " + base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self._send(401, b"unauthorised\n", "text/plain")
                    return
                body, values = server.metrics_body(path)
                self._send(200, body, values=values)
            elif path == "/html":
                self._send(200, b"<!DOCTYPE html>\n<html><body><h1>Welcome</h1></body></html>\n",
                           "text/html; charset=utf-8")
            elif path == "/garbage":
                self._send(200, b"hello world this is not\nprometheus { at all\n")
            elif path == "/binary":
                self._send(200, bytes(range(256)) * 4, "application/octet-stream")
            elif path == "/status500":
                self._send(500, b"internal error\n", "text/plain")
            elif path == "/slow":
                time.sleep(server.slow_s)
                body, values = server.metrics_body(path)
                self._send(200, body, values=values)
            elif path == "/big":
                n = int(query.get("n", ["3000"])[0])
                self._send(200, "".join(f'test_big{{i="{i}"}} {i}\n' for i in range(n)).encode())
            elif path == "/empty":
                self._send(200, b"")
            else:
                self._send(404, b"not found\n", "text/plain")

    return Handler
