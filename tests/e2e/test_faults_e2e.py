"""Every fault of the mock, end to end through the CLI: the run never crashes, counts each
failure in the right category, keeps every request in requests.csv, and goes on.

All runs are started together by one module fixture (each is a CLI process plus its mock
process, a few users, 2-3 s), so the module costs about the longest run, not their sum.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.helpers import ROOT, read_csv_rows

from loadtest.errors import ERROR_CATEGORIES
from loadtest.mock.faults import FaultPlan, parse_faults
from loadtest.rundir.hlog import read_hlog

#: real sockets, processes or wall-clock time: the full tier only (scripts/test.sh)
pytestmark = pytest.mark.realtime

FAST_MOCK = {"ttft_ms": 10, "gap_ms": 1, "chunks": 6}


@dataclass
class Case:
    faults: dict[str, Any]
    duration: str = "2s"
    timeouts: str = "{connect: 2s, first_token: 2s, stream: 2s}"
    # the categories are under test here, not the verdict: both always-on error rates tolerated
    slo: str = "{error_rate: 1.0, session_error_rate: 1.0}"
    users: int = 4
    exit_codes: tuple[int, ...] = (0,)
    seed: int = 1


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    out: Path
    summary: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, str]] = field(default_factory=list)


def _seed_accepting_first(spec: dict[str, Any]) -> int:
    """A mock seed whose first connection (the runner's probe) is not refused."""
    model = parse_faults(spec)
    return next(s for s in range(1, 100) if FaultPlan(model, seed=s).refuse_upgrade() == 0)


UPGRADE_401 = {"refuse_upgrade": {"rate": 0.5, "status": 401}, "abrupt_close": 0.2}
UPGRADE_503 = {"refuse_upgrade": {"rate": 0.5, "status": 503}, "abrupt_close": 0.2}

CASES: dict[str, Case] = {
    "abrupt_close": Case({"abrupt_close": 0.3}),
    "close_code": Case({"close_code": {"rate": 0.3, "code": 1011}}),
    "malformed_frame": Case({"malformed_frame": 0.3}),
    "error_mid_stream": Case({"error_mid_stream": 0.3}),
    # a strict error-rate SLO: the run completes and exits 1
    "error_instead": Case({"error_instead": 0.3}, slo="{error_rate: 0.01, session_error_rate: 1.0}",
                          exit_codes=(1,)),
    "no_stop": Case({"no_stop": 0.3}, timeouts="{connect: 2s, first_token: 2s, stream: 300ms}"),
    "unknown_event": Case({"unknown_event": 1.0}),
    "stall": Case({"stall": {"at_s": 1.5, "ms": 500}}, duration="3s"),
    "refuse_401": Case(UPGRADE_401, seed=_seed_accepting_first(UPGRADE_401)),
    "refuse_503": Case(UPGRADE_503, seed=_seed_accepting_first(UPGRADE_503)),
    "slow_handshake": Case({"slow_handshake": {"rate": 1, "ms": 200}}),
    # every upgrade refused: the probe gives up, exit 3, nothing measured
    "refuse_503_always": Case({"refuse_upgrade": {"rate": 1, "status": 503}}, exit_codes=(3,)),
    "refuse_401_always": Case({"refuse_upgrade": {"rate": 1, "status": 401}}, exit_codes=(3,)),
}


def _scenario(name: str, case: Case) -> str:
    mock = {**FAST_MOCK, "faults": case.faults, "seed": case.seed}  # the mock no longer takes load.seed
    return textwrap.dedent(f"""\
        name: fault-{name}
        target: {{url: mock}}
        mock: {json.dumps(mock)}
        load: {{mode: closed, concurrency: {case.users}, duration: {case.duration}, warmup: 0s, seed: {case.seed}}}
        session:
          steps:
            - gen: {{prompt: "Explain artificial intelligence"}}
        timeouts: {case.timeouts}
        slo: {case.slo}
        """)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    tmp = tmp_path_factory.mktemp("faults")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    procs: dict[str, tuple[subprocess.Popen[str], Path]] = {}
    for name, case in CASES.items():
        path = tmp / f"{name}.yaml"
        path.write_text(_scenario(name, case), encoding="utf-8")
        out = tmp / name
        cmd = [sys.executable, "-m", "loadtest", "run", str(path), "--out", str(out), "--no-html", "-q"]
        procs[name] = (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=env, cwd=ROOT), out)
    results: dict[str, Run] = {}
    deadline = time.monotonic() + 80
    for name, (proc, out) in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        run = Run(proc.returncode, stdout, stderr, out)
        if (out / "summary.json").exists():
            run.summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        if (out / "requests.csv").exists():
            with open(out / "requests.csv", encoding="utf-8", newline="") as f:
                run.rows = list(csv.DictReader(f))
        results[name] = run
    return results


