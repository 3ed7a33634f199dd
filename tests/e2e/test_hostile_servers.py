"""The harness judged against a server that shares none of its code (tests/rawserver.py).

Each test starts rawserver as its own process on port 0 with one behaviour, runs
``python -m loadtest run`` against it for a few seconds, and holds the harness's figures
(summary.json, requests.csv) against the server's own log of what it really sent. Requests
are joined to the server's answers by ``conversationId`` (unique per gen).

Written to the schema-2 summary contract (issues 9 and 10): ``measure_s``, ``drain``,
``latency_from_failed``, ``error_rate`` over offered requests, ``session_error_rate``,
``verdict``, a connection retired after an ``error``, a frame-size cap.

Runs are sequential (function-scoped, each a few seconds) so that the timing comparisons are
not disturbed by other runs on a small machine; only the runs that compare no timings (a target
that dies mid-run, never_auth, error_ends, invalid UTF-8) overlap one another (the
``overlapped`` fixture).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from support.helpers import run_concurrently
from support.rawruns import (
    API_KEY,
    NORMAL,
    RAWSERVER,
    Served,
    _start_server,
    _stop_server,
    failed_rows,
    ms,
    no_gen_after_error_on_same_connection,
    ok_rows,
    overlapping_gens,
    scenario,
    serve_and_run,
)
from support.tolerances import MEDIAN_SLACK_MS

#: real sockets, processes or wall-clock time: the full tier only (scripts/test.sh)
pytestmark = pytest.mark.realtime


def test_normal_ttft_and_chunks_agree_with_the_server(tmp_path: Path) -> None:
    """Same times, same chunk counts, request by request, as the server logged."""
    run = serve_and_run(tmp_path, "normal", NORMAL, scenario("normal", users=4, duration="3s"))
    assert run.rc == 0, run.diag()
    gens = run.gens()
    rows = ok_rows(run)
    assert len(rows) > 50 and len(rows) == len(run.rows), run.summary.get("requests")
    server_ttft, harness_ttft = [], []
    for r in rows:
        g = gens.get(r["conversation_id"])
        assert g is not None, f"request {r['request_id']}: conversation {r['conversation_id']!r} never sent"
        assert int(r["chunks"]) == len(g["chunks"]) == NORMAL["chunks"], (r, len(g["chunks"]))
        assert g["stop"] is not None
        s_ttft = ms(g["chunks"][0]["t_mono_ns"] - g["recv"]["t_mono_ns"])
        h_ttft = float(r["ttft_uncorrected_ms"])
        # the harness sees the first token after the server sent it, never before
        assert h_ttft >= s_ttft - 0.05, (r["request_id"], h_ttft, s_ttft)
        server_ttft.append(s_ttft)
        harness_ttft.append(h_ttft)
        s_e2e = ms(g["stop"]["t_mono_ns"] - g["recv"]["t_mono_ns"])
        assert float(r["e2e_uncorrected_ms"]) >= s_e2e - 0.05
    s_p50, h_p50 = statistics.median(server_ttft), statistics.median(harness_ttft)
    assert s_p50 >= NORMAL["ttft_ms"]  # the server kept its deadline
    assert 0 <= h_p50 - s_p50 < MEDIAN_SLACK_MS, (h_p50, s_p50)  # loopback and decoding at most
    assert abs(run.summary["latency_ms"]["ttft"]["p50"] - h_p50) < 1.0
    # every answer the server finished (after the probe) is one ok row
    assert len([g for g in gens.values() if g["stop"]]) == len(rows)


@pytest.mark.parametrize("warmup", [0.0, 1.0])
def test_throughput_counts_stops_inside_the_window(tmp_path: Path, warmup: float) -> None:
    """requests_per_s * (duration - warmup) = answers whose stop the server sent inside
    [warmup, duration]; answers finishing after the window are the drain, not in the rate.
    With warmup 0 every user's first request starts inside the window but its last one ends
    after it: counting requests *started* in the window would be one per user too many."""
    opts = {"ttft_ms": 100, "gap_ms": 100, "chunks": 10}  # ~1.1 s answers: edges matter
    users, duration = 8, 5.0
    run = serve_and_run(tmp_path, "slow_stream", opts,
                        scenario("throughput", users=users, duration=f"{duration:g}s", warmup=f"{warmup:g}s"))
    assert run.rc == 0, run.diag()
    s = run.summary
    # align the server's wall clock with the run's start: gen received ~ run start + t_send_s
    gens = run.gens()
    offsets = [g["recv"]["t_wall_ns"] / 1e9 - float(r["t_send_s"])
               for r in run.rows if (g := gens.get(r["conversation_id"]))]
    assert offsets and max(offsets) - min(offsets) < 0.05  # one clock offset fits every request
    start = statistics.median(offsets)
    lo, hi = start + warmup, start + duration
    stops = [g["stop"]["t_wall_ns"] / 1e9 for g in gens.values() if g["stop"]]
    inside = sum(lo <= t < hi for t in stops)
    after = sum(t >= hi for t in stops)
    assert after >= users - 1  # the closed loop had answers in flight at the window's end
    measure = duration - warmup
    assert abs(s["throughput"]["requests_per_s"] * measure - inside) <= 2, (s["throughput"], inside, measure)
    assert abs(s["measure_s"] - measure) < 0.05, s["measure_s"]
    drain = s["drain"]
    assert drain["drain_s"] >= 0
    assert abs(drain["completed"] - after) <= 1, (drain, after)
    assert drain["completed"] == sum(float(r["t_stop_s"]) >= duration for r in ok_rows(run))


def test_error_then_late_never_reuses_the_connection(tmp_path: Path) -> None:
    """A proxy reports an error, then flushes the rest of that answer 200 ms later. The harness
    must retire the connection: no request may be 'ok' on somebody else's late chunks."""
    opts = {"ttft_ms": 50, "gap_ms": 10, "chunks": 8, "error_after": 2, "late_ms": 200, "every": 2}
    run = serve_and_run(tmp_path, "error_then_late", opts, scenario("late", users=4, duration="3s"))
    assert run.rc == 0, run.diag()
    s = run.summary
    gens = run.gens()
    errors = run.sent("error")
    assert len(errors) > 5
    # no ok request with fewer chunks than the answer, or a TTFT below the server's
    for r in ok_rows(run):
        assert int(r["chunks"]) == opts["chunks"], r
        assert float(r["ttft_uncorrected_ms"]) >= opts["ttft_ms"], r
        g = gens.get(r["conversation_id"])
        assert g is not None, f"ok request {r['request_id']} on an answer the server never began: {r}"
        assert g["error"] is None and g["stop"] is not None, (r, g)
    # the server never received a gen on a connection after it sent an error there
    assert no_gen_after_error_on_same_connection(run) == []
    assert overlapping_gens(run) == []
    # every server error is one failed request, category server_error, with its 2 chunks and TTFT
    failed = failed_rows(run)
    assert len(failed) == len(errors) == s["errors"]["server_error"], (len(failed), len(errors), s["errors"])
    assert all(r["error_category"] == "server_error" and "upstream hiccup" in r["error_message"] for r in failed)
    assert all(r["chunks"] == "2" and r["ttft_uncorrected_ms"] != "" for r in failed)
    assert {r["conversation_id"] for r in failed} == {e["conversation_id"] for e in errors}
    assert s["reconnects"] >= len(errors) - 4, (s["reconnects"], len(errors))
    assert s["latency_from_failed"]["ttft"] == len(failed) > 0


