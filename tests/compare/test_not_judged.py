"""What the release gate does with a check it cannot judge (issue 22, items 1 and 2).

* A gated percentile a run on either side has too few samples for is INCONCLUSIVE on its own,
  naming the run and the samples it had and needed; every other check is judged, so a regression
  elsewhere is still exit 1 (a closed-loop candidate slowed below the p99 floor by the regression
  itself was reported as bad input, exit 2, before).
* A verdict that judged no check is exit 2, with or without --strict, saying why (it printed
  "PASS: no regression in 0 gated checks (none judged)" and exited 0 before).
* With one run per side a run directory without the per-second data a gated check is judged on
  (its hlog, timeseries.csv) cannot be compared: exit 2 naming the file.

Synthetic run directories (tests/support/rundir_factory.py: an open loop of ``rate_per_s``
answers a second, 18 measured seconds); the command in a subprocess, as CI calls it.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path

import pytest
from support.helpers import run_cli, run_concurrently
from support.rundir_factory import make_run_dir

from loadtest.compare.calibration import calibrate_runs
from loadtest.compare.gate import INCONCLUSIVE, REGRESSION, GateRules, InvalidComparison, gate
from loadtest.compare.runs import load_run

TTFT = [("ttft", "p50"), ("ttft", "p90"), ("ttft", "p99")]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("judged")
    made = {
        # 80/s x 18 s: ~1,440 TTFT samples, over p99's floor of 1,000
        "base": make_run_dir(tmp / "base", seed=1, rate_per_s=80).path,
        "same": make_run_dir(tmp / "same", seed=2, rate_per_s=80).path,
        # 40/s: ~720, under p99's floor; 1.5x the TTFT (a slower candidate that answered less)
        "slow_few": make_run_dir(tmp / "slow_few", seed=3, rate_per_s=40, ttft_ms=180).path,
        "few": make_run_dir(tmp / "few", seed=4, rate_per_s=40).path,
        "few_again": make_run_dir(tmp / "few_again", seed=5, rate_per_s=40).path,
    }
    # a candidate whose histograms were deleted (the repro), one without timeseries.csv
    for name, pattern in (("no_hlogs", "*.hlog"), ("no_timeseries", "timeseries.csv")):
        shutil.copytree(made["same"], tmp / name)
        for f in (tmp / name).glob(pattern):
            f.unlink()
        made[name] = tmp / name
    return made


def _ttft_count(run: Path) -> int:
    count: int = json.loads((run / "summary.json").read_text(encoding="utf-8"))["latency_ms"]["ttft"]["count"]
    return count


# ---- the command -----------------------------------------------------------------------------


@pytest.mark.realtime
def test_a_candidate_without_its_histograms_cannot_be_compared(dirs: dict[str, Path]) -> None:
    base, cand = dirs["base"], dirs["no_hlogs"]
    procs = run_concurrently({flags: partial(run_cli, "compare", str(base), str(cand), *flags)
                              for flags in (("--min-tail", "1"), ("--metric", "ttft.p50"), ("--strict",))})
    for flags, proc in procs.items():
        assert proc.returncode == 2, (flags, proc.stdout, proc.stderr)
        assert "PASS" not in proc.stdout and "Traceback" not in proc.stderr
        assert f"candidate {cand}: {cand / 'ttft.hlog'} is missing: ttft p50 with one run per side is judged on " \
               "its per-second histograms" in proc.stderr, (flags, proc.stderr)


@pytest.mark.realtime
def test_a_comparison_that_judged_no_check_is_exit_2_with_or_without_strict(
        dirs: dict[str, Path], tmp_path: Path) -> None:  # fmt: skip
    base, few = dirs["base"], dirs["few"]
    files = {strict: (tmp_path / f"v{strict}.json", tmp_path / f"v{strict}.xml") for strict in (False, True)}
    jobs = {("p99", strict): partial(run_cli, "compare", str(base), str(few), "--metric", "ttft.p99",
                                     "--json", str(files[strict][0]), "--junit", str(files[strict][1]),
                                     *(["--strict"] if strict else [])) for strict in (False, True)}  # fmt: skip
    # itl alone with one run per side: reported, never gated (issue 13), so nothing is judged
    jobs[("itl", False)] = partial(run_cli, "compare", str(base), str(dirs["same"]), "--metric", "itl")
    procs = run_concurrently(jobs)
    n = _ttft_count(few)
    for strict in (False, True):
        proc = procs[("p99", strict)]
        assert proc.returncode == 2, (strict, proc.stdout, proc.stderr)
        assert not proc.stdout and "Traceback" not in proc.stderr
        assert proc.stderr.startswith("error: no check could be judged (ttft p99: too few samples to judge: "
                                      f"candidate {few}: {n} ttft samples; ttft p99 needs at least 1000 per run"), \
            proc.stderr  # fmt: skip
        data = json.loads(files[strict][0].read_text(encoding="utf-8"))  # the files say so too
        assert data["exit_code"] == 2 and data["judged"] == 0 and data["failed"] is True
        assert data["verdict"].startswith("NO VERDICT: no check could be judged")
        suite = ET.fromstring(files[strict][1].read_text(encoding="utf-8"))
        assert suite.get("errors") == "1" and suite.find("testcase[@name='verdict']/error") is not None
    proc = procs[("itl", False)]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no check could be judged (itl p50: the within-run interval of itl/tpot is overconfident" in proc.stderr


@pytest.mark.realtime
def test_a_regression_is_exit_1_when_the_candidate_lacks_samples_for_p99(
        dirs: dict[str, Path], tmp_path: Path) -> None:  # fmt: skip
    base, slow = dirs["base"], dirs["slow_few"]
    out = tmp_path / "verdict.json"
    proc = run_cli("compare", str(base), str(slow), "--metric", "ttft", "--json", str(out))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    n = _ttft_count(slow)
    assert n < 1000 <= _ttft_count(base)
    rows = {r["name"]: r for r in json.loads(out.read_text(encoding="utf-8"))["rows"]}
    assert rows["ttft p50"]["verdict"] == REGRESSION and rows["ttft p90"]["verdict"] == REGRESSION
    p99 = rows["ttft p99"]
    assert p99["verdict"] == INCONCLUSIVE and p99["gated"] is True and p99["ci_low"] is None, p99
    assert p99["samples"] == {"role": "candidate", "run": str(slow), "had": n, "needed": 1000, "short_runs": 1,
                              "runs": 2}  # fmt: skip
    lines = proc.stdout.splitlines()
    assert f"ttft p99: too few samples to judge: candidate {slow}: {n} ttft samples; ttft p99 needs at least " \
           "1000 per run (10 beyond the 99th percentile)" in lines  # fmt: skip
    assert any(line.startswith("ttft p99") and line.endswith("INCONCLUSIVE (too few samples)") for line in lines)
    assert lines[-1].startswith("REGRESSION: 2 of 3 gated checks regressed (ttft p50 +"), lines[-1]
    assert lines[-1].endswith("; too few samples to judge ttft p99)"), lines[-1]
    assert "over 2 gated checks (Holm)" in proc.stdout  # the unjudged check is not in the family


@pytest.mark.realtime
def test_identical_sides_short_of_p99_pass_on_the_checks_they_judge(dirs: dict[str, Path]) -> None:
    few, again = dirs["few"], dirs["few_again"]
    procs = run_concurrently({strict: partial(run_cli, "compare", str(few), str(again), "--metric", "ttft",
                                              *(["--strict"] if strict else [])) for strict in (False, True)})
    proc = procs[False]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.splitlines()[-1]
    assert last.startswith("PASS: no regression in 3 gated checks (") and "too few samples to judge ttft p99" in last
    # --strict as before: an INCONCLUSIVE gated check fails, this one too
    proc = procs[True]
    assert proc.returncode == 1 and proc.stdout.splitlines()[-1].startswith("INCONCLUSIVE (--strict)"), proc.stdout


# ---- the library -------------------------------------------------------------------------------


def test_rounds_judge_what_they_can_and_need_no_histograms(tmp_path: Path) -> None:
    # three rounds: the candidate's second run falls under p99's floor, the others clear it
    base = [load_run(make_run_dir(tmp_path / f"b{i}", seed=10 + i, rate_per_s=80).path) for i in range(3)]
    slow = [load_run(make_run_dir(tmp_path / f"s{i}", seed=30 + i, rate_per_s=40 if i == 1 else 80,
                                  ttft_ms=180, hlog_metrics=()).path) for i in range(3)]  # fmt: skip
    verdict = gate(base, slow, checks=TTFT)
    rows = {r.name: r for r in verdict.rows}
    assert rows["ttft p50"].verdict == REGRESSION and verdict.exit_code == 1, verdict.to_dict()
    p99 = rows["ttft p99"]
    assert p99.verdict == INCONCLUSIVE and not p99.judged and p99.samples is not None
    assert p99.samples["run"] == slow[1].label and p99.samples["role"] == "candidate"
    assert p99.samples["had"] == slow[1].summary_ms["ttft"]["count"] < 1000
    assert [r.name for r in verdict.judged] == ["ttft p50", "ttft p90"]  # rounds: summary.json, no hlog needed
    # identical sides (the same runs): judged, passed; the p99 of the short run not judged
    aa = gate(slow, slow, checks=TTFT)
    assert aa.exit_code == 0 and not aa.failed and {r.name for r in aa.judged} == {"ttft p50", "ttft p90"}
    assert gate(slow, slow, GateRules(strict=True), checks=TTFT).exit_code == 1


def test_one_run_per_side_needs_the_per_second_data_of_every_gated_check(dirs: dict[str, Path]) -> None:
    base = load_run(dirs["base"])
    no_ts = dirs["no_timeseries"]
    with pytest.raises(InvalidComparison, match=f"{no_ts / 'timeseries.csv'} is missing: error_rate with one run "
                                                "per side is judged on its per-second counts"):
        gate([base], [load_run(no_ts)], checks=[("ttft", "p50"), ("error_rate", "")])
    assert gate([base], [load_run(no_ts)], checks=TTFT[:1]).exit_code == 0  # what is gated is there
    # itl is not gated alone with one run per side: its missing hlog is not asked for
    verdict = gate([base], [load_run(dirs["no_hlogs"], ["ttft", "itl"])], checks=[("itl", "p50")])
    assert verdict.exit_code == 2 and "no check could be judged" in verdict.unjudged()


def test_a_calibration_counts_no_pass_on_a_pair_that_judged_nothing(dirs: dict[str, Path]) -> None:
    runs = [load_run(dirs["few"]), load_run(dirs["few_again"]), load_run(dirs["base"])]
    # p99 alone: every pair has a run under its floor (few, few_again), so no pair judges anything:
    # no false-alarm rate (it said "0 of 3" before issue 22); the noise stands
    made = calibrate_runs(runs, GateRules(), [("ttft", "p99")])
    assert made["pairs"] == 3 and made["judged_pairs"] == 0 and made["false_alarm_rate"] is None, made
    assert made["unjudged"].startswith("no check could be judged (ttft p99: too few samples to judge")
    assert made["noise"]["ttft p99"] > 0
    made = calibrate_runs(runs, GateRules(), TTFT)  # p50/p90 judged on every pair, p99 on none
    assert made["judged_pairs"] == 3 and made["false_alarm_rate"] is not None and made["unjudged"] is None
    assert set(made["noise"]) == {"ttft p50", "ttft p90", "ttft p99"}
