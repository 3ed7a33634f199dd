"""The embedded mock for workers on other hosts (issue 22, item 9): ``mock.host`` /
``--mock-host`` is where it binds, and workers are given the coordinator's reachable address
(``mock.advertise``, or for a wildcard bind the outward interface's address)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from support.helpers import run_cli

from loadtest.runner.coordinator import advertised_url, outward_address


def test_the_url_workers_get() -> None:
    assert advertised_url("ws://127.0.0.1:8765/v2/chat", "127.0.0.1") == "ws://127.0.0.1:8765/v2/chat"
    assert advertised_url("ws://0.0.0.0:8765/v2/chat", "mock.example") == "ws://mock.example:8765/v2/chat"
    assert advertised_url("ws://[::]:8765/v2/chat", "::1") == "ws://[::1]:8765/v2/chat"
    wild = advertised_url("ws://0.0.0.0:8765/v2/chat", "0.0.0.0")
    host = wild.split("//")[1].rsplit(":", 1)[0]
    assert host == outward_address() and not ipaddress.ip_address(host).is_unspecified
    assert wild.endswith(":8765/v2/chat")


@pytest.mark.realtime
def test_a_mock_bound_on_every_interface_serves_at_the_advertised_address(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    # bound on every interface, reached (by this test) on loopback only
    scenario.write_text("name: wide\ntarget: {url: mock}\nmock: {host: 0.0.0.0, advertise: 127.0.0.1, ttft_ms: 5}\n"
                        "load: {mode: closed, concurrency: 2, duration: 2s, warmup: 0s}\n")
    out = tmp_path / "run"
    proc = run_cli("run", str(scenario), "--out", str(out), "--no-html", "-q")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target"].startswith("ws://127.0.0.1:") and summary["requests"]["completed"] > 0
    bad = run_cli("run", "scenarios/smoke.yaml", "--mock-host", "", "--duration", "2s", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "mock.host (set by --mock-host)" in bad.stderr
