"""Bad live-output input (issue 21): a malformed HOST:PORT, a port in use, a non-HTTP --otlp or
--scrape URL: exit 2 with a message naming the flag, before anything connects or any run
directory is claimed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from support.helpers import run_cli

pytestmark = pytest.mark.realtime


@pytest.mark.parametrize(("flags", "says"), [
    (["--prometheus", "127.0.0.1"], "outputs.prometheus (set by --prometheus): must be HOST:PORT"),
    (["--prometheus", "127.0.0.1:99999"], "the port must be a number from 1 to 65535"),
    (["--prometheus", "::1:9464"], "an IPv6 host in brackets"),
    (["--otlp", "ftp://127.0.0.1/v1/metrics"], "outputs.otlp (set by --otlp): must be an http:// or https:// URL"),
    (["--otlp", "http:///v1/metrics"], "must name a host"),
    (["--scrape", "127.0.0.1:9100/metrics"], "outputs.scrape (set by --scrape): must be an http:// or https://"),
    (["--prometheus-linger", "forever"], "Invalid value for --prometheus-linger"),
])  # fmt: skip
def test_malformed_live_flags_are_exit_2_naming_the_flag(tmp_path: Path, flags: list[str], says: str) -> None:
    out = tmp_path / "run"
    proc = run_cli("run", "scenarios/smoke.yaml", "--duration", "3s", "--out", str(out), *flags)
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_a_scenario_file_with_a_bad_outputs_section_is_refused_by_validate(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: s\noutputs:\n  scrape: [\"http://127.0.0.1:9100/metrics\", \"file:///etc/passwd\"]\n")
    proc = run_cli("validate", str(scenario))
    assert proc.returncode == 2
    assert f"{scenario}:3: outputs.scrape" in proc.stderr and "scheme 'file'" in proc.stderr


def test_a_port_in_use_is_exit_2_before_anything_connects(tmp_path: Path) -> None:
    with socket.socket() as taken, socket.socket() as target:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        target.bind(("127.0.0.1", 0))  # the target: nothing may connect to it
        target.listen()
        target.settimeout(0.5)
        port, target_port = taken.getsockname()[1], target.getsockname()[1]
        out = tmp_path / "run"
        proc = run_cli("run", "scenarios/smoke.yaml", "--target", f"ws://127.0.0.1:{target_port}/v2/chat",
                       "--api-key", "k", "--duration", "3s", "--out", str(out), "--prometheus", f"127.0.0.1:{port}")
        assert proc.returncode == 2, proc.stderr
        assert f"--prometheus 127.0.0.1:{port}: cannot serve /metrics there (Address already in use)" in proc.stderr
        with pytest.raises(TimeoutError):
            target.accept()  # no connection was made
        assert not out.exists()
