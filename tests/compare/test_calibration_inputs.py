"""A damaged calibration.json is bad input for its consumers, ``compare --calibration`` and ``ab
--calibration``: exit 2 in one line naming the file, and for ``ab`` before anything runs (issue 22).

Before: a missing file or a directory was click's four-line usage error; ``runs: "6"`` and
``runs: 1`` were taken; a NaN noise floor was taken and collapsed every interval it widened to a
point (ttft p99 of two runs short of its sample floor was judged OK, a PASS); a negative one was
taken; a ``fingerprint`` or ``tag`` that was a number read as another workload or class; a
calibration of another workload or class was refused without naming the file.

And ``calibrate --allow-saturated`` now does what it says (before it was accepted and changed
nothing: saturated runs were left out of the calibration whatever the flag).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.inprocess import run_main
from support.rundir_factory import make_run_dir

from loadtest.compare.calibration import calibrate_runs
from loadtest.compare.gate import GateRules
from loadtest.compare.runs import load_run
from loadtest.errors import BadInput
from loadtest.scenario import fingerprint, load_scenario

# one run of it takes 8 s and more: an ab that started a run could not meet the bound below
AB_SCENARIO = """name: ab-calibration
target: {url: mock}
mock: {ttft_ms: 20, gap_ms: 2, chunks: 4}
load: {concurrency: 4, duration: 8s, warmup: 1s}
session:
  steps:
    - gen: {name: ask, prompt: "Explain artificial intelligence"}
