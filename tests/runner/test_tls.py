"""wss:// targets: a self-signed certificate is refused by default, trusted with --ca-file,
and skipped (loudly) with --insecure.

The certificate (CN and SAN 127.0.0.1) is made by ``openssl`` for the module. The mock
serves TLS in this process (``MockServer.start(ssl_context=...)`` on a thread with its own
loop) and, for --insecure, in its own process (``loadtest mock --tls-cert --tls-key``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from support.helpers import run_cli, run_concurrently

from loadtest.mock.latency import MockModel, parse_dist
from loadtest.mock.process import MockProcess
from loadtest.mock.server import MockConfig, MockServer

pytestmark = [pytest.mark.realtime, pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")]


@pytest.fixture(scope="module")
def wss_url(cert: tuple[Path, Path]) -> Iterator[str]:
    """A TLS mock in this process, on a thread running its own event loop."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*cert)
    ready = threading.Event()
    box: dict[str, object] = {}

    async def serve() -> None:
        model = MockModel(ttft_ms=parse_dist(10), gap_ms=parse_dist(1), chunks=parse_dist(5))
        server = MockServer(MockConfig(model=model))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        box["url"] = await server.start(ssl_context=ctx)
        box["stop"] = lambda: loop.call_soon_threadsafe(stop.set)
        ready.set()
        try:
            await stop.wait()
        finally:
            await server.stop()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    url = str(box["url"])
    assert url.startswith("wss://127.0.0.1:")
    yield url
    box["stop"]()  # type: ignore[operator]
    thread.join(10)


SCENARIO = """
name: tls
load: {concurrency: 3, duration: 1500ms, warmup: 0s}
session:
  steps:
    - gen: {prompt: "Explain artificial intelligence"}
timeouts: {connect: 2s}
"""


def _run(scenario: Path, url: str, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("run", str(scenario), "--target", url, "--api-key", "k-tls", "--out", str(out),
                   "--no-html", "-q", *args, timeout=60)


def _insecure(scenario: Path, cert: tuple[Path, Path], out: Path) -> subprocess.CompletedProcess[str]:
    args = ["--ttft-ms", "10", "--gap-ms", "1", "--chunks", "5", "--tls-cert", str(cert[0]), "--tls-key", str(cert[1])]
    with MockProcess(args) as url:  # `loadtest mock --tls-cert --tls-key`: its own process
        assert url.startswith("wss://127.0.0.1:")
        return _run(scenario, url, out, "--insecure")


def _insecure_on_ws(scenario: Path, out: Path) -> subprocess.CompletedProcess[str]:
    with MockProcess(["--ttft-ms", "5", "--gap-ms", "1", "--chunks", "3"]) as url:
        return _run(scenario, url, out, "--insecure")


@dataclass
class Runs:
    out: dict[str, Path]
    proc: dict[str, subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def runs(wss_url: str, cert: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """The four runs of the tests below at once, each into its own directory: they check how a
    command connects, its warnings and a count of answers far below what a run makes, not a timing."""
    tmp = tmp_path_factory.mktemp("tls")
    scenario = tmp / "scenario.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    out = {name: tmp / name / "r" for name in ("refused", "ca_file", "insecure", "insecure_ws")}
    proc = run_concurrently({
        "refused": partial(_run, scenario, wss_url, out["refused"]),
        "ca_file": partial(_run, scenario, wss_url, out["ca_file"], "--ca-file", str(cert[0])),
        "insecure": partial(_insecure, scenario, cert, out["insecure"]),
        "insecure_ws": partial(_insecure_on_ws, scenario, out["insecure_ws"]),
    })
    return Runs(out, proc)


def test_self_signed_certificate_is_refused_by_default(runs: Runs) -> None:
    proc = runs.proc["refused"]
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "certificate verification failed" in proc.stderr, proc.stderr
    assert "--ca-file" in proc.stderr, proc.stderr  # the message says how to trust it
    assert "k-tls" not in proc.stderr


def test_ca_file_trusts_the_certificate(runs: Runs) -> None:
    out, proc = runs.out["ca_file"], runs.proc["ca_file"]
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["requests"]["completed"] > 20 and summary["requests"]["failed"] == 0
    assert summary["tls"] == {"insecure": False}
    assert summary["target"].startswith("wss://127.0.0.1:") and summary["target"].endswith("apikey=***")


def test_insecure_skips_verification_with_a_warning(runs: Runs) -> None:
    out, proc = runs.out["insecure"], runs.proc["insecure"]
    assert proc.returncode == 0, proc.stderr
    assert "WARNING: --insecure: TLS certificates are NOT verified." in proc.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["tls"] == {"insecure": True}
    assert summary["requests"]["completed"] > 20


def test_insecure_on_a_plain_ws_target_is_not_reported(runs: Runs) -> None:
    """--insecure means nothing for ws://: no warning, ``tls.insecure`` stays false."""
    out, proc = runs.out["insecure_ws"], runs.proc["insecure_ws"]
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["tls"] == {"insecure": False}