def test_error_ends_fails_the_default_error_rate_slo(overlapped: dict[str, Served]) -> None:
    """Every gen answered by an error only: each is one failed row, each connection retired, and
    the default error_rate SLO (0.01) fails the run although the scenario set only a TTFT SLO."""
    run = overlapped["error_ends"]
    assert run.rc == 1, run.diag()
    s = run.summary
    errors = run.sent("error")
    assert errors and run.sent("stop") == []
    assert len(failed_rows(run, "server_error")) == len(errors) == s["requests"]["failed"]
    assert all(r["chunks"] == "0" and r["ttft_ms"] == "" for r in failed_rows(run))
    assert no_gen_after_error_on_same_connection(run) == []
    assert s["error_rate"] == 1.0
    assert s["slo"]["error_rate"]["limit"] == 0.01 and s["slo"]["error_rate"]["pass"] is False
    assert s["passed"] is False and s["verdict"] == "failed"
    assert s["latency_from_failed"]["ttft"] == 0


DIES = ["die_at_s", "sigkill", "die_in_think"]


def _die_mid_run(tmp: Path, how: str) -> Served:
    opts = {"ttft_ms": 50, "gap_ms": 20, "chunks": 10}
    scen = scenario("dies", users=5, duration="9s", ping=True, slo=None,
                    timeouts="{connect: 1s, first_token: 2s, stream: 5s}")
    if how == "die_in_think":
        opts = {"ttft_ms": 20, "gap_ms": 5, "chunks": 3}
        scen = scenario("dies-think", users=5, duration="9s", ping=True, think="1s", slo=None,
                        timeouts="{connect: 1s, first_token: 2s, stream: 5s}")
    if how in ("die_at_s", "die_in_think"):
        return serve_and_run(tmp, "die_at_s", {**opts, "die_at_s": 3}, scen)
    # the server starts ~0.1 s before the harness, which needs ~0.5 s to start itself
    return serve_and_run(tmp, "normal", opts, scen, kill_server_at_s=3.5)


