"""The report of a conversation run (issue 20): a Conversations tile with the summary's counts
and durations, TTFT by turn among the request classes, abandoned answers in the requests tile."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.helpers import run_cli

pytestmark = pytest.mark.realtime  # a CLI run against the embedded mock


def _tile(page: str, label: str) -> str:
    m = re.search(rf'<div class="tile-label">{label}</div>(.*?)</div></div>', page, re.S)
    assert m, label
    return m.group(1)


def test_a_conversation_runs_report_shows_conversations_and_ttft_by_turn(tmp_path: Path) -> None:
    (tmp_path / "sc.yaml").write_text("""
name: conv
target: {url: mock}
mock: {ttft_ms: 20, gap_ms: 2, chunks: 10}
load: {mode: closed, concurrency: 3, duration: 3s, warmup: 0.5s, seed: 3}
session:
  conversation: {turns: 3, abandon: 0.3}
  steps:
    - gen: {prompt: "Explain artificial intelligence"}
    - think: 20ms
""")
    out = tmp_path / "run"
    done = run_cli("run", "sc.yaml", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr  # abandoning is the user's choice, not a failure
    s = json.loads((out / "summary.json").read_text())
    conv = s["conversations"]
    assert conv["abandoned"] > 0 and conv["completed"] > 0 and s["requests"]["abandoned"] > 0
    page = (out / "report.html").read_text(encoding="utf-8")
    tile = _tile(page, "Conversations")
    assert f">{conv['started']:,}<" in tile
    assert f"{conv['completed']:,} completed · {conv['abandoned']:,} abandoned" in tile
    assert f"duration p50 {conv['duration_ms']['p50']:,.0f}" in tile
    assert f"{s['requests']['abandoned']:,} abandoned" in _tile(page, "Requests started")
    for n in (1, 2, 3):  # each turn is a request class of its own
        assert f"turn={n}" in page and s["by_tag"][f"turn={n}"]["latency_ms"]["ttft"]["count"] > 0
    assert f"conversations: {conv['started']:,} started, {conv['completed']:,} completed" in done.stdout
