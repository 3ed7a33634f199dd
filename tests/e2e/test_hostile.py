"""Issue 10: hostile or careless input gets one clear line and a documented exit code, never a
traceback — load beyond the machine, bad traces, unwritable output, a full disk, corrupted
files, an empty scenario — and the embedded mock never outlives a killed ``loadtest``.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import pytest
from support.helpers import ROOT, read_csv_rows, run_cli, run_concurrently
from support.rundir_factory import make_run_dir

from loadtest.errors import EXIT_OUTPUT, BadInput, OutputError

FAST = """
    name: hostile
    mock: {ttft_ms: 2, gap_ms: 1, chunks: 3}
    load: {concurrency: 2, duration: 1s}
    session: {steps: [{gen: {prompt: hi}}]}
    timeouts: {connect: 2s}
    """


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    return lines[0]


# --------------------------------------------------------------------------- 1. load limits


@pytest.mark.parametrize(("load", "needle"), [
    ("{concurrency: 1000000000}", "concurrency: 1e+09 users is beyond what loadtest supports"),
    ("{mode: open, rate: 5000000}", "rate: 5e+06 arrivals per second is beyond"),
    ("{mode: open, rate: 5, max_connections: 2000000}", "max_connections: 2e+06 connections is beyond"),
    ("{stages: [{duration: 1s, target: 2000000}]}", "stages[0].target: 2e+06 users is beyond"),
])
@pytest.mark.realtime
def test_absurd_load_is_refused_by_validate(write_scenario: Callable[..., Path], load: str, needle: str) -> None:
    path = write_scenario(f"load: {load}\n")
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2
    assert needle in _one_error_line(proc.stderr), proc.stderr


def _limit_nofile(soft: int, hard: int) -> Callable[[], None]:
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _cli_with_limit(soft: int, hard: int, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "loadtest", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=timeout, preexec_fn=_limit_nofile(soft, hard))


@pytest.mark.realtime
@pytest.mark.parametrize("command", ["validate", "run", "sweep"])
def test_more_connections_than_file_descriptors_exit_2_before_connecting(
        write_scenario: Callable[..., Path], tmp_path: Path, command: str) -> None:
    path = write_scenario(FAST.replace("concurrency: 2", "concurrency: 500"))
    out = tmp_path / "out"
    extra = {"validate": [], "run": ["--out", str(out)], "sweep": ["--levels", "2,500", "--out", str(out)]}[command]
    started = time.monotonic()
    proc = _cli_with_limit(256, 256, command, str(path), *extra)
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc.stderr)
    assert "needs 564 file descriptors" in line and "ulimit -n 564" in line and "hard limit 256" in line, line
    assert not out.exists()  # refused before anything was created or connected
    assert time.monotonic() - started < 20


@pytest.mark.realtime
def test_soft_limit_below_need_is_raised_with_a_note(write_scenario: Callable[..., Path]) -> None:
    path = write_scenario(FAST.replace("concurrency: 2", "concurrency: 500"))
    proc = _cli_with_limit(256, 4096, "validate", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "will raise it to 564" in proc.stderr and "Traceback" not in proc.stderr


def test_ensure_open_files_raises_the_soft_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from loadtest.engine import limits

    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda _: (100, 1000))
    monkeypatch.setattr(resource, "setrlimit", lambda _, v: calls.append(v))
    assert limits.ensure_open_files(36) is None
    assert limits.ensure_open_files(500, apply=False) is not None and calls == []
    note = limits.ensure_open_files(500)
    assert calls == [(564, 1000)] and note is not None and "from 100 to 564" in note
    with pytest.raises(BadInput, match=r"ulimit -n 1064"):
        limits.ensure_open_files(1000)


# --------------------------------------------------------------------------- 2. the mock dies with us


@pytest.mark.realtime
def test_sigkill_of_loadtest_takes_the_embedded_mock_down(write_scenario: Callable[..., Path],
                                                           tmp_path: Path) -> None:
    path = write_scenario(FAST.replace("duration: 1s", "duration: 30s"))
    parent = subprocess.Popen([sys.executable, "-m", "loadtest", "run", str(path), "--out", str(tmp_path / "r"),
                               "--quiet", "--no-html"], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        mock: psutil.Process | None = None
        while time.monotonic() < deadline and mock is None:
            kids = [p for p in psutil.Process(parent.pid).children() if "mock" in " ".join(p.cmdline())]
            mock = kids[0] if kids else None
            time.sleep(0.1)
        assert mock is not None, "the embedded mock did not start"
        time.sleep(1.0)  # let it serve: the run is under way
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=5)
        _, alive = psutil.wait_procs([mock], timeout=3)
        assert not alive, f"mock {mock.pid} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


@pytest.mark.realtime
def test_mock_exits_on_stdin_eof() -> None:
    """The portable half: EOF on stdin (the parent closed it or died) ends the mock."""
    proc = subprocess.Popen([sys.executable, "-m", "loadtest", "mock", "--port", "0", "--exit-with-parent"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().startswith("ws://")
        proc.stdin.close()
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


# --------------------------------------------------------------------------- 3. traces


BAD_TRACES = {
    "decreasing": ('{"t": 1.0}\n{"t": 0.5}\n', "trace.jsonl:2: t=0.5s is before t=1s on line 1"),
    "nan": ('{"t": NaN}\n', "trace.jsonl:1: t must be a finite number of seconds"),
    "unknown_key": ('{"t": 0, "ts": 1}\n', "trace.jsonl:1: unknown key 'ts'"),
    "huge_prompt_chars": ('{"t": 0, "prompt_chars": 100000000000}\n',
                          "trace.jsonl:1: prompt_chars=100,000,000,000 is too large; at most 1,000,000"),
    "giant_int": ('{"t": 0, "prompt_chars": ' + "9" * 5000 + "}\n", "trace.jsonl:1: not usable JSON"),
    "empty": ("# nothing\n", "trace.jsonl: the trace holds no arrivals"),
    "not_utf8": (b"\xff\xfe{}\n", "is not UTF-8 text"),
}


@pytest.mark.realtime
@pytest.mark.parametrize("case", sorted(BAD_TRACES))
def test_bad_trace_same_exit_2_and_message_in_validate_and_run(
        write_scenario: Callable[..., Path], tmp_path: Path, case: str) -> None:
    content, needle = BAD_TRACES[case]
    trace = tmp_path / "trace.jsonl"
    if isinstance(content, bytes):
        trace.write_bytes(content)
    else:
        trace.write_text(content, encoding="utf-8")
    path = write_scenario("""
        load: {mode: open, trace: trace.jsonl, duration: 2s}
        session: {steps: [{gen: {prompt: hi}}]}
        """)
    lines = {}
    procs = run_concurrently({command: partial(run_cli, command, str(path), *extra) for command, extra in (
        ("validate", []), ("run", ["--out", str(tmp_path / "r"), "--no-html"]))})  # both at once: no timing
    for command, proc in procs.items():
        assert proc.returncode == 2, (command, proc.stderr)
        lines[command] = _one_error_line(proc.stderr)
        assert needle in lines[command], lines[command]
    assert lines["validate"] == lines["run"]
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- 4. output


@pytest.mark.realtime
def test_unwritable_or_reused_out_exit_2_before_connecting(write_scenario: Callable[..., Path],
                                                            tmp_path: Path) -> None:
    path = write_scenario(FAST)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    used = tmp_path / "used"
    used.mkdir()
    (used / "summary.json").write_text("{}")
    cases = {
        str(a_file / "run"): "cannot write the run directory here",
        "/proc/loadtest-cannot-be-here": "cannot write the run directory here",
        str(used): "the output directory is not empty",
    }
    procs = run_concurrently({out: partial(run_cli, "run", str(path), "--out", out, "--no-html")
                              for out in [*cases, str(a_file)]})  # all at once: each refused before it runs
    for out, needle in cases.items():
        proc = procs[out]
        assert proc.returncode == 2, (out, proc.stderr)
        line = _one_error_line(proc.stderr)
        assert needle in line and out in line, line
    assert sorted(p.name for p in used.iterdir()) == ["summary.json"]  # nothing mixed in
    proc = procs[str(a_file)]  # click's own check
    assert proc.returncode == 2 and "is a file" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.realtime
def test_empty_existing_out_is_fine(write_scenario: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    proc = run_cli("run", str(write_scenario(FAST)), "--out", str(out), "--no-html", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert {"summary.json", "requests.csv", "timeseries.csv", "scenario.yaml"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no probe or temp file left


class _FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` writes went through."""

    def __init__(self, real: Any, room: int) -> None:
        self.real, self.room = real, room
        self.closed = False

    def write(self, text: str) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= 1
        n: int = self.real.write(text)
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def close(self) -> None:
        self.closed = True
        self.real.close()

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_disk_full_during_the_run_keeps_what_was_written_and_exits_74(
        write_scenario: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """In process: requests.csv's file fails with ENOSPC after the header and three rows."""
    import csv

    from loadtest.cli import main as cli
    from loadtest.rundir import writer as results

    real_init = results.RequestCsv.__init__

    def init(self: results.RequestCsv, run_dir: Path, *, secret: str | None = None) -> None:
        real_init(self, run_dir, secret=secret)
        self._f.flush()
        self._f = _FullDisk(self._f, room=3)  # type: ignore[assignment]
        self._w = csv.writer(self._f)

    monkeypatch.setattr(results.RequestCsv, "__init__", init)
    out = tmp_path / "full"
    monkeypatch.setattr(sys, "argv", ["loadtest", "run", str(write_scenario(FAST)), "--out", str(out),
                                      "--no-html", "--quiet"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == EXIT_OUTPUT == 74
    err = capsys.readouterr().err
    line = _one_error_line(err)
    assert "No space left on device" in line and "3 rows kept" in line and "files written are kept" in line, line
    assert len(read_csv_rows(out / "requests.csv")) == 3
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["requests"]["completed"] > 3  # the run went on; only the CSV lost rows


def test_write_atomic_enospc_is_output_error_and_keeps_the_old_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loadtest.rundir import outdir
    from loadtest.rundir import writer as results

    target = tmp_path / "summary.json"
    target.write_text("old")
    real_fdopen = os.fdopen
    monkeypatch.setattr(outdir.os, "fdopen", lambda *a, **k: _FullDisk(real_fdopen(*a, **k), room=0))
    with pytest.raises(OutputError, match="No space left on device") as info:
        results.write_atomic(target, "new")
    assert info.value.exit_code == 74
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


# --------------------------------------------------------------------------- 6. smaller ones


@pytest.mark.realtime
@pytest.mark.parametrize("command", ["validate", "run"])
def test_empty_scenario_is_refused(tmp_path: Path, command: str) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    proc = run_cli(command, str(path), *(["--out", str(tmp_path / "r")] if command == "run" else []))
    assert proc.returncode == 2
    assert "empty scenario" in _one_error_line(proc.stderr)
    assert not (tmp_path / "r").exists()


@pytest.mark.realtime
def test_negative_think_is_reported_once(write_scenario: Callable[..., Path]) -> None:
    proc = run_cli("validate", str(write_scenario("session: {steps: [{think: -1s}]}\n")))
    assert proc.returncode == 2
    assert "got '-1s'" in _one_error_line(proc.stderr)


@pytest.mark.realtime
def test_compare_corrupted_hlog_exit_2(tmp_path: Path) -> None:
    good = make_run_dir(tmp_path / "good", seed=1).path
    bad = make_run_dir(tmp_path / "bad", seed=1).path
    hlog = bad / "ttft.hlog"
    hlog.write_text(hlog.read_text().replace("HIST", "HIsT", 3))  # a broken cookie (HdrCookieException)
    commands = (["compare", str(good), str(bad)], ["report", str(bad), "--out", str(tmp_path / "r.html")])
    for proc in run_concurrently({i: partial(run_cli, *command) for i, command in enumerate(commands)}).values():
        assert proc.returncode == 2, proc.stderr
        assert str(hlog) in _one_error_line(proc.stderr)


@pytest.mark.realtime
def test_report_refuses_a_newer_summary_schema(tmp_path: Path) -> None:
    from loadtest.report.html import KNOWN_SCHEMA
    from loadtest.rundir.writer import SCHEMA

    assert KNOWN_SCHEMA == SCHEMA
    run = make_run_dir(tmp_path / "future", seed=1).path
    summary = json.loads((run / "summary.json").read_text())
    summary["schema"] = SCHEMA + 1
    (run / "summary.json").write_text(json.dumps(summary))
    commands = (["report", str(run)], ["compare", str(run), str(run)])
    for proc in run_concurrently({i: partial(run_cli, *command) for i, command in enumerate(commands)}).values():
        assert proc.returncode == 2
        assert f"schema {SCHEMA + 1}, newer than this loadtest knows ({SCHEMA})" in _one_error_line(proc.stderr)


def test_report_says_no_tls_for_ws(tmp_path: Path) -> None:
    from loadtest.report.html import render_report

    run = make_run_dir(tmp_path / "ws", seed=1).path
    summary = json.loads((run / "summary.json").read_text())
    summary["target"] = "ws://127.0.0.1:1/v2/chat"
    (run / "summary.json").write_text(json.dumps(summary))
    html = render_report([run])
    assert "none (ws://)" in html and "TLS verification" not in html


def test_progress_line_names_requests_and_errors() -> None:
    from loadtest.console import _line
    from loadtest.engine.result import Progress

    line = _line(Progress(elapsed_s=3, total_s=20, active_sessions=4, in_flight=2, completed=50, failed=0,
                          errors=75, ttft_p50_ms=None, ttft_p99_ms=None, phase="measure"))
    assert "requests ok      50 · failed     0 · connection/step errors    75" in line, line


def test_mock_keys_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from loadtest.cli import main as cli
    from loadtest.mock import process as mock

    seen: list[frozenset[str]] = []

    async def fake_serve(config: Any, *a: Any, **k: Any) -> None:
        seen.append(config.api_keys)

    monkeypatch.setattr(mock, "serve_forever", fake_serve)
    keys = tmp_path / "keys"
    keys.write_text("# accepted\nfrom-file\n\n")
    result = CliRunner().invoke(cli.cli, ["mock", "--api-key", "from-flag", "--api-keys-file", str(keys)],
                                env={"LOADTEST_MOCK_API_KEYS": "env-1, env-2"})
    assert result.exit_code == 0, result.output
    assert seen == [frozenset({"from-flag", "from-file", "env-1", "env-2"})]
    empty = tmp_path / "none"
    empty.write_text("# no key\n")
    result = CliRunner().invoke(cli.cli, ["mock", "--api-keys-file", str(empty)])
    assert result.exit_code == 2 and "holds no key" in result.output


@pytest.mark.realtime
def test_unreachable_target_leaves_a_minimal_run_directory(write_scenario: Callable[..., Path],
                                                            tmp_path: Path) -> None:
    out = tmp_path / "r"
    proc = run_cli("run", str(write_scenario(FAST)), "--target", "ws://127.0.0.1:9/v2/chat", "--api-key", "test",
                   "--out", str(out), timeout=60)
    assert proc.returncode == 3, proc.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["verdict"] == "unreachable" and summary["passed"] is False
    assert summary["schema"] == 2 and summary["scenario"] == "hostile"
    assert summary["target"] == "ws://127.0.0.1:9/v2/chat"
    assert "cannot reach ws://127.0.0.1:9/v2/chat?apikey=***" in summary["reason"]
    assert "apikey=test" not in (out / "summary.json").read_text()
    assert (out / "scenario.yaml").is_file() and not (out / "requests.csv.partial").exists()
    # the record is explicit: report and compare say why there is nothing to show (exit 2)
    proc = run_cli("report", str(out))
    assert proc.returncode == 2 and "never reached its target" in _one_error_line(proc.stderr)