#: the runs of the ``overlapped`` fixture: (when it starts, s; how it runs)
OVERLAPPED: dict[str, tuple[float, Callable[[Path], Served]]] = {
    **{how: (1.5 * i, partial(_die_mid_run, how=how)) for i, how in enumerate(DIES)},
    "never_auth": (4.5, lambda tmp: serve_and_run(
        tmp, "never_auth", {}, scenario("never-auth", users=2, duration="3s",
                                        timeouts="{connect: 1s, first_token: 2s, stream: 5s}"), timeout=45)),
    "error_ends": (5.5, lambda tmp: serve_and_run(
        tmp, "error_ends", {"ttft_ms": 20, "gap_ms": 5, "chunks": 5, "error_after": 0},
        scenario("error-ends", users=3, duration="2s", slo="{ttft_p99_ms: 5000}"))),
    "invalid_utf8": (6.5, lambda tmp: serve_and_run(
        tmp, "invalid_utf8", {"ttft_ms": 20, "gap_ms": 10, "chunks": 5, "at_chunk": 2},
        scenario("utf8", users=2, duration="2s"))),
}


@pytest.fixture(scope="module")
def overlapped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Served]:
    """The runs that judge a verdict, error categories and the server's log, never a timing,
    overlapping (and no other test runs meanwhile): the three 9 s runs against a target that
    dies, then never_auth, error_ends and invalid UTF-8, each in the shadow of the 9 s ones.
    Each starts 1-1.5 s after the one before, once that one's harness is up and only streaming
    (2-5 users, a few % of a core), so every harness starts as if alone, well before its target
    dies (at 3 s, or 3.5 s): the first request reaches the server at 0.6-0.9 s, as alone."""
    tmp = tmp_path_factory.mktemp("overlapped")

    def start(name: str) -> Served:
        at_s, run = OVERLAPPED[name]
        time.sleep(at_s)
        (tmp / name).mkdir()
        return run(tmp / name)

    return run_concurrently({name: partial(start, name) for name in OVERLAPPED})


