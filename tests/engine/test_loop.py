"""The event loop: uvloop where it is installed, the standard loop where it is not (Windows),
and the run names which it had (summary.json ``generator.loop``, the report)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from support.helpers import env_without, run_cli

from loadtest.engine.loop import FALLBACK_NOTE, loop_factory, loop_name, run_loop

SCENARIO = """
name: no-uvloop
target: {url: mock}
mock: {ttft_ms: 20, gap_ms: 2, chunks: 5}
load: {mode: closed, concurrency: 4, duration: 2s}
session:
  steps:
    - gen: {prompt: hi}
"""


async def _loop_of_running() -> str:
    return loop_name(asyncio.get_running_loop())


def test_uvloop_is_the_loop_where_it_is_installed() -> None:
    import uvloop

    assert loop_factory() is uvloop.new_event_loop
    assert run_loop(_loop_of_running()) == "uvloop.Loop"


def test_without_uvloop_the_standard_loop_runs_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    assert loop_factory() is asyncio.new_event_loop
    name = run_loop(_loop_of_running())
    assert name.startswith("asyncio.") and name.endswith(f"({FALLBACK_NOTE})"), name


@pytest.mark.realtime
def test_a_run_without_uvloop_measures_and_names_its_loop(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    run_dir = tmp_path / "run"
    proc = run_cli("run", str(scenario), "--out", str(run_dir), "-q", timeout=60,
                   env=env_without("uvloop", tmp_path))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["requests"]["completed"] > 10 and summary["requests"]["failed"] == 0
    assert summary["generator"]["loop"].endswith(f"({FALLBACK_NOTE})"), summary["generator"]
    assert "uvloop" not in summary["generator"]["loop"].split(" (")[0]
    assert FALLBACK_NOTE in (run_dir / "report.html").read_text(encoding="utf-8")
