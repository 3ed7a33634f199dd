"""loadtest.rundir: one module writes and reads back every file of a run directory.

One real run against the embedded mock (module fixture), then each test works on a copy:
the Summary model round-trips its summary.json byte for byte, a schema-1 summary still
loads, and `report` and `compare` refuse a newer schema and a corrupted hlog (exit 2)
through the one reader.
"""

from __future__ import annotations

import itertools
import json
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from support.helpers import run_cli, run_concurrently

from loadtest.errors import BadInput, OutputError
from loadtest.rundir import (
    SCHEMA,
    Summary,
    read_hlog_intervals,
    read_hlog_total,
    read_requests,
    read_summary,
    read_timeseries,
    write_atomic,
)
from loadtest.slo import error_rate

SCENARIO = """\
name: rundir
mock: {ttft_ms: 10, gap_ms: 2, chunks: 3}
load: {concurrency: 2, duration: 2s, warmup: 0s}
"""
#: the fields schema 2 added; a schema-1 summary.json has none of them
_SCHEMA_2_ONLY = ("window", "drain", "session", "latency_from_failed", "session_error_rate", "verdict",
                  "error_rate")  # fmt: skip


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("real")
    scenario = root / "s.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    out = root / "run"
    proc = run_cli("run", str(scenario), "--out", str(out), "--quiet", "--no-html")
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture
def run(real_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(real_run, copy)
    return copy


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.realtime
def test_the_model_round_trips_a_real_summary_byte_for_byte(run: Path) -> None:
    path = run / "summary.json"
    text = path.read_text(encoding="utf-8")
    summary = read_summary(path)
    assert summary.schema_version == SCHEMA == 2
    assert json.dumps(summary.to_json(), indent=2) == text  # same keys, same order, same values
    raw = json.loads(text)
    assert summary.to_json() == raw
    # a schema-2 run that reached its target sets every field but the unreachable one's reason
    assert summary.to_dict() == raw | {"reason": None}
    assert summary.passed and summary.verdict == "passed" and summary.mode == "closed"
    assert summary.requests["completed"] > 0 and summary.error_counts == (0, summary.requests["completed"])
    assert summary.window_end_s == raw["window"]["end_s"] == 2.0
    with pytest.raises(Exception, match="frozen"):
        summary.passed = False  # type: ignore[misc]


@pytest.mark.realtime
def test_the_other_files_read_back_and_agree_with_the_summary(run: Path) -> None:
    summary = read_summary(run / "summary.json")
    ttft = read_hlog_total(run / "ttft.hlog")
    assert ttft is not None and ttft.count == summary.latency_ms["ttft"]["count"]
    assert ttft.max_us is not None and ttft.max_us / 1000 == summary.latency_ms["ttft"]["max"]
    intervals = read_hlog_intervals(run / "ttft.hlog")
    # one interval per second, back to back from the window's start; the answers to requests
    # sent in the window that came in the drain after it are in a last, short interval
    assert intervals[0][0] == 0.0 and intervals[-1][1] >= summary.window_end_s
    assert all(b[0] == a[1] and a[1] - a[0] <= 1.0 for a, b in itertools.pairwise(intervals))
    assert sum(rec.count for _, _, rec in intervals) == ttft.count
    ts = read_timeseries(run / "timeseries.csv")
    requests = read_requests(run / "requests.csv", ["phase", "outcome", "chunks"])
    ok = requests[(requests["outcome"] == "ok") & (requests["phase"] == "measure")]
    # every completion (no warm-up here; the drain's included) is one row of each file
    assert set(ts["phase"]) <= {"measure", "drain"}
    assert int(ts["completions"].sum()) == len(ok) == summary.requests["completed"]
    assert set(ok["chunks"]) == {3}
    assert summary.chunks_per_answer == {"3": len(ok)}


@pytest.mark.realtime
def test_a_schema_1_summary_still_loads(run: Path) -> None:
    path = run / "summary.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    old = {k: v for k, v in raw.items() if k not in _SCHEMA_2_ONLY} | {"schema": 1}
    old["requests"] = {k: v for k, v in raw["requests"].items() if k != "offered"}
    old["requests"]["failed"] = 3  # so the error rate the model gives for it is not 0
    path.write_text(json.dumps(old, indent=2), encoding="utf-8")
    summary = read_summary(path)
    assert summary.schema_version == 1
    assert summary.window is None and summary.session is None and summary.verdict is None
    # the one formula (loadtest.slo.error_rate) fills what the old file lacks
    assert summary.error_rate == round(error_rate(old["requests"]), 6) > 0
    assert summary.window_end_s == raw["duration_s"]
    assert summary.to_json() == old | {"error_rate": summary.error_rate}
    # and the commands read it
    assert run_cli("report", str(run)).returncode == 0
    # p99: too few samples; --allow-saturated: a few-second run on a busy CI box may be flagged
    proc = run_cli("compare", str(run), str(run), "--metric", "ttft.p50", "--metric", "error_rate", "--allow-saturated")
    # read, and judged nothing (a run of a few seconds): exit 2 with the reasons (issue 22)
    assert proc.returncode == 2 and "no check could be judged" in proc.stderr and "error_rate" in proc.stderr
    # an object written as null reads as empty, as report always took it
    path.write_text(json.dumps(old | {"throughput": None, "tls": None}), encoding="utf-8")
    assert read_summary(path).throughput == {} and read_summary(path).tls == {}
    # a summary written before schemas existed (no "schema" key) is schema 1
    del old["schema"]
    path.write_text(json.dumps(old), encoding="utf-8")
    assert read_summary(path).schema_version == 1


DAMAGES = [
    ("0.0,1.0,2.0,HISTFAAAnotbase64!!\n", "is not an HdrHistogram interval"),
    ("-1.0,1.0,2.0,HISTFAAAA\n", "is not an HdrHistogram interval"),  # hdrh's reader skips this one
    ("0.0,1.0\n", "expected 4 fields, found 2"),
]


@pytest.fixture(scope="module")
def refused(real_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], tuple[Path, Any]]:
    """``report`` and ``compare`` on the damaged copies of the two tests below, all at once, each
    copy its own: each is refused (exit 2) reading its file; what is checked is the message."""
    runs: dict[tuple[str, str], Path] = {}
    args: dict[tuple[str, str], list[str]] = {}
    for what in ["newer", *(damage for damage, _ in DAMAGES)]:
        for command in ("report", "compare"):
            run = tmp_path_factory.mktemp("damaged") / "run"
            shutil.copytree(real_run, run)
            if what == "newer":
                raw = json.loads((run / "summary.json").read_text(encoding="utf-8"))
                (run / "summary.json").write_text(json.dumps(raw | {"schema": SCHEMA + 1}), encoding="utf-8")
                args[what, command] = [str(run)] if command == "report" else [str(run), str(run)]
            else:
                hlog = run / "ttft.hlog"
                hlog.write_text(hlog.read_text(encoding="utf-8") + what, encoding="utf-8")
                args[what, command] = ([str(run), "--out", str(run.parent / "r.html")] if command == "report"
                                       else [str(run), str(run)])
            runs[what, command] = run
    procs = run_concurrently({key: partial(run_cli, key[1], *args[key]) for key in runs}, max_workers=4)
    return {key: (runs[key], procs[key]) for key in runs}


