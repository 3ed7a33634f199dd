"""The release gate of issue 13: the interval statistics on known data (against hand
computations, scipy and Newcombe's published examples), the verdict rules on synthetic run
directories (no sockets), and ``loadtest ab`` end to end against the embedded mock."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps
from support.helpers import run_cli, run_concurrently
from support.rundir_factory import make_run_dir

from loadtest.compare.gate import GateRules, InvalidComparison, gate
from loadtest.compare.intervals import (
    Estimate,
    block_indices,
    f_sf,
    holm,
    paired_t,
    pooled,
    t_cdf,
    t_ppf,
    welch,
)
from loadtest.compare.rundata import RunData
from loadtest.compare.runs import load_run
from loadtest.studies.ab import order

# ---- statistics on known data --------------------------------------------------------------


@pytest.mark.parametrize("df", [1, 2, 3, 4.7, 9, 30, 250])
def test_t_quantiles_and_cdf_match_scipy(df: float) -> None:
    for p in (0.5, 0.9, 0.95, 0.975, 0.995, 0.9995, 0.02):
        assert t_ppf(p, df) == pytest.approx(sps.t.ppf(p, df), rel=1e-9, abs=1e-9)
    for t in (-3.0, -0.4, 0.0, 1.0, 2.5, 12.0):
        assert t_cdf(t, df) == pytest.approx(sps.t.cdf(t, df), rel=1e-9, abs=1e-12)


def test_paired_t_interval_by_hand() -> None:
    # per-round log ratios 0.10, 0.12, 0.08: mean 0.10, sd 0.02, se 0.02/√3, t(0.975, 2) = 4.302653
    est = paired_t([0.10, 0.12, 0.08])
    half = 4.302653 * 0.02 / math.sqrt(3)
    lo, hi = est.interval(0.025)
    assert (est.value, est.df) == (pytest.approx(0.10), 2.0)
    assert lo == pytest.approx(0.10 - half, abs=1e-6) and hi == pytest.approx(0.10 + half, abs=1e-6)
    ref = sps.ttest_1samp([0.10, 0.12, 0.08], 0.0).confidence_interval(0.95)
    assert (lo, hi) == (pytest.approx(ref.low, abs=1e-9), pytest.approx(ref.high, abs=1e-9))
    # one-sided p of "δ ≤ log 1.1" against scipy's one-sample t test
    tau = math.log(1.1)
    expected = sps.ttest_1samp(np.array([0.10, 0.12, 0.08]) - tau, 0.0, alternative="greater").pvalue
    assert est.p_above(tau) == pytest.approx(expected, rel=1e-7)


def test_welch_interval_matches_scipy() -> None:
    b, c = [4.60, 4.62, 4.57, 4.61], [4.70, 4.66, 4.74]
    est = welch(b, c)
    ref = sps.ttest_ind(c, b, equal_var=False).confidence_interval(0.95)
    lo, hi = est.interval(0.025)
    assert lo == pytest.approx(ref.low, abs=1e-9) and hi == pytest.approx(ref.high, abs=1e-9)
    one = welch([4.60], [4.70, 4.66, 4.74])  # one baseline run: the candidate's variance, df 2
    assert one.df == 2 and one.se == pytest.approx(np.std([4.70, 4.66, 4.74], ddof=1) * math.sqrt(1 + 1 / 3))


def test_holm_step_down() -> None:
    # m = 4, alpha 0.05: thresholds 0.0125, 0.0167, 0.025, 0.05 by rank
    out = holm([0.01, 0.04, 0.015, 0.03], 0.05)
    assert [r for r, _ in out] == [True, False, True, False]  # 0.03 > 0.025 stops the step-down
    assert [round(level, 4) for _, level in out] == [0.0125, 0.05, 0.0167, 0.025]


def test_block_indices_are_runs_of_consecutive_seconds() -> None:
    idx = block_indices(23, 5, 200, np.random.default_rng(0))
    assert idx.shape == (200, 23) and idx.min() >= 0 and idx.max() <= 22
    assert all(np.all(np.diff(row[:5]) == 1) for row in idx)


def test_a_bootstrap_estimate_gives_quantile_intervals_and_p_values() -> None:
    est = Estimate(0.0, "b", draws=tuple(np.linspace(-1, 1, 1001)))
    assert est.interval(0.05) == (pytest.approx(-0.9), pytest.approx(0.9))
    assert est.p_above(0.8) == pytest.approx(0.9, abs=0.002)


# ---- the verdict on synthetic run directories (no sockets) ---------------------------------


def _runs(tmp: Path, name: str, n: int, **kw: object) -> list[RunData]:
    out = []
    for i in range(n):
        path = tmp / f"{name}-{i}"
        make_run_dir(path, seed=int(kw.pop("seed", 100)) + i if "seed" not in kw else 0, rate_per_s=80, **kw)  # type: ignore[arg-type]
        out.append(load_run(path))
    return out


TTFT = (("ttft", "p50"), ("ttft", "p90"), ("ttft", "p99"))


@pytest.mark.realtime
def test_one_stalled_second_is_not_a_regression(tmp_path: Path) -> None:
    clean = make_run_dir(tmp_path / "clean", seed=1, rate_per_s=80).path
    stalled = make_run_dir(tmp_path / "stalled", seed=2, rate_per_s=80, stall=(9, 800.0)).path
    verdict = gate([load_run(clean)], [load_run(stalled)], checks=TTFT)
    p99 = next(r for r in verdict.rows if r.name == "ttft p99")
    assert p99.change is not None and p99.change > 0.5, p99  # the stall moves p99 a lot...
    assert p99.verdict != "REGRESSION" and not verdict.failed, verdict.to_dict()  # ...but is one second
    proc = run_cli("compare", str(clean), str(stalled), "--metric", "ttft")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rounds_use_run_level_variance(tmp_path: Path) -> None:
    base = [load_run(make_run_dir(tmp_path / f"b{i}", seed=10 + i, rate_per_s=80).path) for i in range(3)]
    same = [load_run(make_run_dir(tmp_path / f"a{i}", seed=20 + i, rate_per_s=80).path) for i in range(3)]
    slow = [load_run(make_run_dir(tmp_path / f"s{i}", seed=30 + i, rate_per_s=80, ttft_ms=180).path)
            for i in range(3)]  # fmt: skip
    aa = gate(base, same, checks=[("ttft", "p50"), ("e2e", "p50")])
    assert not aa.failed and aa.mode.startswith("3 paired rounds"), aa.to_dict()
    row = aa.rows[0]
    assert row.method == "paired t over 3 rounds" and row.ci is not None and row.ci[0] < 0 < row.ci[1]
    ab = gate(base, slow, checks=[("ttft", "p50")])
    assert ab.failed and ab.rows[0].verdict == "REGRESSION" and 0.4 < ab.rows[0].change < 0.6, ab.to_dict()
    unpaired = gate(base, slow[:2], checks=[("ttft", "p50")])
    assert unpaired.rows[0].method.startswith("Welch") and unpaired.rows[0].verdict == "REGRESSION"


@pytest.mark.realtime
def test_invalid_comparisons_exit_2(tmp_path: Path) -> None:
    ok = make_run_dir(tmp_path / "ok", seed=1, rate_per_s=80).path
    sat = make_run_dir(tmp_path / "sat", seed=2, rate_per_s=80, saturated=True).path
    few = make_run_dir(tmp_path / "few", seed=3, rate_per_s=20).path
    short = tmp_path / "short"
    make_run_dir(short, seed=4, rate_per_s=80)
    summary = json.loads((short / "summary.json").read_text(encoding="utf-8"))
    summary["schedule"]["achieved_rate"] = summary["schedule"]["offered_rate"] * 0.95
    (short / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    procs = run_concurrently({  # the four compares at once: each reads its directories, none writes
        "sat": partial(run_cli, "compare", str(ok), str(sat)),
        "few p99": partial(run_cli, "compare", str(ok), str(few), "--metric", "ttft.p99"),
        "few p50": partial(run_cli, "compare", str(ok), str(few), "--metric", "ttft.p50"),
        "short": partial(run_cli, "compare", "--baseline", str(ok), "--candidate", str(short), "--metric", "ttft.p50"),
    })
    proc = procs["sat"]
    assert proc.returncode == 2 and "saturated" in proc.stderr, proc.stderr
    proc = procs["few p99"]
    assert proc.returncode == 2 and "ttft p99 needs at least 1000 per run" in proc.stderr, proc.stderr
    assert procs["few p50"].returncode == 0
    proc = procs["short"]
    assert proc.returncode == 2 and "the generator fell behind" in proc.stderr, proc.stderr


def test_itl_gates_alone_only_with_a_calibration(tmp_path: Path) -> None:
    b = load_run(make_run_dir(tmp_path / "b", seed=1, rate_per_s=80).path)
    c = load_run(make_run_dir(tmp_path / "c", seed=2, rate_per_s=80).path)
    plain = gate([b], [c], checks=[("itl", "p99")])
    assert not plain.rows[0].gated and "overconfident" in " ".join(plain.notes)
    calibrated = gate([b], [c], GateRules(noise={"itl p99": 0.05}, noise_runs=6), checks=[("itl", "p99")])
    row = calibrated.rows[0]
    assert row.gated and "noise floor" in row.method and row.ci is not None
    assert row.ci[1] - row.ci[0] > 2 * 1.96 * math.sqrt(2) * 0.05 * 0.9  # at least the floor's width


def test_pooled_variance_by_hand() -> None:
    # 3 rounds, s = 0.02 (2 df) pooled with a calibration of 10 runs whose per-round variance
    # is 2 × 0.01² (9 df): s²p = (2·0.0004 + 9·0.0002) / 11, df 11
    est = pooled(paired_t([0.10, 0.12, 0.08]), var=2 * 0.01**2 / 3, runs=10, what="a calibration")
    s2p = (2 * 0.02**2 + 9 * 2 * 0.01**2) / 11
    assert est.df == 11 and est.value == pytest.approx(0.10)
    assert est.se == pytest.approx(math.sqrt(s2p / 3), rel=1e-12)
    lo, _ = est.interval(0.01)
    assert lo == pytest.approx(0.10 - sps.t.ppf(0.99, 11) * math.sqrt(s2p / 3), abs=1e-9)
    assert pooled(paired_t([0.1, 0.2]), var=0.01, runs=1, what="x").df == 1  # one run: nothing to pool
    # rounds far noisier than the calibration (F = 0.0004 / 0.00002 = 20 on (2, 9) df, p ≈ 0.0005):
    # its variance is not theirs; the rounds' own interval stands, and the method says why
    misfit = pooled(paired_t([0.10, 0.12, 0.08]), var=2 * 0.01**2 / 10 / 3, runs=10, what="a calibration")
    assert misfit.df == 2 and "not pooled" in misfit.method


@pytest.mark.parametrize(("x", "d1", "d2"), [(1.0, 2, 9), (5.0, 2, 9), (20.0, 2, 9), (0.3, 4, 20), (12.0, 1, 3)])
def test_f_survival_matches_scipy(x: float, d1: int, d2: int) -> None:
    assert f_sf(x, d1, d2) == pytest.approx(sps.f.sf(x, d1, d2), rel=1e-9)


def test_a_calibration_gives_rounds_more_degrees_of_freedom(tmp_path: Path) -> None:
    base = [load_run(make_run_dir(tmp_path / f"b{i}", seed=10 + i, rate_per_s=80).path) for i in range(3)]
    slow = [load_run(make_run_dir(tmp_path / f"s{i}", seed=30 + i, rate_per_s=80, ttft_ms=180).path)
            for i in range(3)]  # fmt: skip
    checks = [("ttft", "p50")]
    plain = gate(base, slow, checks=checks).rows[0]
    deltas = [math.log(c.summary_ms["ttft"]["p50"] / b.summary_ms["ttft"]["p50"]) for b, c in zip(base, slow, strict=True)]
    s2 = float(np.var(deltas, ddof=1))
    sigma = math.sqrt(s2 / 2) / 2  # a calibration that saw less noise than these 3 rounds (F = 4, p ≈ 0.06)
    fp = base[0].fingerprint
    cal = gate(base, slow, GateRules(noise={"ttft p50": sigma}, noise_runs=10, noise_fingerprint=fp),
               checks=checks).rows[0]  # fmt: skip
    assert "pooled with a calibration of 10 runs (11 df)" in cal.method, cal
    assert plain.ci is not None and cal.ci is not None
    se = math.sqrt((2 * s2 + 9 * 2 * sigma**2) / 11 / 3)
    half = sps.t.ppf(1 - 0.05, 11) * se  # one gated check: its interval has alpha on each side
    mean = float(np.mean(deltas))
    assert cal.ci == (pytest.approx(math.expm1(mean - half), abs=2e-6), pytest.approx(math.expm1(mean + half), abs=2e-6))
    assert cal.ci[1] - cal.ci[0] < plain.ci[1] - plain.ci[0], (plain, cal)
    # the smallest regression called 80 % of the time: τ + (t(1 − α/m) + t(0.8))·se, on 2 df
    # alone and on 11 with the calibration
    for row, df, se_ in ((plain, 2, math.sqrt(s2 / 3)), (cal, 11, se)):
        expected = math.expm1(math.log(1.1) + (sps.t.ppf(0.95, df) + sps.t.ppf(0.8, df)) * se_)
        assert row.detectable == pytest.approx(expected, abs=2e-6), row
    with pytest.raises(InvalidComparison, match="another workload"):
        gate(base, slow, GateRules(noise={"ttft p50": 0.01}, noise_runs=10, noise_fingerprint="0" * 64),
             checks=checks)  # fmt: skip


def test_ab_runs_a_round_again_when_a_generator_saturated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # fake runs: the candidate of round 2 is saturated on its first attempt only; every run is a
    # synthetic run directory (no sockets). The spoiled round is kept aside, run again with a new
    # seed, and the verdict says so; a second saturation with no retry left is judged as it is.
    import loadtest.studies.ab as ab_mod
    from loadtest.studies.ab import AbSide, run_ab

    calls: list[tuple[str, int]] = []

    def fake_run(sc: object, options: Any) -> dict[str, object]:
        run_dir = options.out
        role = run_dir.name.split("-")[-1]
        calls.append((run_dir.name, sc.load.seed))  # type: ignore[attr-defined]
        saturated = run_dir.name == "round-2-candidate" and sum(n == run_dir.name for n, _ in calls) == 1
        make_run_dir(run_dir, seed=len(calls), rate_per_s=10, duration_s=12, saturated=saturated)
        return {"verdict": "passed", "role": role}

    monkeypatch.setattr(ab_mod, "run_to_dir", fake_run)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(_AB, encoding="utf-8")
    side = AbSide(url="mock")
    result = run_ab(scenario, baseline=side, candidate=side, rounds=3, out=tmp_path / "ab", environ={},
                    rules=GateRules(), checks=[("ttft", "p50")], seed=100)  # fmt: skip
    assert [n for n, _ in calls] == ["round-1-baseline", "round-1-candidate", "round-2-candidate",
                                     "round-2-baseline", "round-2-candidate", "round-2-baseline",
                                     "round-3-baseline", "round-3-candidate"]  # fmt: skip
    seeds = [seed for _, seed in calls]
    assert seeds == [100, 100, 101, 101, 102, 102, 103, 103]  # a re-run round draws a new seed
    assert (tmp_path / "ab" / "round-2-candidate.spoiled-1").is_dir()
    assert (tmp_path / "ab" / "round-2-baseline.spoiled-1").is_dir()
    assert result.verdict is not None and len(result.baseline) == len(result.candidate) == 3
    assert not any(r.saturated for r in result.candidate)
    assert result.rerun and "round 2 run again" in result.verdict.notes[0], result.verdict.notes
    calls.clear()
    with pytest.raises(InvalidComparison, match="saturated"):  # no retry left: refused as before
        run_ab(scenario, baseline=side, candidate=side, rounds=3, out=tmp_path / "ab0", environ={},
               rules=GateRules(), checks=[("ttft", "p50")], seed=100, retries=0)  # fmt: skip


def test_calibration_leaves_out_saturated_runs(tmp_path: Path) -> None:
    from loadtest.compare.calibration import calibrate_runs
    from loadtest.errors import BadInput

    def run(i: int, *, saturated: bool = False, ttft_ms: float = 120.0) -> RunData:
        return load_run(make_run_dir(tmp_path / f"r{i}", seed=i, rate_per_s=10, duration_s=12, saturated=saturated,
                                     ttft_ms=ttft_ms).path)  # fmt: skip

    clean = [run(i) for i in range(3)]
    starved = run(9, saturated=True, ttft_ms=400.0)  # a starved generator: its figures are far off
    result = calibrate_runs([*clean, starved], GateRules(), [("ttft", "p50")])
    assert result["runs"] == 3 and result["left_out"] == [starved.label] and result["pairs"] == 3
    assert result["noise"]["ttft p50"] < 0.1  # the 400 ms run is not in it
    with pytest.raises(BadInput, match="2 of 3 left out"):
        calibrate_runs([clean[0], starved, run(10, saturated=True)], GateRules(), [("ttft", "p50")])


def test_order_alternates() -> None:
    assert [order(i)[0] for i in range(1, 5)] == ["baseline", "candidate", "baseline", "candidate"]


# ---- loadtest ab end to end against the embedded mock ---------------------------------------

_AB = """\
name: ab
target: {url: mock}
mock: {ttft_ms: 20, gap_ms: 1, chunks: 3}
load: {mode: closed, concurrency: 4, duration: 3s, warmup: 1s}
session: {steps: [{gen: {prompt: "Explain artificial intelligence"}}]}
"""


@pytest.mark.realtime
@pytest.mark.slow
def test_ab_end_to_end(tmp_path: Path) -> None:
    scenario = tmp_path / "ab.yaml"
    scenario.write_text(_AB, encoding="utf-8")
    # --allow-saturated --retries 0: this machine is shared, and a 3 s run's loop-lag p99 comes
    # from a handful of samples; the gate's refusal of saturated runs is tested on synthetic runs,
    # the rerun of a saturated round in test_ab_runs_a_round_again_when_a_generator_saturated
    flags = ["--rounds", "2", "--metric", "ttft.p50", "--metric", "e2e.p50", "--metric", "throughput",
             "--allow-saturated", "--retries", "0"]
    # The two ab commands at once (each its own embedded mocks and directory): they cannot time
    # one another. A run is 4 closed-loop users, under 10 % of a core for its generator
    # (generator.cpu_percent) and less for its mock: two such pairs leave a core idle, and a late
    # wake-up costs about a millisecond, against the +40 ms (20 vs 60 ms) judged below and the
    # wide margin of the A/A pass; ab judges each round's two sides, which run at the same moment.
    aa, slow = tmp_path / "aa", tmp_path / "slow"
    procs = run_concurrently({
        aa: partial(run_cli, "ab", str(scenario), "--baseline", "mock", "--candidate", "mock", "--out", str(aa),
                    *flags),
        slow: partial(run_cli, "ab", str(scenario), "--baseline", "mock", "--candidate", "mock", "--candidate-mock",
                      '{"ttft_ms": 60}', "--out", str(slow), *flags),
    })  # fmt: skip
    out, proc = aa, procs[aa]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["compare.json", "compare.md", "junit.xml", "round-1-baseline",
                                                     "round-1-candidate", "round-2-baseline", "round-2-candidate"]
    data = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert data["failed"] is False and data["runs"] == {"baseline": 2, "candidate": 2}
    seeds = [(r["seed"], r["mock_seed"]) for r in data["baseline"] + data["candidate"]]
    assert seeds[0][0] == seeds[2][0] and seeds[0][0] != seeds[1][0]  # a round's two sides share load.seed
    assert len({m for _, m in seeds}) == 4  # every run its own mock draw
    assert (out / "compare.md").read_text(encoding="utf-8").startswith("## ✅ PASS")

    out, proc = slow, procs[slow]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = {r["name"]: r for r in json.loads((out / "compare.json").read_text(encoding="utf-8"))["rows"]}
    assert rows["ttft p50"]["verdict"] == "REGRESSION" and 1.5 < rows["ttft p50"]["change"] < 2.5, rows
    assert (out / "compare.md").read_text(encoding="utf-8").startswith("## ❌ REGRESSION")
    suite = ET.parse(out / "junit.xml").getroot()
    assert suite.get("tests") == "3" and int(suite.get("failures") or 0) >= 1
    failed = [c.get("name") for c in suite if c.find("failure") is not None]
    assert "ttft p50" in failed
