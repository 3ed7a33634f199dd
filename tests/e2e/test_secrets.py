"""The API key never leaves the process: not in any file of the run directory, not in the
HTML report, not on stdout/stderr, not in error messages — even when the target misbehaves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from support.helpers import ROOT, run_cli, run_concurrently

from loadtest.mock.faults import FaultPlan, parse_faults

#: real sockets, processes or wall-clock time: the full tier only (scripts/test.sh)
pytestmark = pytest.mark.realtime

KEY = "sk-LEAKCHECK-7f3a9"
FAULTS = {
    "refuse_upgrade": {"rate": 0.3, "status": 401},
    "error_mid_stream": 0.15,
    "malformed_frame": 0.15,
    "close_code": {"rate": 0.1, "code": 4403},
}


def _seed() -> int:
    """A seed whose first connection (the runner's probe) is accepted by the mock."""
    model = parse_faults(FAULTS)
    return next(s for s in range(1, 100) if FaultPlan(model, seed=s).refuse_upgrade() == 0)


def _hits(root: Path, *texts: str) -> list[str]:
    """Every file under ``root`` (binary-safe) and every text that contains the key."""
    found = [str(p) for p in root.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    found += [f"output #{i}" for i, t in enumerate(texts) if KEY in t]
    return found


@pytest.fixture
def scenario(write_scenario: Callable[..., Path]) -> Path:
    return write_scenario(f"""
        name: secrets
        target: {{url: mock, api_key_env: LEAKCHECK_KEY}}
        mock: {{ttft_ms: 10, gap_ms: 1, chunks: 6, faults: {json.dumps(FAULTS)}, seed: {_seed()}}}
        load: {{concurrency: 4, duration: 2s, warmup: 0s, seed: {_seed()}}}
        session:
          steps:
            - ping
            - gen: {{prompt: "Explain artificial intelligence"}}
        timeouts: {{connect: 2s, first_token: 2s, stream: 2s}}
        slo: {{error_rate: 0.01}}
        """)


def test_key_never_written_or_printed(scenario: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    env.pop("LEAKCHECK_KEY", None)
    # the report is written too (no --no-html): it must not carry the key either
    runs = {
        "flag": (["--api-key", KEY], env),
        "env": ([], {**env, "LEAKCHECK_KEY": KEY}),
    }
    procs = {
        name: subprocess.Popen([sys.executable, "-m", "loadtest", "run", str(scenario), "--out",
                                str(tmp_path / name), *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=e, cwd=ROOT)
        for name, (args, e) in runs.items()
    }
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=60)
        out = tmp_path / name
        assert proc.returncode == 1, stderr  # the faults break the 1% error SLO
        assert "Traceback" not in stderr
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        errors = summary["errors"]
        # the faults did happen, with their messages recorded (and redacted)
        assert errors["auth"] > 0 and errors["server_error"] > 0 and errors["protocol"] > 0, errors
        assert (out / "report.html").is_file()
        assert summary["target"].endswith("/v2/chat?apikey=***"), summary["target"]
        assert "apikey=***" in (out / "report.html").read_text(encoding="utf-8")
        assert _hits(out, stdout, stderr) == []


@pytest.mark.parametrize("via", ["flag", "env"])
def test_key_not_in_unreachable_target_error(scenario: Path, tmp_path: Path, via: str) -> None:
    target = "ws://127.0.0.1:9/v2/chat"
    args = ["--api-key", KEY] if via == "flag" else []
    proc = run_cli("run", str(scenario), "--target", target, "--out", str(tmp_path / "r"), "--no-html", *args,
                   env={"LEAKCHECK_KEY": KEY}, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "cannot reach ws://127.0.0.1:9/v2/chat?apikey=***" in proc.stderr, proc.stderr
    assert _hits(tmp_path, proc.stdout, proc.stderr) == []


def test_key_not_in_wrong_key_error(tmp_path: Path, write_scenario: Callable[..., Path]) -> None:
    """A target that rejects the key with an error event and a close (the other auth path)."""
    from loadtest.mock.process import MockProcess

    path = write_scenario("""
        name: wrong-key
        load: {concurrency: 1, duration: 1s}
        timeouts: {connect: 2s}
        """, name="wrong.yaml")
    with MockProcess(["--ttft-ms", "5", "--api-key", "the-right-key"]) as url:
        proc = run_cli("run", str(path), "--target", url, "--api-key", KEY, "--out", str(tmp_path / "r"),
                       "--no-html", timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "refused the API key" in proc.stderr and "apikey=***" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert _hits(tmp_path, proc.stdout, proc.stderr) == []


SHORT_KEYS = ["k", "key", "test"]


@dataclass
class ShortKeyRun:
    url: str
    out: Path
    proc: subprocess.CompletedProcess[str]
    again: subprocess.CompletedProcess[str]


def _short_key_run(path: Path, out: Path, key: str) -> ShortKeyRun:
    from loadtest.mock.process import MockProcess

    with MockProcess(["--ttft-ms", "2", "--gap-ms", "1", "--chunks", "3", "--api-key", key]) as url:
        proc = run_cli("run", str(path), "--target", url, "--api-key", key, "--out", str(out), timeout=60)
    again = run_cli("validate", str(out / "scenario.yaml"), env={"LOADTEST_API_KEY": key})
    return ShortKeyRun(url, out, proc, again)


@pytest.fixture(scope="module")
def short_key_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ShortKeyRun]:
    """One run per short key, all at once (each its own mock process and directory): what is
    checked is what the run directory holds, not a timing."""
    tmp = tmp_path_factory.mktemp("short")
    path = tmp / "short.yaml"
    path.write_text(textwrap.dedent("""
        name: short-key
        load: {concurrency: 2, duration: 1s}
        session: {steps: [ping, {gen: {prompt: "Explain keys and tests"}}]}
        timeouts: {connect: 2s}
        """), encoding="utf-8")
    return run_concurrently({key: partial(_short_key_run, path, tmp / key / "r", key) for key in SHORT_KEYS})


@pytest.mark.parametrize("key", SHORT_KEYS)
def test_short_key_does_not_corrupt_the_run_directory(short_key_runs: dict[str, ShortKeyRun], key: str) -> None:
    """Issue 10: with key ``k``, summary.json gained ``chun***s_per_s``. Redaction touches free
    text only (whole tokens, ``apikey=`` values); structured files are written as built."""
    run = short_key_runs[key]
    url, out, proc = run.url, run.out, run.proc
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert {"requests", "latency_ms", "throughput", "generator", "slo", "passed"} <= set(summary)
    assert set(summary["throughput"]) == {"requests_per_s", "chunks_per_s", "chars_per_s"}
    assert summary["requests"]["completed"] > 0 and summary["errors"]["auth"] == 0
    assert summary["target"] == f"{url}?apikey=***"
    again = run.again
    assert again.returncode == 0, again.stderr
    for f in out.rglob("*"):
        if f.is_file():
            assert f"apikey={key}".encode() not in f.read_bytes(), f
    assert f"apikey={key}" not in proc.stdout + proc.stderr
    assert "***" not in (out / "scenario.yaml").read_text(encoding="utf-8")
