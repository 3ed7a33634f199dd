"""One worker of a two-worker run SIGKILLed at a chosen moment, and everything that must hold
afterwards (issue 22, item 3): used by tests/runner/test_worker_kill.py and
benchmarks/bench_worker_kill.py.

Each try starts tests/support/rawserver.py, runs ``python -m loadtest run --workers 2`` against
it, waits for the server's first ``gen`` (the load has started), kills one worker process (found
with psutil as a child of the run; its index read from the part file it holds open) ``kill_at_s``
later, and checks the run directory against the server's log: :func:`problems`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from support.helpers import ROOT, read_csv_rows
from support.rawruns import API_KEY, raw_server

#: a small load: 4 users (2 a worker), ~120 ms an answer, so a worker writes ~2 KB of rows a second
KILL_SERVER = {"ttft_ms": 50, "gap_ms": 10, "chunks": 8}
#: a request the server finished this long before the kill was in one of the victim's ticks
TICKED_WITHIN_S = 2.0

_PART = re.compile(r"\.requests-w(\d+)\.part$")


@dataclass
class KillTry:
    """What one try did and found."""

    name: str
    victim: int
    kill_at_s: float  # after the server's first gen
    rc: int | None = None
    lost: list[str] = field(default_factory=list)
    finished: int | None = None
    rows: dict[str, int] = field(default_factory=dict)  # per worker
    server_gens: int = 0  # gens the server received from the victim's connections
    problems: list[str] = field(default_factory=list)
    stderr: str = ""

    def line(self) -> str:
        verdict = "ok" if not self.problems else "FAIL: " + "; ".join(self.problems)
        return (f"{self.name}: kill worker {self.victim} at {self.kill_at_s:.2f} s -> exit {self.rc}, "
                f"finished {self.finished}, lost {len(self.lost)}, rows {self.rows}, "
                f"server saw {self.server_gens} gens of the victim: {verdict}")


def _scenario(duration_s: float) -> str:
    """Four gens a session, each tagged its own way: twelve request classes, so each worker's
    report is over 16 KB (multiprocessing writes such a message in two pieces) and its ticks ~8 KB."""
    steps = "".join(f'    - gen: {{prompt: "Explain artificial intelligence", tags: {{tier: {tier}, region: {region}}}}}\n'
                    for tier, region in (("free", "eu"), ("paid", "us"), ("team", "ap"), ("corp", "sa")))
    return (f"name: worker-kill\n"
            "target: {url: mock}\n"
            f"load: {{mode: closed, concurrency: 4, duration: {duration_s:g}s, warmup: 0s, seed: 1, workers: 2}}\n"
            "session:\n  steps:\n" + steps +
            "timeouts: {connect: 2s, first_token: 3s, stream: 10s}\n")


def _workers(run: psutil.Process) -> dict[int, psutil.Process]:
    """The run's worker processes by index (each holds ``.requests-w{index}.part`` open)."""
    found = {}
    for child in run.children(recursive=False):
        try:
            if "spawn_main" not in " ".join(child.cmdline()):
                continue
            for f in child.open_files():
                m = _PART.search(f.path)
                if m:
                    found[int(m.group(1))] = child
        except psutil.Error:
            continue
    return found


def _first_gen(log: Path) -> bool:
    try:
        return '"ev":"gen_received"' in log.read_text(encoding="utf-8")
    except OSError:
        return False


def _wait(what: str, ok: Any, proc: subprocess.Popen[str], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = ok()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.communicate()[1][-2000:]}")
        time.sleep(0.02)
    raise AssertionError(f"no {what} within {timeout_s} s")


