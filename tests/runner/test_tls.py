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
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.helpers import run_cli

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


@pytest.fixture
def scenario(write_scenario: Callable[..., Path]) -> Path:
    return write_scenario("""
        name: tls
        load: {concurrency: 3, duration: 1500ms, warmup: 0s}
        session:
          steps:
            - gen: {prompt: "Explain artificial intelligence"}
        timeouts: {connect: 2s}
        """)


def _run(scenario: Path, url: str, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("run", str(scenario), "--target", url, "--api-key", "k-tls", "--out", str(out),
                   "--no-html", "-q", *args, timeout=60)


def test_self_signed_certificate_is_refused_by_default(scenario: Path, wss_url: str, tmp_path: Path) -> None:
    proc = _run(scenario, wss_url, tmp_path / "r")
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "certificate verification failed" in proc.stderr, proc.stderr
    assert "--ca-file" in proc.stderr, proc.stderr  # the message says how to trust it
    assert "k-tls" not in proc.stderr


def test_ca_file_trusts_the_certificate(scenario: Path, wss_url: str, cert: tuple[Path, Path],
                                        tmp_path: Path) -> None:
    out = tmp_path / "r"
    proc = _run(scenario, wss_url, out, "--ca-file", str(cert[0]))
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["requests"]["completed"] > 20 and summary["requests"]["failed"] == 0
    assert summary["tls"] == {"insecure": False}
    assert summary["target"].startswith("wss://127.0.0.1:") and summary["target"].endswith("apikey=***")


def test_insecure_skips_verification_with_a_warning(scenario: Path, cert: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    out = tmp_path / "r"
    args = ["--ttft-ms", "10", "--gap-ms", "1", "--chunks", "5", "--tls-cert", str(cert[0]), "--tls-key", str(cert[1])]
    with MockProcess(args) as url:  # `loadtest mock --tls-cert --tls-key`: its own process
        assert url.startswith("wss://127.0.0.1:")
        proc = _run(scenario, url, out, "--insecure")
    assert proc.returncode == 0, proc.stderr
    assert "WARNING: --insecure: TLS certificates are NOT verified." in proc.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["tls"] == {"insecure": True}
    assert summary["requests"]["completed"] > 20


def test_insecure_on_a_plain_ws_target_is_not_reported(scenario: Path, tmp_path: Path) -> None:
    """--insecure means nothing for ws://: no warning, ``tls.insecure`` stays false."""
    out = tmp_path / "r"
    with MockProcess(["--ttft-ms", "5", "--gap-ms", "1", "--chunks", "3"]) as url:
        proc = _run(scenario, url, out, "--insecure")
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["tls"] == {"insecure": False}