@pytest.mark.parametrize("how", DIES)
def test_a_target_that_dies_mid_run_fails_the_run(overlapped: dict[str, Served], how: str) -> None:
    """At 3 s of a 9 s run the target dies (connections aborted, no more listening; or the
    process is SIGKILLed). The run must fail, with -q, by default SLOs. ``die_in_think``: short
    answers and 1 s think times, so the target dies with no gen in flight; only the failed
    reconnects and pings show it (today's harness passes that run with exit 0)."""
    run = overlapped[how]
    if how in ("die_at_s", "die_in_think"):
        assert any(e["ev"] == "died" for e in run.log)
    s = run.summary
    assert s["errors"]["connect"] + s["errors"]["disconnect"] > 0, s["errors"]
    # every gen the server received but never finished is one failed (not ok) request
    gens = run.gens()
    unfinished = {c for c, g in gens.items() if g["stop"] is None and g["error"] is None}
    assert unfinished or how == "die_in_think"
    rows = {r["conversation_id"]: r for r in run.rows if r["conversation_id"]}
    for conv in unfinished:
        r = rows.get(conv)
        if r is not None:  # conv-message may have been lost with the connection
            assert r["outcome"] == "failed" and r["error_category"] in ("disconnect", "connect"), r
    assert not [r for r in ok_rows(run) if r["conversation_id"] not in gens]
    assert run.rc == 1, run.diag()
    assert s["passed"] is False
    assert s["session_error_rate"] > 0.01 or s["error_rate"] > 0.01, (s.get("session_error_rate"), s["error_rate"])
    assert s["verdict"] == "failed", s.get("verdict")


def test_a_timed_out_stream_retires_its_connection(tmp_path: Path) -> None:
    """3 s answers, 1 s stream timeout: every request times out, and no later gen is sent on a
    connection whose answer is still streaming (its late chunks would be taken for the next)."""
    run = serve_and_run(tmp_path, "slow_stream", {},
                        scenario("timeout", users=2, duration="3s",
                                 timeouts="{connect: 2s, first_token: 2s, stream: 1s}"))
    assert run.rc == 0, run.diag()
    s = run.summary
    received = [e for e in run.log if e["ev"] == "gen_received"]
    assert len(received) >= 4
    assert overlapping_gens(run) == []
    assert s["requests"]["completed"] == 0
    assert s["errors"]["timeout"] == len(failed_rows(run, "timeout")) == len(run.rows) == len(received)
    assert all(9 <= int(r["chunks"]) <= 10 for r in run.rows), [r["chunks"] for r in run.rows]


def test_huge_frame_is_a_protocol_error_and_memory_stays_bounded(tmp_path: Path) -> None:
    opts = {"ttft_ms": 20, "gap_ms": 10, "chunks": 5, "huge_mb": 20, "at_chunk": 2, "max_times": 3}
    run = serve_and_run(tmp_path, "huge_frame", opts, scenario("huge", users=2, duration="3s"))
    assert run.rc == 0, run.diag()
    s = run.summary
    huge = run.sent("huge")
    assert len(huge) == 3
    assert s["errors"]["protocol"] == len(huge), s["errors"]
    bad = {e["conversation_id"] for e in huge}
    for r in run.rows:
        if r["conversation_id"] in bad:
            assert r["outcome"] == "failed" and r["error_category"] == "protocol", r
    assert s["requests"]["completed"] > 20  # the run went on
    assert run.peak_rss < 300 * 1024 * 1024, f"peak RSS {run.peak_rss / 2**20:.0f} MiB"


def test_invalid_utf8_is_a_protocol_error(overlapped: dict[str, Served]) -> None:
    run = overlapped["invalid_utf8"]
    assert run.rc == 0, run.diag()
    s = run.summary
    bad = run.sent("invalid_utf8")
    assert len(bad) > 5
    assert s["errors"]["disconnect"] == 0, (s["errors"], s.get("error_samples"))
    assert s["errors"]["protocol"] == len(bad) == len(failed_rows(run, "protocol")), s["errors"]
    assert s["requests"]["completed"] == 0


