"""``ab`` refuses runs too short for a gated percentile after the first baseline run, with the
duration that would fill it, instead of after every round (issue 18)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support.helpers import run_cli

from loadtest.compare.gate import GateRules, InvalidComparison
from loadtest.compare.rundata import RunData
from loadtest.studies.ab import fail_fast, refuse_unfillable

TTFT = [("ttft", "p50"), ("ttft", "p99")]
SC: Any = SimpleNamespace(load=SimpleNamespace(warmup_s=0.0, requests=None))


def _run(count: int, measure_s: float) -> RunData:
    return RunData(label="round-1-baseline", summary_ms={"ttft": {"count": count}},
                   meta={"measure_s": measure_s, "path": "out/round-1-baseline"})


def test_the_refusal_says_how_long_a_run_must_be() -> None:
    # ~100 answers/s for 5 s: 500 samples; p99 needs 1,000 (10 beyond it) -> 10 s, +20 % margin
    with pytest.raises(InvalidComparison) as info:
        fail_fast(_run(500, 5.0), SC, TTFT, GateRules(), single=False)
    text = str(info.value)
    assert "500 ttft samples; ttft p99 needs at least 1000 per run" in text
    assert "at ~100 answers/s, ttft p99 needs runs of ≥ 12 s; use --duration 12s" in text
    assert info.value.exit_code == 2


def test_the_warmup_counts_towards_the_duration() -> None:
    sc: Any = SimpleNamespace(load=SimpleNamespace(warmup_s=5.0, requests=None))
    with pytest.raises(InvalidComparison, match=r"runs of ≥ 18 s; use --duration 18s"):
        fail_fast(_run(500, 5.0), sc, TTFT, GateRules(), single=False)


def test_a_run_that_fills_every_floor_goes_on() -> None:
    fail_fast(_run(1000, 10.0), SC, TTFT, GateRules(), single=False)
    fail_fast(_run(500, 5.0), SC, [("ttft", "p50"), ("ttft", "p90")], GateRules(), single=False)


def test_a_requests_cap_below_the_floor_is_refused_before_any_run() -> None:
    sc: Any = SimpleNamespace(load=SimpleNamespace(warmup_s=0.0, requests=400))
    with pytest.raises(InvalidComparison, match=r"load\.requests caps every run at 400 answers; ttft p99 needs"):
        refuse_unfillable(sc, TTFT, GateRules(), single=False)
    refuse_unfillable(sc, [("ttft", "p50")], GateRules(), single=False)  # 400 fill p50 (20 needed)


SCENARIO = """name: short-ab
target: {url: mock}
mock: {ttft_ms: 20, gap_ms: 2, chunks: 4}
load: {concurrency: 4, duration: 3s, warmup: 1s}
session:
  steps:
    - gen: {prompt: "Explain artificial intelligence"}
"""


@pytest.mark.realtime
def test_ab_stops_after_the_first_round_with_the_duration_it_needs(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    out = tmp_path / "ab"
    proc = run_cli("ab", str(scenario), "--baseline", "mock", "--candidate", "mock", "--rounds", "3",
                   "--out", str(out), "--round-seed", "1", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "ttft p99 needs at least 1000 per run" in proc.stderr, proc.stderr
    assert "needs runs of ≥" in proc.stderr and "use --duration" in proc.stderr, proc.stderr
    rounds = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert rounds == ["round-1-baseline"], rounds  # one run, not three rounds of two


@pytest.mark.realtime
def test_ab_with_a_requests_cap_below_the_floor_runs_nothing(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO.replace("warmup: 1s}", "warmup: 1s, requests: 300}"), encoding="utf-8")
    out = tmp_path / "ab"
    proc = run_cli("ab", str(scenario), "--baseline", "mock", "--candidate", "mock", "--rounds", "3",
                   "--out", str(out), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "load.requests caps every run at 300 answers" in proc.stderr
    assert not out.exists() or not any(out.iterdir())