"""


def _good(fp: str) -> dict[str, object]:
    return {"runs": 6, "fingerprint": fp, "tag": None, "noise": {"ttft p50": 0.02, "ttft p99": 0.05}}


# name -> (what the file holds: text, None for no file, or a function of the good file's data; what the line says)
CASES: dict[str, tuple[str | Callable[[dict[str, object]], str] | None, str]] = {
    "missing": (None, "missing (a calibration.json written by loadtest calibrate)"),
    "a directory": ("<dir>", "cannot read (Is a directory)"),
    "empty": ("", "not valid JSON"),
    "not JSON": ("{runs: 6", "not valid JSON"),
    "a list": ("[]", "not a calibration.json of loadtest calibrate (expected a JSON object at the top level)"),
    "without runs": (lambda d: json.dumps({k: v for k, v in d.items() if k != "runs"}),
                     "field 'runs' should be an integer >= 2, got None"),
    "runs a string": (lambda d: json.dumps(d | {"runs": "6"}), "field 'runs' should be an integer >= 2, got '6'"),
    "one run": (lambda d: json.dumps(d | {"runs": 1}), "field 'runs' should be an integer >= 2, got 1"),
    "noise a list": (lambda d: json.dumps(d | {"noise": [0.02]}), "field 'noise' should be an object"),
    "a NaN noise": (lambda d: json.dumps(d | {"noise": {"ttft p99": float("nan")}}), "NaN is not a JSON number"),
    "a negative noise": (lambda d: json.dumps(d | {"noise": {"ttft p50": -0.1}}),
                         "field 'noise.ttft p50' should be a number >= 0, got -0.1"),
    "a fingerprint that is a number": (lambda d: json.dumps(d | {"fingerprint": 5}),
                                       "field 'fingerprint' should be a string or null, got 5"),
    "a tag that is a number": (lambda d: json.dumps(d | {"tag": 5}), "field 'tag' should be a string or null, got 5"),
    "another workload": (lambda d: json.dumps(d | {"fingerprint": "0" * 64}),
                         "the calibration was measured on another workload"),
    "another class": (lambda d: json.dumps(d | {"tag": "web_search=true"}),
                      "the calibration was made for the request class web_search=true, these runs are judged whole"),
}


def _file(tmp_path: Path, case: str, fp: str) -> Path:
    content, _ = CASES[case]
    path = tmp_path / "calibration.json"
    if content == "<dir>":
        path.mkdir()
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif content is not None:
        path.write_text(content(_good(fp)), encoding="utf-8")
    return path


def _line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("cal")
    # 40/s for 18 s: 720 TTFT samples, short of p99's floor of 1,000: p99 is INCONCLUSIVE unless a
    # NaN noise floor makes its interval a point
    return {name: make_run_dir(tmp / name, seed=seed, rate_per_s=40).path for name, seed in (("a", 1), ("b", 2))}


@pytest.mark.parametrize("case", list(CASES))
def test_compare_names_a_damaged_calibration(dirs: dict[str, Path], tmp_path: Path, case: str) -> None:
    fp = json.loads((dirs["a"] / "summary.json").read_text(encoding="utf-8"))["fingerprint"]
    path = _file(tmp_path, case, fp)
    verdict = tmp_path / "verdict.json"
    outcome = run_main("compare", dirs["a"], dirs["b"], "--calibration", path, "--json", verdict)
    assert outcome.code == 2 and not outcome.out, (outcome.code, outcome.out, outcome.err)
    line = _line(outcome.err)
    assert (line.startswith(f"error: {path}: ") or line.startswith(f"error: --calibration {path}: ")), line
    assert CASES[case][1] in line, line
    assert not verdict.exists()


def test_the_good_calibration_is_taken_and_p99_stays_inconclusive(dirs: dict[str, Path], tmp_path: Path) -> None:
    # the control of the cases above; and what a NaN noise floor broke: p99 short of samples is INCONCLUSIVE
    fp = json.loads((dirs["a"] / "summary.json").read_text(encoding="utf-8"))["fingerprint"]
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(_good(fp)), encoding="utf-8")
    verdict = tmp_path / "verdict.json"
    outcome = run_main("compare", dirs["a"], dirs["b"], "--calibration", path, "--metric", "ttft", "--json", verdict)
    assert outcome.code == 0, outcome
    rows = {r["name"]: r for r in json.loads(verdict.read_text(encoding="utf-8"))["rows"]}
    assert "widened to the calibrated noise floor" in rows["ttft p50"]["method"], rows["ttft p50"]
    assert rows["ttft p99"]["verdict"] == "INCONCLUSIVE" and rows["ttft p99"]["ci_low"] is None, rows["ttft p99"]


def test_the_gate_refuses_a_noise_floor_that_is_not_a_number() -> None:
    # whoever builds the rules (the library, not only the command line)
    for noise in (float("nan"), float("inf"), -0.5):
        with pytest.raises(BadInput, match="noise must be finite numbers >= 0"):
            GateRules(noise={"ttft p50": noise}, noise_runs=6)


@pytest.mark.realtime  # it times the refusal
@pytest.mark.parametrize("case", list(CASES))
def test_ab_refuses_a_damaged_calibration_before_any_run(tmp_path: Path, case: str) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(AB_SCENARIO, encoding="utf-8")
    path = _file(tmp_path, case, fingerprint(load_scenario(scenario, environ={})))
    out = tmp_path / "ab"
    t0 = time.monotonic()
    outcome = run_main("ab", scenario, "--baseline", "mock", "--candidate", "mock", "--rounds", "2", "--out", out,
                       "--calibration", path)  # fmt: skip
    took = time.monotonic() - t0
    assert outcome.code == 2, (outcome.code, outcome.out, outcome.err)
    line = _line(outcome.err)
    assert str(path) in line and CASES[case][1] in line, line
    # in this process (the imports done by the first case): no run was started, nothing written
    assert took < 1.0, took
    assert not out.exists()


def test_calibrate_allow_saturated_keeps_the_saturated_runs(tmp_path: Path) -> None:
    runs = [load_run(make_run_dir(tmp_path / f"r{i}", seed=i, rate_per_s=10, duration_s=12, saturated=i == 2).path)
            for i in range(3)]  # fmt: skip
    left = calibrate_runs(runs, GateRules(), [("ttft", "p50")])
    kept = calibrate_runs(runs, GateRules(allow_saturated=True), [("ttft", "p50")])
    assert (left["runs"], left["left_out"], left["pairs"]) == (2, [runs[2].label], 1)
    assert (kept["runs"], kept["left_out"], kept["pairs"]) == (3, [], 3)
    assert runs[2].label in kept["labels"]