def kill_try(tmp: Path, *, victim: int, kill_at_s: float, duration_s: float = 3.0, name: str = "",
             may_finish: bool = False) -> KillTry:
    """One run of ``duration_s`` whose worker ``victim`` is SIGKILLed ``kill_at_s`` after the
    server's first gen; the outcome, with :func:`problems` filled in. ``may_finish``: the kill
    may come after the victim reported (near the run's end), and then no worker is lost."""
    tmp.mkdir(parents=True, exist_ok=True)
    path, out = tmp / "scenario.yaml", tmp / "run"
    path.write_text(_scenario(duration_s), encoding="utf-8")
    t = KillTry(name or tmp.name, victim, kill_at_s)
    with raw_server(tmp, "normal", KILL_SERVER) as (url, log):
        proc = subprocess.Popen(
            [sys.executable, "-m", "loadtest", "run", str(path), "--target", url, "--out", str(out), "--no-html",
             "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
            env={**os.environ, "PYTHONIOENCODING": "utf-8", "LOADTEST_API_KEY": API_KEY})
        try:
            run = psutil.Process(proc.pid)

            def both() -> dict[int, psutil.Process] | None:
                w = _workers(run)
                return w if len(w) == 2 else None

            workers = _wait("two workers", both, proc, 30)
            _wait("the first gen", lambda: _first_gen(log), proc, 30)
            time.sleep(kill_at_s)
            kill_mono_ns = time.monotonic_ns()
            with contextlib.suppress(psutil.NoSuchProcess):  # it may have ended already (may_finish)
                workers[victim].kill()
            stdout, t.stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        t.rc = proc.returncode
    events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    t.problems = problems(t, out, events, kill_mono_ns, stdout + t.stderr, may_finish=may_finish)
    return t


def problems(t: KillTry, out: Path, events: list[dict[str, Any]], kill_mono_ns: int, console: str, *,
             may_finish: bool = False) -> list[str]:
    """Everything wrong with a try (empty: it passed). Only the killed worker is lost (exit 5);
    the survivor finishes and is merged; the victim's rows up to its last tick are in
    requests.csv, exactly the requests its merged figures count, and every one the server
    finished for it ``TICKED_WITHIN_S`` before the kill is there. ``may_finish``: a victim that
    reported before the kill is not lost either (exit 0 or 1, both workers finished)."""
    found = []
    if "Traceback" in console:
        found.append("a traceback")
    if not (out / "summary.json").exists() or not (out / "requests.csv").exists():
        return [*found, f"exit {t.rc}, no summary.json or requests.csv"]
    s = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    w = s["workers"]
    t.lost, t.finished = list(w["lost"]), w["finished"]
    if may_finish and t.finished == 2 and not t.lost:
        if t.rc not in (0, 1):
            found.append(f"exit {t.rc} with no worker lost")
    else:
        if t.rc != 5:
            found.append(f"exit {t.rc}, not 5")
        if t.finished != 1 or len(t.lost) != 1 or f"worker {t.victim} " not in t.lost[0]:
            found.append(f"lost {t.lost}, finished {t.finished}: only worker {t.victim} should be lost")
        if [bool(e["lost"]) for e in w["each"]] != [i == t.victim for i in range(2)]:
            found.append("workers.each[].lost does not name the victim alone")
    rows = read_csv_rows(out / "requests.csv")
    t.rows = {str(i): sum(r["worker"] == str(i) for r in rows) for i in range(2)}
    mine = [r for r in rows if r["worker"] == str(t.victim)]
    if not t.rows[str(1 - t.victim)]:
        found.append("no rows from the survivor")
    if not mine:
        found.append("no rows from the killed worker")
    # the rows are the requests the merged figures count: the victim's too, up to its last tick
    ok_measured = sum(r["outcome"] == "ok" and r["phase"] == "measure" for r in rows)
    if s["requests"]["completed"] != ok_measured:
        found.append(f"summary completed {s['requests']['completed']} != {ok_measured} ok rows")
    # against the server's log: every row of the victim is a gen it received (and answered,
    # for an ok row); every gen it finished on the victim's connections well before the kill is a row
    received = {e["conversation_id"]: e for e in events if e["ev"] == "gen_received"}
    stopped = {e["conversation_id"]: e["t_mono_ns"] for e in events
               if e["ev"] == "frame_sent" and e["kind"] == "stop"}
    unknown = [r["conversation_id"] for r in mine if r["conversation_id"] not in received]
    unanswered = [r["conversation_id"] for r in mine if r["outcome"] == "ok" and r["conversation_id"] not in stopped]
    if unknown or unanswered:
        found.append(f"victim rows the server never received ({len(unknown)}) or answered ({len(unanswered)})")
    conns = {received[r["conversation_id"]]["conn"] for r in mine if r["conversation_id"] in received}
    theirs = [cid for cid, e in received.items() if e["conn"] in conns]
    t.server_gens = len(theirs)
    have = {r["conversation_id"] for r in mine}
    early = [cid for cid in theirs if stopped.get(cid, kill_mono_ns) < kill_mono_ns - TICKED_WITHIN_S * 1e9]
    missing = [cid for cid in early if cid not in have]
    if missing:
        found.append(f"{len(missing)} of the victim's {len(early)} gens finished "
                     f"{TICKED_WITHIN_S:g} s before the kill have no row")
    return found
