"""A real Prometheus server (Debian's ``prometheus``) on loopback, for the live-export tests.

It scrapes the given ``127.0.0.1`` targets every second and answers PromQL over its HTTP API.
Started with its storage in a temporary directory; stopped (and waited for) on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PROMETHEUS = Path("/usr/bin/prometheus")

#: outside CI a missing Prometheus skips; in CI (CI=true, where scripts/test.sh installs it) it fails
needs_prometheus = pytest.mark.skipif(
    not PROMETHEUS.exists() and os.environ.get("CI") != "true",
    reason=f"{PROMETHEUS} not installed (apt-get install prometheus)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector: ``[{"metric": {...}, "value": [t, "v"]}, …]``."""
        q = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, promql: str) -> float:
        """The one value of an instant query (AssertionError unless exactly one series answers)."""
        result = self.query(promql)
        assert len(result) == 1, f"{promql}: {len(result)} series: {result}"
        return float(result[0]["value"][1])

    def wait_first_scrape(self, timeout_s: float = 30) -> None:
        """Until Prometheus has tried its targets once (it applies a new target set ~5 s after it
        starts): a run started before would lose its first seconds."""
        deadline = time.monotonic() + timeout_s
        while not self.query("up"):
            assert time.monotonic() < deadline, f"Prometheus made no scrape in {timeout_s} s"
            time.sleep(0.2)


@contextlib.contextmanager
def prometheus(tmp: Path, targets: list[str], *, interval_s: float = 1.0) -> Iterator[Prometheus]:
    """Prometheus scraping ``targets`` (``127.0.0.1:PORT``) every ``interval_s``, until the block ends."""
    assert all(t.startswith("127.0.0.1:") for t in targets), "tests scrape loopback only"
    port = free_port()
    config = tmp / "prometheus.yml"
    every, timeout = round(interval_s * 1000), round(interval_s * 900)
    config.write_text(
        f"global: {{scrape_interval: {every}ms, scrape_timeout: {timeout}ms, evaluation_interval: 10s}}\n"
        f"scrape_configs:\n  - job_name: loadtest\n    static_configs:\n      - targets: {json.dumps(targets)}\n",
        encoding="utf-8")
    (tmp / "tsdb").mkdir()
    log = (tmp / "prometheus.log").open("w")
    proc = subprocess.Popen([str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=log, stderr=subprocess.STDOUT)
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp / "prometheus.log").read_text()
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Prometheus did not become ready in 30 s"
            time.sleep(0.2)
        server.wait_first_scrape()
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
