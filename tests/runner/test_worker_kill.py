"""A worker process killed at any moment (issue 22, item 3): only it is lost, the survivor
finishes and is merged, and the killed worker's figures and rows up to its last streamed second
are kept — and agree. The pieces first (a message read whole however it arrives; a part file
cut at the last tick), then twenty kills at random moments of real runs."""

from __future__ import annotations

import csv
import random
import socket
from functools import partial
from pathlib import Path

import pytest
from support.helpers import run_concurrently
from support.workerkill import kill_try

from loadtest.metrics.record import RequestRecord
from loadtest.rundir.writer import RequestCsv
from loadtest.runner.processes import _absorb, _frame, _Inbox, _Part, _part_path


def test_a_message_is_read_whole_however_it_arrives_and_one_cut_short_never() -> None:
    ours, child = socket.socketpair()
    ours.setblocking(False)  # as uvloop leaves a socket it watches
    inbox = _Inbox(ours.fileno())
    report = _frame("report", ({"figures": "x" * 100_000}, 123))
    tick = _frame("tick", 1)
    try:
        child.sendall(tick + report[:5])  # the header of the report cut in two
        assert inbox.read() == [("tick", 1)]
        child.sendall(report[5:40_000])
        assert inbox.read() == []  # nothing would block, nothing half-read is returned
        child.sendall(report[40_000:] + tick[:6])
        assert inbox.read() == [("report", ({"figures": "x" * 100_000}, 123))]
        child.close()  # the child died in the middle of a tick
        assert inbox.read() == [] and inbox.closed
    finally:
        ours.close()
        child.close()


def test_a_lost_workers_rows_are_those_of_its_last_tick(tmp_path: Path) -> None:
    sink = RequestCsv(tmp_path, secret=None)
    part = _Part(_part_path(tmp_path, 1), secret=None, worker=1)

    def rec(i: int) -> RequestRecord:
        return RequestRecord(request_id=i, user=1, t_send=10 + i, t_stop=20 + i, outcome="ok",
                             error_message="two\nlines" if i == 2 else "")

    for i in range(3):
        part(rec(i), 0)
    at_last_tick = part.flush()
    for i in range(3, 5):  # written (even flushed) after the last tick that reached the coordinator
        part(rec(i), 0)
    part.flush()
    part.close()
    _absorb(sink, _part_path(tmp_path, 1), at_last_tick)
    sink.finish()
    with (tmp_path / "requests.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["request_id"], r["worker"]) for r in rows] == [("0", "1"), ("1", "1"), ("2", "1")]
    assert rows[2]["error_message"] == "two\nlines"
    assert not _part_path(tmp_path, 1).exists()


#: 10 kills, 5 runs at a time: ~25 s on 2 cores (CI's budget); benchmarks/bench_worker_kill.py runs 50
TRIES, AT_ONCE, DURATION_S = 10, 5, 3.0


@pytest.mark.realtime
def test_a_worker_killed_at_random_moments_is_the_only_one_lost_and_keeps_its_rows(tmp_path: Path) -> None:
    rng = random.Random(22)
    plan = {f"try{i:02d}": (rng.randrange(2), round(rng.uniform(1.3, DURATION_S - 0.3), 2)) for i in range(TRIES)}
    tries = run_concurrently({name: partial(kill_try, tmp_path / name, victim=victim, kill_at_s=at,
                                            duration_s=DURATION_S)
                              for name, (victim, at) in plan.items()}, max_workers=AT_ONCE)
    lines = [t.line() for t in tries.values()]
    print("\n".join(lines))
    failed = [t for t in tries.values() if t.problems]
    assert not failed, "\n".join(lines) + "\n" + "\n".join(f"{t.name}: {t.stderr[-1500:]}" for t in failed)
    # every try: exit 5, the victim alone lost, the survivor merged, rows of both
    assert all(t.rc == 5 and t.finished == 1 and t.rows[str(t.victim)] > 0 for t in tries.values())