@pytest.mark.realtime
@pytest.mark.parametrize("command", ["report", "compare"])
def test_a_newer_schema_is_refused_with_exit_2(refused: dict[tuple[str, str], tuple[Path, Any]], command: str) -> None:
    run, proc = refused["newer", command]
    path = run / "summary.json"
    assert proc.returncode == 2
    line = _error_line(proc.stderr)
    assert str(path) in line and f"summary schema {SCHEMA + 1}, newer than this loadtest knows ({SCHEMA})" in line


@pytest.mark.parametrize("command", ["report", "compare"])
@pytest.mark.parametrize(("damage", "message"), DAMAGES)
@pytest.mark.realtime
def test_a_corrupted_hlog_is_exit_2_in_report_and_compare(real_run: Path,
                                                          refused: dict[tuple[str, str], tuple[Path, Any]],
                                                          command: str, damage: str, message: str) -> None:
    run, proc = refused[damage, command]
    hlog = run / "ttft.hlog"
    lines = (real_run / "ttft.hlog").read_text(encoding="utf-8").splitlines(keepends=True)  # before the damage
    assert proc.returncode == 2, proc.stderr
    line = _error_line(proc.stderr)
    assert f"{hlog}: line {len(lines) + 1} " in line and message in line, line


@pytest.mark.realtime
def test_read_summary_names_the_file_and_the_defect(run: Path) -> None:
    path = run / "summary.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    cases = [
        ({k: v for k, v in raw.items() if k != "latency_ms"}, "field 'latency_ms' is missing"),
        (raw | {"duration_s": "2"}, "field 'duration_s' is missing or has the wrong type"),
        (raw | {"passed": "yes"}, "field 'passed' is missing or has the wrong type"),
        (raw | {"requests": raw["requests"] | {"failed": -1}}, "field 'requests.failed'"),
        (raw | {"latency_ms": {"ttft": 3}}, "field 'latency_ms.ttft'"),
        (raw | {"schema": "2"}, "field 'schema' should be a positive integer"),
        (raw | {"schema": 0}, "field 'schema' should be a positive integer"),
        (raw | {"verdict": "unreachable", "reason": "connection refused"},
         "never reached its target, nothing was measured (connection refused)"),
        ([raw], "expected a JSON object"),
    ]
    for data, message in cases:
        path.write_text(json.dumps(data), encoding="utf-8")
        with pytest.raises(BadInput, match=r"summary\.json: ") as info:
            read_summary(path)
        assert message in str(info.value) and info.value.exit_code == 2


def test_the_one_atomic_writer(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    write_atomic(target, "one\n")
    write_atomic(target, "two\n")
    assert target.read_text(encoding="utf-8") == "two\n"
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temporary file left
    with pytest.raises(OutputError) as info:
        write_atomic(tmp_path / "no" / "f.txt", "x")
    assert info.value.exit_code == 74 and "No such file" in str(info.value)


def test_the_writer_checks_the_summary_against_the_model() -> None:
    from loadtest.rundir import summary_text

    good = {"scenario": "s", "started_at": "2026-01-01T00:00:00Z", "duration_s": 1.0, "requests": {},
            "latency_ms": {}, "passed": True}  # fmt: skip
    assert json.loads(summary_text(good)) == good
    with pytest.raises(Exception, match="passed"):
        summary_text(good | {"passed": None})
    assert Summary.model_validate(good).error_rate is None  # nothing offered: no rate
