"""The mock's prefill term: a longer prompt takes longer to its first token."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest
from support.helpers import read_csv_rows, run_cli
from support.tolerances import MEDIAN_SLACK_MS

from loadtest.mock.latency import Dist, MockModel


def test_plan_adds_prefill_per_thousand_prompt_chars() -> None:
    model = MockModel(ttft_ms=Dist(a=50.0), prefill_ms_per_kchar=20.0)
    assert model.plan(random.Random(1), 0)[0] == 50.0
    assert model.plan(random.Random(1), 2500)[0] == 100.0
    assert MockModel(ttft_ms=Dist(a=50.0)).plan(random.Random(1), 2500)[0] == 50.0


@pytest.mark.realtime
def test_long_prompts_wait_longer_end_to_end(write_scenario: Callable[..., Path], tmp_path: Path) -> None:
    long_prompt = "x" * 2000
    path = write_scenario(f"""
        target: {{url: mock}}
        mock: {{ttft_ms: 50, gap_ms: 2, chunks: 3, prefill_ms_per_kchar: 20}}
        load: {{concurrency: 2, duration: 2s}}
        session: {{steps: [{{gen: {{prompts: ["short", "{long_prompt}"]}}}}]}}
        """)
    out = tmp_path / "r"
    proc = run_cli("run", str(path), "--out", str(out), "--no-html", "-q")
    assert proc.returncode == 0, proc.stderr
    rows = read_csv_rows(out / "requests.csv")
    by_len: dict[int, list[float]] = {}
    for r in rows:
        by_len.setdefault(int(r["prompt_chars"]), []).append(float(r["ttft_ms"]))
    short, long_ = statistics.median(by_len[5]), statistics.median(by_len[2000])
    assert 50 <= short < 50 + MEDIAN_SLACK_MS + 1, short
    assert 39 <= long_ - short <= 42, (short, long_)  # 2,000 chars x 20 ms per 1,000
