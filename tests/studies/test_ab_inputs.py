"""``ab`` checks every input before its first run (issue 22, item 6): both sides' scenarios (each
with its URL) and mock overrides, the tag, the calibration's workload. Before, a bad
``--candidate-mock`` was found only after the whole first baseline run. Each refusal here is exit 2
in about a second (about 1 s on this 2-core VM, most of it Python's start-up and imports; the
bound is generous for a loaded CI machine, far below one run) and leaves nothing under ``--out``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support.helpers import run_cli

from loadtest.compare.gate import GateRules
from loadtest.errors import BadInput
from loadtest.scenario import fingerprint, load_scenario
from loadtest.studies.ab import AbSide, run_ab

# one run of this takes 8 s and more: a refusal after a run cannot meet the bound below
SCENARIO = """name: ab-inputs
target: {url: mock}
mock: {ttft_ms: 20, gap_ms: 2, chunks: 4}
load: {concurrency: 4, duration: 8s, warmup: 1s}
session:
  steps:
    - gen: {name: ask, prompt: "Explain artificial intelligence"}
"""
BOUND_S = 4.0


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


def _calibration(tmp_path: Path, fp: str) -> Path:
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"runs": 6, "fingerprint": fp, "noise": {"ttft p50": 0.02}}), encoding="utf-8")
    return path


@pytest.mark.realtime
def test_bad_inputs_are_refused_before_the_first_run(scenario: Path, tmp_path: Path) -> None:
    other = _calibration(tmp_path, "0" * 64)
    cases = {
        "candidate mock": (["--candidate-mock", '{"nope": 1}'], "--candidate-mock: mock: unknown key 'nope'"),
        "baseline mock": (["--baseline-mock", '{"ttft_ms": -5}'], "--baseline-mock: ttft_ms: must be a finite"),
        "candidate dist": (["--candidate-mock", '{"ttft_ms": {"dist": "lognormal", "median": 50, "p99": 10}}'],
                           "--candidate-mock: ttft_ms: lognormal needs 0 < median < p99"),
        "tag value": (["--tag", "step=asq"], "--tag step=asq: no request of this scenario can carry it"),
        "tag key": (["--tag", "kind=chat"], "--tag kind=chat: no request of this scenario carries a tag 'kind'"),
        "calibration": (["--calibration", str(other)], "the calibration was measured on another workload"),
    }  # fmt: skip
    for name, (flags, needle) in cases.items():
        out = tmp_path / f"out-{name.replace(' ', '-')}"
        t0 = time.monotonic()
        proc = run_cli("ab", str(scenario), "--baseline", "mock", "--candidate", "mock", "--out", str(out), *flags,
                       timeout=60)  # fmt: skip
        took = time.monotonic() - t0
        assert proc.returncode == 2, (name, proc.stdout, proc.stderr)
        assert needle in proc.stderr and "Traceback" not in proc.stderr, (name, proc.stderr)
        assert took < BOUND_S, (name, took)
        assert not out.exists() or not any(out.iterdir()), (name, list(out.iterdir()))


@pytest.mark.realtime
def test_the_candidate_side_is_checked_before_the_baseline_runs(scenario: Path, tmp_path: Path) -> None:
    # a candidate URL that cannot be right, and one without the key it needs (the baseline, a
    # mock, needs none): both found before the baseline's first run, not after it
    for flags, needle in ((["--candidate", "http://example.com/chat"], "must be mock, or a ws:// or wss:// URL"),
                          (["--candidate", "ws://127.0.0.1:9/v2/chat"], "no API key")):  # fmt: skip
        out = tmp_path / "out"
        t0 = time.monotonic()
        proc = run_cli("ab", str(scenario), "--baseline", "mock", *flags, "--out", str(out), timeout=60,
                       env={"LOADTEST_API_KEY": ""})  # fmt: skip
        assert proc.returncode == 2 and needle in proc.stderr, (flags, proc.stderr)
        assert time.monotonic() - t0 < BOUND_S and not out.exists()


def test_run_ab_checks_both_sides_and_the_calibration_first(scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "ab"
    mock = AbSide(url="mock")
    with pytest.raises(BadInput, match="--candidate-mock: mock: unknown key 'nope'"):
        run_ab(scenario, baseline=mock, candidate=AbSide(url="mock", mock={"nope": 1}), rounds=3, out=out,
               environ={}, rules=GateRules(), checks=[("ttft", "p50")])  # fmt: skip
    with pytest.raises(BadInput, match="--candidate-mock needs --candidate mock"):
        run_ab(scenario, baseline=mock, candidate=AbSide(url="ws://127.0.0.1:9/v2/chat", mock={"ttft_ms": 30}),
               rounds=3, out=out, environ={"LOADTEST_API_KEY": "k"}, rules=GateRules(), checks=[("ttft", "p50")])
    with pytest.raises(BadInput, match="the calibration was measured on another workload"):
        run_ab(scenario, baseline=mock, candidate=mock, rounds=3, out=out, environ={}, checks=[("ttft", "p50")],
               rules=GateRules(noise={"ttft p50": 0.02}, noise_runs=6, noise_fingerprint="0" * 64))
    assert not out.exists()  # nothing ran
    assert fingerprint(load_scenario(scenario, environ={})) != "0" * 64  # the calibration's is another workload's
