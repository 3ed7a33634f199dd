"""W3C ``traceparent`` on every WebSocket upgrade (issue 21), checked against what an
independent server (tests/support/rawserver.py) logged it received: one well-formed, sampled
trace context per connection, a fresh trace id each, and requests.csv's ``trace_id`` naming the
connection each request really went over (the server's count of gens per connection equals the
rows per trace id)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from support.rawruns import scenario, serve_and_run

pytestmark = pytest.mark.realtime

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


def test_every_upgrade_carries_a_fresh_traceparent_that_requests_csv_names(tmp_path: Path) -> None:
    run = serve_and_run(tmp_path, "normal", {"ttft_ms": 20, "chunks": 3, "gap_ms": 5},
                        scenario("trace", users=4, duration="2s", think="50ms"))
    assert run.rc == 0, run.diag()
    upgrades = [e for e in run.log if e["ev"] == "upgrade"]
    assert len(upgrades) >= 4
    trace_of_conn = {}
    for e in upgrades:
        m = TRACEPARENT.match(e["traceparent"] or "")
        assert m, e
        assert m.group(1) != "0" * 32 and m.group(2) != "0" * 16
        trace_of_conn[e["conn"]] = m.group(1)
    assert len(set(trace_of_conn.values())) == len(upgrades)  # a fresh trace id per connection
    gens_per_trace = Counter(trace_of_conn[e["conn"]] for e in run.log if e["ev"] == "gen_received")
    rows_per_trace = Counter(r["trace_id"] for r in run.rows)
    assert rows_per_trace == gens_per_trace
    assert sum(rows_per_trace.values()) >= 8