def _check_complete_run(run: Run, case: Case) -> dict[str, Any]:
    """Invariants every fault run must keep; returns the summary."""
    assert "Traceback" not in run.stderr + run.stdout, run.stderr
    assert run.rc in case.exit_codes, (run.rc, run.stderr[-2000:])
    s = run.summary
    assert s, "summary.json missing"
    assert s["passed"] is (run.rc == 0)
    out = run.out
    for name in ("requests.csv", "timeseries.csv", "scenario.yaml"):
        assert (out / name).is_file(), name
    assert not (out / "requests.csv.partial").exists()
    req = s["requests"]
    rows = run.rows
    ids = [int(r["request_id"]) for r in rows]
    assert sorted(ids) == list(range(1, len(ids) + 1))  # one row per gen, none lost
    assert len(rows) == req["started"]  # warmup 0: every row is measured
    assert sum(r["outcome"] == "ok" for r in rows) == req["completed"]
    failed = [r for r in rows if r["outcome"] == "failed"]
    assert len(failed) == req["failed"]
    assert req["cancelled"] == 0  # the grace period let every stream end
    for r in failed:
        assert r["error_category"] in ERROR_CATEGORIES and r["error_message"], r
    for cat in ERROR_CATEGORIES:  # request failures are a part of the category counts
        assert sum(r["error_category"] == cat for r in failed) <= s["errors"][cat]
    ts = read_csv_rows(out / "timeseries.csv")
    assert sum(int(r["completions"]) for r in ts) == req["completed"]
    assert sum(int(r["failures"]) for r in ts) == req["failed"]
    if req["completed"]:
        hlog = read_hlog(out / "ttft.hlog")
        # TTFT holds every completed answer and every failed request that got a first token
        from_failed = s["latency_from_failed"]["ttft"]
        assert sum(h.count for _, _, h in hlog) == s["latency_ms"]["ttft"]["count"] == req["completed"] + from_failed
        assert from_failed == sum(1 for r in rows if r["outcome"] == "failed" and r["t_first_s"])
    return s


def _failed_rows(run: Run, category: str) -> list[dict[str, str]]:
    return [r for r in run.rows if r["outcome"] == "failed" and r["error_category"] == category]


# (case, category, text in every failed row's message); every failure replaces its connection:
# broken ones by the target, and after an `error` the harness retires it (late frames of the
# failed stream must not be read as the next answer; issue 9)
STREAM_FAULTS = [
    ("abrupt_close", "disconnect", "during stream"),
    ("close_code", "disconnect", "code 1011"),
    ("malformed_frame", "protocol", "not JSON"),
    ("error_mid_stream", "server_error", "generation aborted"),
    ("error_instead", "server_error", "generation failed"),
    ("no_stop", "timeout", "did not finish within 0.3 s"),
]


@pytest.mark.parametrize(("name", "category", "message"), STREAM_FAULTS)
def test_stream_fault_is_counted_in_its_category(runs: dict[str, Run], name: str, category: str,
                                                 message: str) -> None:
    run = runs[name]
    s = _check_complete_run(run, CASES[name])
    req, errors = s["requests"], s["errors"]
    # about 30% of the streams fail, only in the fault's category; the rest complete
    assert req["completed"] > 20 and req["failed"] > 5, req
    assert 0.1 < req["failed"] / req["started"] < 0.55, req
    assert errors[category] == req["failed"], errors
    assert sum(v for k, v in errors.items() if k not in (category, "unknown_events")) == 0, errors
    rows = _failed_rows(run, category)
    assert len(rows) == req["failed"]
    assert all(message in r["error_message"] for r in rows), rows[0]["error_message"]
    # every failed connection but those the run's end cut short was replaced
    assert s["reconnects"] >= req["failed"] - CASES[name].users > 0, (s["reconnects"], req)
    # e2e holds completed answers only; TTFT also failed requests that got their first token
    assert s["latency_ms"]["e2e"]["count"] == req["completed"]


