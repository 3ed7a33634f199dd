"""A real regression in a closed loop is exit 1, not "run longer" (issue 22, item 1).

In a closed loop a slower candidate completes fewer answers: here its runs fall under the p99
sample floor (1,000 a run) that the baseline's clear. Before issue 22 ``ab`` then exited 2 after
every round ("run longer"), every time; now that one check is INCONCLUSIVE, naming the run and
the samples it had and needed, and the checks it can judge carry the regression.

Two independent servers, each a ``loadtest mock`` process with a lognormal TTFT (the baseline's
median 35 ms, p99 70 ms; the candidate's 50 % slower), ``ab`` pointed at their URLs as at two
deployments, 3 rounds of 13 s runs (12 s measured): the baseline answers ~100/s (~1,200 TTFT
samples a run), the candidate ~70/s (~840). Both sides' servers run at once, one run at a time
against them: ~85 s of wall time, so this is marked slow too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.helpers import run_cli

from loadtest.mock.process import MockProcess

pytestmark = [pytest.mark.realtime, pytest.mark.slow]

SCENARIO = """name: ab-slower-candidate
target: {url: mock}
load: {mode: closed, concurrency: 4, duration: 13s, warmup: 1s}
session:
  steps:
    - gen: {prompt: "Explain artificial intelligence"}
"""


def _server(median_ms: float, seed: int) -> MockProcess:
    ttft = json.dumps({"dist": "lognormal", "median": median_ms, "p99": 2 * median_ms})
    return MockProcess(["--ttft-ms", ttft, "--gap-ms", "1", "--chunks", "2", "--seed", str(seed)])


def test_a_slower_closed_loop_candidate_short_of_the_p99_floor_is_a_regression(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    out = tmp_path / "ab"
    # --allow-saturated, --retries 0: this machine is shared; what is judged is a 50 % change
    with _server(35.0, 1) as baseline, _server(52.5, 2) as candidate:
        proc = run_cli("ab", str(scenario), "--baseline", baseline, "--candidate", candidate, "--rounds", "3",
                       "--out", str(out), "--metric", "ttft", "--metric", "throughput", "--allow-saturated",
                       "--retries", "0", timeout=240, env={"LOADTEST_API_KEY": "ab-key"})  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr

    counts = {d.name: json.loads((d / "summary.json").read_text(encoding="utf-8"))["latency_ms"]["ttft"]["count"]
              for d in out.glob("round-*")}  # fmt: skip
    assert len(counts) == 6, counts
    # the situation: every baseline run cleared the floor, the candidate's did not
    assert all(n >= 1000 for name, n in counts.items() if name.endswith("baseline")), counts
    short = {name: n for name, n in counts.items() if name.endswith("candidate") and n < 1000}
    assert short, counts

    data = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert data["exit_code"] == 1 and data["regression"] is True
    rows = {r["name"]: r for r in data["rows"]}
    for name in ("ttft p50", "ttft p90", "throughput"):
        assert rows[name]["verdict"] == "REGRESSION", rows[name]
    assert 0.3 < rows["ttft p50"]["change"] < 0.7, rows["ttft p50"]
    p99 = rows["ttft p99"]
    assert p99["verdict"] == "INCONCLUSIVE" and p99["gated"] is True and p99["ci_low"] is None, p99
    worst = min(short, key=lambda name: short[name])
    assert p99["samples"] == {"role": "candidate", "run": str(out / worst), "had": short[worst], "needed": 1000,
                              "short_runs": len(short), "runs": 6}, p99  # fmt: skip
    assert (f"ttft p99: too few samples to judge: candidate {out / worst}: {short[worst]} ttft samples; ttft p99 "
            "needs at least 1000 per run") in proc.stdout  # fmt: skip
    last = proc.stdout.splitlines()[-1]
    assert last.startswith("REGRESSION: 3 of 4 gated checks regressed (ttft p50 +") and "ttft p99" in last, last
