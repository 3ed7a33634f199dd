"""Runs of the harness against tests/support/rawserver.py (a server that shares none of the
harness's code): start it on port 0 with one behaviour, run ``python -m loadtest run`` against
it, and collect the harness's figures with the server's own log. Used by
tests/e2e/test_hostile_servers.py, tests/runner/test_workers.py and tests/support/workerkill.py."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from support.helpers import ROOT, read_csv_rows

RAWSERVER = ROOT / "tests" / "support" / "rawserver.py"
API_KEY = "raw-hostile-test-key"


# --- running one server and one harness run ---------------------------------------------------

@dataclass
class Served:
    rc: int
    stdout: str
    stderr: str
    out: Path
    log: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, str]] = field(default_factory=list)
    peak_rss: int = 0

    def sent(self, kind: str) -> list[dict[str, Any]]:
        """The server's frame_sent lines of one kind."""
        return [e for e in self.log if e["ev"] == "frame_sent" and e["kind"] == kind]

    def gens(self) -> dict[str, dict[str, Any]]:
        """Per conversationId: what the server did on that gen."""
        out: dict[str, dict[str, Any]] = {}
        for e in self.log:
            if e["ev"] == "gen_received":
                out[e["conversation_id"]] = {"recv": e, "chunks": [], "error": None, "stop": None,
                                             "conn": e["conn"]}
            elif e["ev"] == "frame_sent" and "conversation_id" in e:
                g = out[e["conversation_id"]]
                if e["kind"] in ("chunk", "huge", "invalid_utf8"):
                    g["chunks"].append(e)
                elif e["kind"] in ("error", "stop"):
                    g[e["kind"]] = e
        return out

    def diag(self) -> str:
        return f"rc={self.rc}\nstdout={self.stdout[-1500:]}\nstderr={self.stderr[-3000:]}"


def _start_server(tmp: Path, behaviour: str, options: dict[str, Any]) -> tuple[subprocess.Popen[str], str, Path]:
    log = tmp / f"server-{behaviour}.jsonl"
    with open(tmp / f"server-{behaviour}.stderr", "w", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [sys.executable, str(RAWSERVER), "--port", "0", "--log", str(log), "--behaviour", behaviour,
             "--options", json.dumps(options)],
            stdout=subprocess.PIPE, stderr=err, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    assert proc.stdout is not None
    if not ready:
        _stop_server(proc)
        raise AssertionError("rawserver did not print its URL within 10 s")
    url = proc.stdout.readline().strip()
    assert url.startswith("ws://127.0.0.1:") and url.endswith("/v2/chat"), url
    return proc, url, log


def _stop_server(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        tree = [proc, *proc.children(recursive=True)]
    except psutil.Error:  # it has just exited
        return 0
    for p in tree:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def serve_and_run(tmp: Path, behaviour: str, options: dict[str, Any], scenario: str, *,
                  timeout: float = 60, kill_server_at_s: float | None = None,
                  extra_args: tuple[str, ...] = ()) -> Served:
    """Start rawserver, run the scenario against it through the CLI, stop the server, collect."""
    path = tmp / "scenario.yaml"
    path.write_text(textwrap.dedent(scenario), encoding="utf-8")
    out = tmp / "run"
    server, url, log = _start_server(tmp, behaviour, options)
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "LOADTEST_API_KEY": API_KEY}
    peak = 0
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "loadtest", "run", str(path), "--target", url, "--out", str(out),
             "--no-html", "-q", *extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        watched = psutil.Process(proc.pid)
        captured: dict[str, str] = {}

        def communicate() -> None:
            captured["stdout"], captured["stderr"] = proc.communicate()

        reader = threading.Thread(target=communicate, daemon=True)
        reader.start()
        t0 = time.monotonic()
        while reader.is_alive() and time.monotonic() - t0 < timeout:
            peak = max(peak, _tree_rss(watched))
            if kill_server_at_s is not None and time.monotonic() - t0 >= kill_server_at_s \
                    and server.poll() is None:
                server.kill()  # SIGKILL: the target died
            reader.join(0.02)
        if reader.is_alive():
            proc.kill()
            reader.join(10)
            raise AssertionError(f"loadtest run did not end within {timeout} s: "
                                 f"{captured.get('stderr', '')[-2000:]}")
    finally:
        _stop_server(server)
    events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    run = Served(proc.returncode, captured["stdout"], captured["stderr"], out, events, peak_rss=peak)
    if (out / "summary.json").exists():
        run.summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    if (out / "requests.csv").exists():
        run.rows = read_csv_rows(out / "requests.csv")
    assert "Traceback" not in run.stderr + run.stdout, run.diag()
    return run


def scenario(name: str, *, users: int, duration: str, warmup: str = "0s", ping: bool = False,
             think: str | None = None,
             timeouts: str = "{connect: 2s, first_token: 3s, stream: 10s}",
             slo: str | None = "{error_rate: 1.0}") -> str:
    steps = "    - ping\n" if ping else ""
    steps += '    - gen: {prompt: "Explain artificial intelligence"}\n'
    if think:
        steps += f"    - think: {think}\n"
    text = (f"name: hostile-{name}\n"
            "target: {url: mock}\n"
            f"load: {{mode: closed, concurrency: {users}, duration: {duration}, warmup: {warmup}, seed: 1}}\n"
            "session:\n  steps:\n" + steps +
            f"timeouts: {timeouts}\n")
    if slo is not None:
        text += f"slo: {slo}\n"
    return text


def ms(ns: int) -> float:
    return ns / 1e6


def ok_rows(run: Served) -> list[dict[str, str]]:
    return [r for r in run.rows if r["outcome"] == "ok"]


def failed_rows(run: Served, category: str | None = None) -> list[dict[str, str]]:
    return [r for r in run.rows if r["outcome"] == "failed" and (category is None or r["error_category"] == category)]


def no_gen_after_error_on_same_connection(run: Served) -> list[str]:
    """Server-side evidence of reuse: gens the server received on a connection after it had sent
    an ``error`` on that connection. Returns their conversationIds."""
    errored_at: dict[int, int] = {}
    reused = []
    for e in run.log:
        if e["ev"] == "frame_sent" and e["kind"] == "error":
            errored_at.setdefault(e["conn"], e["t_mono_ns"])
        elif e["ev"] == "gen_received" and e["conn"] in errored_at:
            reused.append(e["conversation_id"])
    return reused


def overlapping_gens(run: Served) -> list[str]:
    """Server-side evidence that the harness sent a gen on a connection while the previous
    answer there was still being sent (its ``stop`` not yet written): conversationIds."""
    final = ("stop", "error") if run.log[0]["behaviour"] == "error_ends" else ("stop",)
    open_on: dict[int, str] = {}
    overlap = []
    for e in run.log:
        if e["ev"] == "gen_received":
            if e["conn"] in open_on:
                overlap.append(e["conversation_id"])
            open_on[e["conn"]] = e["conversation_id"]
        elif e["ev"] == "frame_sent" and e["kind"] in final and open_on.get(e["conn"]) == e["conversation_id"]:
            del open_on[e["conn"]]
    return overlap


# --- the tests ----------------------------------------------------------------------------------

NORMAL = {"ttft_ms": 50, "gap_ms": 10, "chunks": 8}


@contextlib.contextmanager
def raw_server(tmp: Path, behaviour: str, options: dict[str, Any]) -> Iterator[tuple[str, Path]]:
    """rawserver on port 0 for the block: its URL and the path of its JSONL log."""
    server, url, log = _start_server(tmp, behaviour, options)
    try:
        yield url, log
    finally:
        _stop_server(server)