def test_error_instead_rows_have_no_stream(runs: dict[str, Run]) -> None:
    rows = _failed_rows(runs["error_instead"], "server_error")
    assert rows and all(r["chunks"] == "0" and r["t_first_s"] == "" and r["ttft_ms"] == "" for r in rows)
    # the mid-stream error keeps the chunks received before it (6 planned, error at chunk 3)
    mid = _failed_rows(runs["error_mid_stream"], "server_error")
    assert mid and all(r["chunks"] == "3" and r["t_first_s"] != "" for r in mid)


def test_no_stop_timeout_rows_keep_their_chunks(runs: dict[str, Run]) -> None:
    rows = _failed_rows(runs["no_stop"], "timeout")
    assert rows and all(r["chunks"] == "6" and r["t_stop_s"] == "" for r in rows)


def test_unknown_events_are_counted_and_requests_succeed(runs: dict[str, Run]) -> None:
    run = runs["unknown_event"]
    s = _check_complete_run(run, CASES["unknown_event"])
    assert s["requests"]["failed"] == 0 and s["requests"]["completed"] > 50
    # one unknown event per stream, each counted once, none in the error categories
    assert s["errors"]["unknown_events"] == s["requests"]["completed"]
    assert all(r["unknown_events"] == "1" for r in run.rows)
    assert sum(s["errors"][c] for c in ERROR_CATEGORIES) == 0
    assert s["chunks_per_answer"] == {"6": s["requests"]["completed"]}


def test_stall_shows_in_latency(runs: dict[str, Run]) -> None:
    run = runs["stall"]
    s = _check_complete_run(run, CASES["stall"])
    e2e, ttft = s["latency_ms"]["e2e"], s["latency_ms"]["ttft"]
    assert s["requests"]["failed"] == 0
    assert ttft["p50"] < 100  # most streams are untouched...
    assert e2e["max"] >= 400  # ...those in the 500 ms window wait for its end
    assert max(float(r["e2e_ms"]) for r in run.rows) >= 400
    ts = read_csv_rows(run.out / "timeseries.csv")
    assert max(float(r["e2e_p99_ms"] or 0) for r in ts) >= 300  # visible in the time series


@pytest.mark.parametrize(("name", "category"), [("refuse_401", "auth"), ("refuse_503", "connect")])
def test_refused_upgrades_are_counted_and_the_run_goes_on(runs: dict[str, Run], name: str, category: str) -> None:
    run = runs[name]
    s = _check_complete_run(run, CASES[name])
    assert s["errors"][category] > 0, s["errors"]
    other = "connect" if category == "auth" else "auth"
    assert s["errors"][other] == 0
    assert s["requests"]["completed"] > 20  # users retry with backoff and carry on
    assert s["errors"]["disconnect"] > 0 and s["reconnects"] > 0
    assert any(f"HTTP {name[-3:]}" in m for m in s["error_samples"][category])


@pytest.mark.parametrize(("name", "text"), [
    ("refuse_503_always", "upgrade refused with HTTP 503"),
    ("refuse_401_always", "refused the API key"),
])
def test_refused_every_time_exits_3_with_a_clear_message(runs: dict[str, Run], name: str, text: str) -> None:
    run = runs[name]
    assert run.rc == 3, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.startswith("error: ") and text in run.stderr, run.stderr


def test_slow_handshake_shows_in_connect_time(runs: dict[str, Run]) -> None:
    run = runs["slow_handshake"]
    s = _check_complete_run(run, CASES["slow_handshake"])
    connect = s["latency_ms"]["connect"]
    assert connect["count"] >= CASES["slow_handshake"].users  # probe + one per user
    assert connect["min"] >= 200, connect
    assert s["latency_ms"]["ttft"]["p50"] < 100  # the stream itself is not slowed
    assert s["requests"]["failed"] == 0
