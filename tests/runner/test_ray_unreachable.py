"""An unreachable --ray-address is exit 3 with a summary.json saying why, like every other exit 3
(issue 22, item 8): before, it left an empty output directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.helpers import run_cli

pytestmark = pytest.mark.realtime


def test_an_unreachable_ray_address_writes_summary_json(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "run"
    proc = run_cli("run", "scenarios/smoke.yaml", "--backend", "ray", "--ray-address", "127.0.0.1:9",
                   "--duration", "3s", "--out", str(out), timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "unreachable" and summary["exit_code"] == 3
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in summary["reason"]
    assert (out / "scenario.yaml").exists() and not (out / "requests.csv").exists()
