"""``loadtest ab --tag KEY=VALUE`` (issue 19): the rounds are judged on one request class, and the
fail-fast floor check after the first baseline run counts that class's samples."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support.helpers import run_cli, run_concurrently

from loadtest.compare.gate import GateRules, InvalidComparison
from loadtest.compare.rundata import RunData
from loadtest.studies.ab import AbSide, fail_fast, run_ab

SCENARIO = """name: ab-tag
target: {url: mock}
mock: {ttft_ms: 20, gap_ms: 1, chunks: 3}
load: {mode: closed, concurrency: 4, duration: 1500ms, warmup: 500ms}
session:
  steps:
    - gen: {name: ask, prompt: "Explain artificial intelligence"}
    - gen: {name: follow, prompt: "And in one line?"}
"""
ASK = "step=ask"


def test_thefail_fast_check_counts_the_class_samples_and_rate() -> None:
    # 300 answers of the class in 5 s: 60/s; p99 needs 1,000 -> (0 + 1000 / 60) s x 1.2 = 20 s
    run = RunData(label="round-1-baseline", summary_ms={"ttft": {"count": 300}}, tag=ASK,
                  meta={"measure_s": 5.0, "path": "out/round-1-baseline"})  # fmt: skip
    sc: Any = SimpleNamespace(load=SimpleNamespace(warmup_s=0.0, requests=None))
    with pytest.raises(InvalidComparison) as info:
        fail_fast(run, sc, [("ttft", "p99")], GateRules(), single=False)
    text = str(info.value)
    assert text.startswith(f"round 1 baseline: 300 ttft samples of {ASK}; ttft p99 needs at least 1000 per run")
    assert f"at ~60 {ASK} answers/s, ttft p99 needs runs of ≥ 20 s; use --duration 20s" in text


def test_a_tag_the_scenario_cannot_produce_is_refused_before_any_run(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    side = AbSide(url="mock")
    for tag, why in (("step=asq", "no request of this scenario can carry it (step takes ask, follow)"),
                     ("kind=chat", "no request of this scenario carries a tag 'kind'")):  # fmt: skip
        with pytest.raises(InvalidComparison, match=f"--tag {tag}: {why.replace('(', '[(]').replace(')', '[)]')}"):
            run_ab(scenario, baseline=side, candidate=side, rounds=2, out=tmp_path / "ab", environ={},
                   rules=GateRules(), checks=[("ttft", "p50")], tag=tag)  # fmt: skip
    assert not (tmp_path / "ab").exists()  # nothing ran


@pytest.mark.realtime
def test_ab_gates_one_class_and_fails_fast_on_its_samples(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    # a class's p99 in a 1.5 s run: far too few samples; stopped after the first run, on the class's count
    # (--retries 0, --allow-saturated: this machine is shared; a short run's loop lag is a few samples)
    flags = ["--baseline", "mock", "--candidate", "mock", "--rounds", "2", "--tag", ASK, "--allow-saturated",
             "--retries", "0"]  # fmt: skip
    # The two ab commands below at once (each its own embedded mocks and directory): 4 users per
    # run, under 10 % of a core for a generator; what is judged is a count, an exact mean and an
    # A/A pass whose two sides run at the same moment, not a figure another run could move.
    short, both = tmp_path / "short", tmp_path / "ab"
    procs = run_concurrently({
        short: partial(run_cli, "ab", str(scenario), *flags, "--out", str(short), "--metric", "ttft.p99", timeout=90),
        both: partial(run_cli, "ab", str(scenario), *flags, "--out", str(both), "--metric", "ttft.p50", "--metric",
                      "throughput", "--round-seed", "7", timeout=120),
    })  # fmt: skip
    out, proc = short, procs[short]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    summary = json.loads((out / "round-1-baseline" / "summary.json").read_text(encoding="utf-8"))
    mine, whole = summary["by_tag"][ASK]["latency_ms"]["ttft"]["count"], summary["latency_ms"]["ttft"]["count"]
    assert 0 < mine < whole, (mine, whole)  # the class is half the requests: its count, not the run's
    assert f"{mine} ttft samples of {ASK}; ttft p99 needs at least 1000 per run" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    if not summary["generator"]["saturated"]:  # a saturated first run is not a set-up verdict: the gate's then
        assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["round-1-baseline"]
        assert f"round 1 baseline: {mine} ttft samples" in proc.stderr and f"{ASK} answers/s" in proc.stderr

    # two rounds judged on the class: its figures, its name in every output
    out, proc = both, procs[both]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith(f"PASS: no regression in 2 gated checks of {ASK} ("), proc.stdout
    data = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert data["tag"] == ASK and data["runs"] == {"baseline": 2, "candidate": 2}
    rows = {r["name"]: r for r in data["rows"]}
    for i, meta in enumerate(data["baseline"], 1):
        run = json.loads((out / f"round-{i}-baseline" / "summary.json").read_text(encoding="utf-8"))
        assert meta["tag"] == ASK and meta["tag_requests"] == run["by_tag"][ASK]["requests"]
        assert meta["tag_requests"]["offered"] < run["requests"]["offered"]
    firsts = [json.loads((out / f"round-{i}-baseline" / "summary.json").read_text(encoding="utf-8"))
              ["by_tag"][ASK]["latency_ms"]["ttft"]["p50"] for i in (1, 2)]  # fmt: skip
    assert rows["ttft p50"]["baseline"] == pytest.approx((firsts[0] * firsts[1]) ** 0.5, abs=1e-3)  # geometric mean
    suite = ET.fromstring((out / "junit.xml").read_text(encoding="utf-8"))
    assert suite.get("name") == f"loadtest.ab[{ASK}]"
    assert [c.get("name") for c in suite] == [f"ttft p50 [{ASK}]", f"throughput [{ASK}]"]
    assert f"gated checks of {ASK}" in (out / "compare.md").read_text(encoding="utf-8")
