"""``loadtest compare --tag KEY=VALUE`` (issue 19): the release gate judged on one request class.

Synthetic run directories (no sockets) with two classes, ``web_search=true`` and
``web_search=false``, drawn half and half; a class's first token waits ``tag_delay_ms`` longer.
Swapping which class waits leaves the whole run's distribution as it was while one class gets
~40 % slower: the whole-run gate must pass it and the class's gate must not. The CLI is called
in-process through ``loadtest.cli.main.main`` (exit codes as a user sees them)."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support.rundir_factory import make_run_dir

from loadtest.cli import main as cli
from loadtest.compare.calibration import calibrate_runs
from loadtest.compare.floors import sample_shortfalls
from loadtest.compare.gate import GateRules, InvalidComparison, gate
from loadtest.compare.runs import load_run

WS = "web_search=true"
PLAIN = "web_search=false"
CLASSES = {"web_search": ["false", "true"]}
FP = "3f" * 32  # the factory's workload fingerprint
# the latency checks and the rates: itl/tpot are never gated with one run per side (issue 13)
CHECKS = ["--metric", "ttft", "--metric", "e2e", "--metric", "error_rate", "--metric", "throughput"]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("classes")
    # 160/s for 18 measured seconds: ~1,400 answers per class, enough for a class's p99 (1,000)
    runs = {
        "base": {"seed": 1, "tags": CLASSES, "tag_delay_ms": {PLAIN: 50}},  # true 120 ms, false 170 ms
        "swap": {"seed": 2, "tags": CLASSES, "tag_delay_ms": {WS: 50}},  # true 170 ms (+40 %), false 120 ms
        "plain_slow": {"seed": 3, "tags": CLASSES, "tag_delay_ms": {PLAIN: 150}},  # true as base, false 270 ms
        "no_ws": {"seed": 4, "tags": {"web_search": ["false"]}, "tag_delay_ms": {PLAIN: 50}},
        "old": {"seed": 5},  # written before request classes: no by_tag
    }
    return {name: make_run_dir(tmp / name, rate_per_s=160, **kw).path for name, kw in runs.items()}


def _compare(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["loadtest", "compare", *map(str, args)])
    with pytest.raises(SystemExit) as info:
        cli.main()
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


def _by_tag(run: Path, tag: str) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads((run / "summary.json").read_text(encoding="utf-8"))["by_tag"][tag]
    return entry


def test_a_class_regression_the_whole_run_hides_fails_with_its_tag(
        dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:  # fmt: skip
    base, swap = dirs["base"], dirs["swap"]
    code, out, _ = _compare(monkeypatch, capsys, base, swap)
    assert code == 0, out
    assert out.splitlines()[-1].startswith("PASS: no regression in 8 gated checks ("), out
    assert "REGRESSION" not in out and "class:" not in out

    files = {k: tmp_path / f"verdict.{k}" for k in ("json", "md", "xml")}
    code, out, err = _compare(monkeypatch, capsys, base, swap, "--tag", WS, *CHECKS, "--json", files["json"],
                              "--markdown", files["md"], "--junit", files["xml"])  # fmt: skip
    assert code == 1, out + err
    last = out.splitlines()[-1]
    assert last.startswith(f"REGRESSION: 2 of 8 gated checks of {WS} regressed (ttft p50 +"), last
    assert f"class:     {WS} (only the requests that carried it)" in out
    data = json.loads(files["json"].read_text(encoding="utf-8"))
    assert data["tag"] == WS and data["verdict"] == last and data["failed"] is True
    assert [m["tag"] for m in data["baseline"] + data["candidate"]] == [WS, WS]
    rows = {r["name"]: r for r in data["rows"]}
    assert {n for n, r in rows.items() if r["verdict"] == "REGRESSION"} == {"ttft p50", "ttft p90"}
    assert 0.3 < rows["ttft p50"]["change"] < 0.5 and rows["ttft p50"]["ci_low"] > 0.1, rows["ttft p50"]
    # every figure is the class's own (summary.json by_tag), not the run's
    theirs = _by_tag(base, WS)
    assert rows["ttft p50"]["baseline"] == theirs["latency_ms"]["ttft"]["p50"]
    assert rows["e2e p99"]["baseline"] == theirs["latency_ms"]["e2e"]["p99"]
    assert rows["error_rate"]["baseline"] == theirs["error_rate"]
    assert rows["throughput"]["baseline"] == theirs["throughput"]["requests_per_s"]
    whole = json.loads((base / "summary.json").read_text(encoding="utf-8"))
    assert rows["throughput"]["baseline"] < 0.6 * whole["throughput"]["requests_per_s"]  # half the requests
    md = files["md"].read_text(encoding="utf-8")
    assert md.startswith(f"## ❌ REGRESSION: 2 of 8 gated checks of {WS}") and f"Request class `{WS}` only." in md
    suite = ET.fromstring(files["xml"].read_text(encoding="utf-8"))
    assert suite.get("name") == f"loadtest.compare[{WS}]" and suite.get("failures") == "2"
    failed = [c.get("name") for c in suite if c.find("failure") is not None]
    assert failed == [f"ttft p50 [{WS}]", f"ttft p90 [{WS}]"]


def test_a_whole_run_regression_in_another_class_passes_the_clean_one(
        dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    base, slow = dirs["base"], dirs["plain_slow"]
    code, out, _ = _compare(monkeypatch, capsys, base, slow, *CHECKS)
    assert code == 1 and out.splitlines()[-1].startswith("REGRESSION: ") and "ttft p50 +" in out.splitlines()[-1]
    assert " of web_search" not in out.splitlines()[-1]
    code, out, _ = _compare(monkeypatch, capsys, base, slow, "--tag", WS, *CHECKS)
    assert code == 0, out
    assert out.splitlines()[-1].startswith(f"PASS: no regression in 8 gated checks of {WS} ("), out
    code, out, _ = _compare(monkeypatch, capsys, base, slow, "--tag", PLAIN, "--metric", "ttft")
    assert code == 1 and out.splitlines()[-1].startswith(f"REGRESSION: 3 of 3 gated checks of {PLAIN} regressed")


def test_a_tag_no_request_carried_never_passes(
        dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    code, out, err = _compare(monkeypatch, capsys, dirs["base"], dirs["no_ws"], "--tag", WS, *CHECKS)
    assert code == 2 and not out, out
    assert err.strip() == f"error: run {dirs['no_ws']}: no requests carried {WS} (its classes: {PLAIN})", err
    # a key no run has: the first run named, with the classes it does have
    code, _, err = _compare(monkeypatch, capsys, dirs["base"], dirs["swap"], "--tag", "tools=true")
    assert code == 2 and f"run {dirs['base']}: no requests carried tools=true (its classes: {PLAIN}, {WS})" in err


def test_a_run_written_before_request_classes_is_refused(
        dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    code, _, err = _compare(monkeypatch, capsys, dirs["old"], dirs["base"], "--tag", WS)
    assert code == 2, err
    assert f"run {dirs['old']}: its summary.json has no by_tag" in err and "compare it without --tag" in err
    assert "Traceback" not in err


def test_a_malformed_tag_or_a_metric_without_classes_is_bad_input(
        dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    for bad in ("web_search", "=true", ""):
        code, out, err = _compare(monkeypatch, capsys, dirs["base"], dirs["swap"], "--tag", bad)
        assert code == 2 and not out, (bad, err)
        assert "Invalid value for '--tag'" in err and "KEY=VALUE" in err, err
    code, _, err = _compare(monkeypatch, capsys, dirs["base"], dirs["swap"], "--tag", WS, "--metric", "queue.p50")
    assert code == 2 and "--metric queue: not kept per request class" in err, err


def test_the_floors_count_the_class_samples(
        dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    # --min-tail 20: p99 needs 2,000 samples per run; the whole run has ~2,800, each class ~1,400
    base, swap = dirs["base"], dirs["swap"]
    code, out, err = _compare(monkeypatch, capsys, base, swap, "--metric", "ttft.p99", "--min-tail", "20")
    assert code in (0, 1), err  # judged
    code, out, err = _compare(monkeypatch, capsys, base, swap, "--metric", "ttft.p99", "--min-tail", "20", "--tag", WS)
    # issue 22: the only check short of samples: nothing judged, exit 2, naming the run furthest below
    counts = {role: _by_tag(path, WS)["latency_ms"]["ttft"]["count"] for role, path in (("baseline", base),
                                                                                         ("candidate", swap))}
    role = min(counts, key=lambda r: counts[r])
    n, path = counts[role], base if role == "baseline" else swap
    assert code == 2 and not out, out
    assert f"no check of {WS} could be judged (ttft p99: too few samples to judge" in err, err
    assert f"{role} {path}: {n} ttft samples of {WS}; ttft p99 needs at least 2000 per run" in err, err
    # a request metric the class has no sample of counts 0: refused, never judged on nothing
    run = load_run(base, tag=WS)
    assert run.summary_ms["tpot_token"] == {"count": 0}
    (lack,) = sample_shortfalls(run, [("tpot_token", "p50")], GateRules(), single=True)
    assert lack.text.startswith(f"0 tpot_token samples of {WS}; tpot_token p50 needs at least 20 per run")


def test_a_class_per_second_counts_add_up_to_the_run(dirs: dict[str, Path]) -> None:
    # each request carries one web_search value: its classes' seconds add up to timeseries.csv's
    base = dirs["base"]
    whole, ws, plain = load_run(base), load_run(base, tag=WS), load_run(base, tag=PLAIN)
    assert len(whole.completions_per_s) >= 10
    for series in ("completions_per_s", "errors_per_s", "attempts_per_s"):
        total = np.asarray(getattr(ws, series)) + np.asarray(getattr(plain, series))
        assert total.tolist() == list(getattr(whole, series)), series
    # and they are the class's own: its completed rows of requests.csv in those seconds
    rows = pd.read_csv(base / "requests.csv")
    mine = rows[rows["tags"].str.split(";").apply(lambda t: WS in t) & (rows["outcome"] == "ok")]
    seconds = np.floor(mine["t_stop_s"]).astype(int)
    first = 2  # the factory's warm-up
    assert ws.completions_per_s[0] == int((seconds == first).sum()) > 0
    assert ws.intervals["ttft"] and ws.fingerprint == whole.fingerprint and ws.mode == whole.mode


def test_runs_of_different_classes_are_not_compared(dirs: dict[str, Path]) -> None:
    with pytest.raises(InvalidComparison, match=f"different request classes \\(the whole run, {WS}\\)"):
        gate([load_run(dirs["base"])], [load_run(dirs["swap"], tag=WS)], checks=[("ttft", "p50")])


def test_a_calibration_serves_only_the_class_it_was_made_for(
        dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:  # fmt: skip
    base, swap = dirs["base"], dirs["swap"]
    made = calibrate_runs([load_run(base, tag=WS), load_run(dirs["plain_slow"], tag=WS)], GateRules(),
                          [("ttft", "p50")])  # fmt: skip
    assert made["tag"] == WS and made["runs"] == 2 and made["noise"]["ttft p50"] > 0
    assert calibrate_runs([load_run(base), load_run(swap)], GateRules(), [("ttft", "p50")])["tag"] is None

    def calibration(tag: str | None) -> Path:
        path = tmp_path / f"calibration-{tag}.json"
        data = {"runs": 6, "fingerprint": FP, "noise": {"ttft p50": 0.05, "ttft p99": 0.05}}
        path.write_text(json.dumps(data if tag is None else {**data, "tag": tag}), encoding="utf-8")
        return path

    whole, for_ws = calibration(None), calibration(WS)
    code, _, err = _compare(monkeypatch, capsys, base, swap, "--tag", WS, "--calibration", whole)
    assert code == 2 and "the calibration was made on whole runs, not on web_search=true" in err, err
    assert f"loadtest calibrate --tag {WS}" in err
    code, _, err = _compare(monkeypatch, capsys, base, swap, "--calibration", for_ws)
    assert code == 2 and f"made for the request class {WS}, these runs are judged whole" in err, err
    code, _, err = _compare(monkeypatch, capsys, base, swap, "--tag", PLAIN, "--calibration", for_ws)
    assert code == 2 and f"made for the request class {WS}, not {PLAIN}" in err, err
    verdict = tmp_path / "verdict.json"
    code, out, err = _compare(monkeypatch, capsys, base, swap, "--tag", WS, "--calibration", for_ws,
                              "--metric", "ttft.p50", "--json", verdict)  # fmt: skip
    assert code == 1, out + err
    (row,) = json.loads(verdict.read_text(encoding="utf-8"))["rows"]
    assert row["verdict"] == "REGRESSION" and "widened to the calibrated noise floor" in row["method"], row
    # the library refuses it too, whoever built the rules
    with pytest.raises(InvalidComparison, match="made on whole runs"):
        gate([load_run(base, tag=WS)], [load_run(swap, tag=WS)], GateRules(noise={"ttft p50": 0.01}, noise_runs=6),
             checks=[("ttft", "p50")])  # fmt: skip