def test_never_auth_is_an_auth_timeout_with_a_run_directory(overlapped: dict[str, Served]) -> None:
    run = overlapped["never_auth"]
    assert run.rc == 3, run.diag()
    assert run.stderr.startswith("error: "), run.stderr
    assert "auth-connect-complete" in run.stderr and "within" in run.stderr, run.stderr
    assert "refused the API key" not in run.stderr
    assert API_KEY not in run.stderr + run.stdout
    assert [e for e in run.log if e["ev"] == "upgrade"]  # the upgrade did complete
    assert run.sent("auth") == []
    assert (run.out / "summary.json").is_file(), "no run directory for an unreachable target"
    assert run.summary["verdict"] == "unreachable"
    assert run.summary["passed"] is False


def test_rawserver_frames_of_every_length_roundtrip(tmp_path: Path) -> None:
    """The server's own framing, checked with a client that is not the harness's either:
    7-, 16- and 64-bit payload lengths, ping/pong and a clean close."""
    import asyncio
    import base64
    import struct

    sys.path.insert(0, str(RAWSERVER.parent))
    from support import rawserver  # the module under test here, not loadtest

    for n in (0, 125, 126, 65535, 65536, 70000):
        frame = rawserver.encode_frame(rawserver.OP_TEXT, b"a" * n)
        assert frame[0] == 0x81
        if n < 126:
            assert frame[1] == n and len(frame) == 2 + n
        elif n < 65536:
            assert frame[1] == 126 and struct.unpack("!H", frame[2:4])[0] == n
        else:
            assert frame[1] == 127 and struct.unpack("!Q", frame[2:10])[0] == n

    async def client(url: str) -> list[bytes]:
        host_port = url.split("//")[1].split("/")[0]
        host, port = host_port.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /v2/chat?apikey=x HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                     .encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert b" 101 " in head and rawserver.accept_key(key).encode() in head

        def masked(op: int, payload: bytes) -> bytes:
            mask = os.urandom(4)
            body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            n = len(payload)
            ln = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n)
            return bytes([0x80 | op]) + ln + mask + body

        async def frame() -> tuple[int, bytes]:
            b0, b1 = await reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await reader.readexactly(8))
            return b0 & 0x0F, await reader.readexactly(n)

        got = [await frame()]  # auth
        writer.write(masked(rawserver.OP_PING, b"hi"))
        got.append(await frame())
        writer.write(masked(rawserver.OP_TEXT, b'{"event":"ping"}'))
        got.append(await frame())
        writer.write(masked(rawserver.OP_TEXT, json.dumps({"event": "gen", "data": {"prompt": "p" * 300}}).encode()))
        for _ in range(1 + 3 + 1):  # conv, 3 chunks, stop
            got.append(await frame())
        writer.write(masked(rawserver.OP_CLOSE, struct.pack("!H", 1000)))
        got.append(await frame())
        writer.close()
        return [bytes([op]) + p for op, p in got]

    server, url, log = _start_server(tmp_path, "normal", {"ttft_ms": 5, "gap_ms": 1, "chunks": 3})
    try:
        frames = asyncio.run(asyncio.wait_for(client(url), 10))
    finally:
        _stop_server(server)
    ops = [f[0] for f in frames]
    assert ops == [1, 0xA, 1, 1, 1, 1, 1, 1, 8]
    events = [json.loads(f[1:])["event"] for f in frames if f[0] == 1]
    assert events == ["auth-connect-complete", "pong", "conv-message", "message", "message", "message", "message"]
    assert json.loads(frames[-2][1:])["data"] == {"output": "", "stop": True}
    kinds = defaultdict(int)
    for e in (json.loads(x) for x in log.read_text().splitlines()):
        if e["ev"] == "frame_sent":
            kinds[e["kind"]] += 1
    assert dict(kinds) == {"auth": 1, "ws-pong": 1, "pong": 1, "conv": 1, "chunk": 3, "stop": 1, "close": 1}
