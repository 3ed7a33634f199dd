"""Open-loop load, the connection pool, and latency from the intended send time.

Pure pool bookkeeping first (a fake context: no sockets), then end to end through the CLI
against the embedded mock in its own process, on loopback. Each run asserts figures.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.helpers import read_csv_rows, run_cli
from support.tolerances import P50_LATENESS_MS, P99_LATENESS_MS

from loadtest.clock import RealClock
from loadtest.engine.pool import Pool
from loadtest.errors import ConnectFailed
from loadtest.metrics.collector import Collector, RequestRecord


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p / 100))]


def _run(path: Path, out: Path) -> tuple[dict[str, Any], list[dict[str, str]], list[dict[str, str]]]:
    proc = run_cli("run", str(path), "--out", str(out), "--no-html", "-q", timeout=90)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return summary, read_csv_rows(out / "timeseries.csv"), read_csv_rows(out / "requests.csv")


def _accounted(s: dict[str, Any]) -> int:
    r = s["requests"]
    return int(r["completed"] + r["failed"] + r["dropped"] + r["cancelled"])


# ---------------------------------------------------------------------- pool, no sockets


class _FakeConn:
    def __init__(self, n: int) -> None:
        self.id = n
        self.broken = False
        self.retired = False
        self.closed = False

    async def close(self) -> None:
        self.closed = True
        self.broken = True


class _FakeCtx:
    """A RunContext stand-in: each gen waits on its own event; 'break' breaks the connection."""

    def __init__(self, *, fail_connects: int = 0) -> None:
        self.collector = Collector(t0_ns=0, warmup_s=0)
        self.active_sessions = 0
        self.stopping = asyncio.Event()
        self.clock = RealClock()
        self.opened: list[_FakeConn] = []
        self.fail_connects = fail_connects
        self.release: dict[int, asyncio.Event] = {}
        self.order: list[int] = []
        self.reported: list[tuple[int, str]] = []
        original = self.collector.on_request

        def on_request(rec: RequestRecord, now: int) -> None:
            self.reported.append((rec.request_id, rec.outcome))
            original(rec, now)

        self.collector.on_request = on_request  # type: ignore[method-assign]

    async def open_connection(self) -> _FakeConn:
        await asyncio.sleep(0)
        if self.fail_connects:
            self.fail_connects -= 1
            raise ConnectFailed("refused (fake)")
        conn = _FakeConn(len(self.opened) + 1)
        self.opened.append(conn)
        return conn

    async def gen(self, conn: Any, frame: str, rec: RequestRecord) -> None:
        self.order.append(rec.request_id)
        rec.connection = conn.id
        try:
            ev = self.release.setdefault(rec.request_id, asyncio.Event())
            await ev.wait()
            if frame == "break":
                conn.broken = True
                rec.outcome = "failed"
            else:
                rec.outcome = "ok"
        except asyncio.CancelledError:
            rec.outcome = "cancelled"
            raise
        finally:
            self.collector.on_request(rec, 1)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)

    def finish(self, rid: int) -> None:
        self.release.setdefault(rid, asyncio.Event()).set()


def _rec(rid: int) -> RequestRecord:
    return RequestRecord(request_id=rid, user=-1, t_intended=1, scheduled=True)


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_pool_grows_queues_fifo_drops_and_accounts_for_everything() -> None:
    async def go() -> tuple[_FakeCtx, Pool]:
        ctx = _FakeCtx()
        pool = Pool(ctx, max_connections=2, max_queue=2)  # type: ignore[arg-type]
        assert await pool.start(1) == 1
        async with asyncio.TaskGroup() as tg:
            pool.attach(tg)
            for rid in range(1, 7):
                pool.submit(_rec(rid), "gen")
            await _settle()
            # 1 on the idle connection, 2 opened on demand (queued meanwhile), 3-4 queued, 5-6 dropped
            assert pool.size == 2 and pool.queued == 2
            assert ctx.order == [1, 2]
            assert ctx.reported == [(5, "dropped"), (6, "dropped")]
            ctx.finish(2)
            await _settle()
            assert ctx.order == [1, 2, 3]  # FIFO: the freed connection takes the oldest waiter
            for rid in (1, 3, 4):
                ctx.finish(rid)
                await _settle()
            await pool.drain()
            await pool.close()
        return ctx, pool

    ctx, pool = asyncio.run(go())
    assert sorted(ctx.reported) == [(1, "ok"), (2, "ok"), (3, "ok"), (4, "ok"), (5, "dropped"), (6, "dropped")]
    assert ctx.collector.completed == 4 and ctx.collector.dropped == 2
    assert len(ctx.opened) == 2 and all(c.closed for c in ctx.opened)
    assert ctx.active_sessions == 0
    assert pool.peak_queue == 3  # max_queue 2, plus 1 waiting for the connection opened for it


def test_pool_replaces_broken_connections_and_close_cancels_the_rest() -> None:
    async def go() -> _FakeCtx:
        ctx = _FakeCtx()
        pool = Pool(ctx, max_connections=1, max_queue=10)  # type: ignore[arg-type]
        await pool.start(1)
        async with asyncio.TaskGroup() as tg:
            pool.attach(tg)
            pool.submit(_rec(1), "break")
            for rid in (2, 3, 4):
                pool.submit(_rec(rid), "gen")
            ctx.fail_connects = 2  # the replacement fails twice, then succeeds
            ctx.finish(1)
            await _settle()
            assert ctx.collector.reconnects == 1
            assert ctx.collector.errors["connect"] == 2
            assert ctx.order == [1, 2] and ctx.opened[0].closed and not ctx.opened[1].closed
            await pool.close()  # request 2 in flight, 3 and 4 queued: all cancelled, none lost
        return ctx

    ctx = asyncio.run(go())
    assert sorted(ctx.reported) == [(1, "failed"), (2, "cancelled"), (3, "cancelled"), (4, "cancelled")]
    assert ctx.collector.failed == 1 and ctx.collector.cancelled == 3
    assert all(c.closed for c in ctx.opened) and ctx.active_sessions == 0


# ---------------------------------------------------------------------- end to end


@pytest.mark.realtime
def test_stall_shows_in_corrected_latency_only(write_scenario: Callable[..., Path], tmp_path: Path) -> None:
    path = write_scenario("""
        name: open-stall
        target: {url: mock}
        mock:
          ttft_ms: 10
          gap_ms: 2
          chunks: 5
          faults: {stall: [{at_s: 4, ms: 1000}]}
        load: {mode: open, rate: 100, arrival: constant, duration: 10s, warmup: 1s,
               connections: 5, max_connections: 5, seed: 3}
        session:
          steps:
            - gen: {prompt: "Explain artificial intelligence"}
        slo: {ttft_p99_ms: 100000}
        """)
    s, ts, reqs = _run(path, tmp_path / "run")
    ttft = s["latency_ms"]["ttft"]
    raw = s["latency_ms"]["ttft_uncorrected"]
    # ~1 s of arrivals (100) waited behind the stall: far above 1 % of ~900 requests
    assert ttft["p99"] >= 500, ttft
    assert raw["p99"] < ttft["p99"] / 2, (raw, ttft)
    assert s["latency_ms"]["e2e"]["p99"] >= 500 > s["latency_ms"]["e2e_uncorrected"]["p50"]
    assert s["schedule"]["offered_rate"] == pytest.approx(100, rel=0.01)
    assert s["requests"]["failed"] == 0 and s["requests"]["dropped"] == 0
    assert _accounted(s) == 900
    # the stall in the time series: sends dip while the schedule keeps offering 100/s,
    # then the backlog goes out; the TTFT p99 of those seconds jumps
    stall = [r for r in ts if 3 <= int(r["t_s"]) <= 6]  # the mock's clock starts a little earlier
    assert all(int(r["offered"]) == 100 for r in stall)
    assert min(int(r["achieved"]) for r in stall) < 60
    assert max(int(r["achieved"]) for r in stall) > 120
    # a second in which nothing completed (the heart of the stall) has no TTFT: ""
    assert max(float(r["ttft_p99_ms"]) for r in stall if r["ttft_p99_ms"]) >= 500
    calm = [float(r["ttft_p99_ms"]) for r in ts if int(r["t_s"]) in (1, 2, 8, 9)]
    assert max(calm) < 100, calm
    # per request: corrected - uncorrected == t_send - t_intended
    ok = [r for r in reqs if r["outcome"] == "ok"]
    for r in ok[::37]:
        late_ms = (float(r["t_send_s"]) - float(r["t_intended_s"])) * 1000
        assert float(r["ttft_ms"]) - float(r["ttft_uncorrected_ms"]) == pytest.approx(late_ms, abs=0.01)


@pytest.mark.realtime
def test_pool_queues_drops_and_accounts_for_every_arrival(write_scenario: Callable[..., Path],
                                                          tmp_path: Path) -> None:
    path = write_scenario("""
        name: open-pool
        target: {url: mock}
        mock: {ttft_ms: 100, gap_ms: 100, chunks: 10}   # ~1 s streams
        load: {mode: open, rate: 50, arrival: poisson, duration: 5s, seed: 5,
               connections: 2, max_connections: 10, max_queue: 20}
        session:
          steps:
            - gen: {prompt: "Explain artificial intelligence"}
        """)
    s, ts, reqs = _run(path, tmp_path / "run")
    req = s["requests"]
    offered = sum(int(r["offered"]) for r in ts)
    # 10 connections serve ~10 req/s of 1 s streams: 40/s more than that queue or drop
    assert offered == pytest.approx(250, rel=0.2)
    assert req["dropped"] >= 100, req
    assert req["completed"] >= 40 and req["failed"] == 0
    assert _accounted(s) == offered == len(reqs)
    assert sorted(int(r["request_id"]) for r in reqs) == list(range(1, offered + 1))
    assert sum(1 for r in reqs if r["outcome"] == "dropped") == req["dropped"]
    assert sum(int(r["dropped"]) for r in ts) == req["dropped"]
    # waits: with a 20-deep queue in front of 10 one-second streams, about 2 s
    queue = s["latency_ms"]["queue"]
    assert queue["p50"] >= 500, queue
    assert s["latency_ms"]["ttft"]["p50"] >= 500 > s["latency_ms"]["ttft_uncorrected"]["p50"]
    assert max(int(r["active_sessions"]) for r in ts) == 10  # grew from 2 to max_connections
    assert s["latency_ms"]["connect"]["count"] == 10  # max_connections, no churn (the probe is not counted)
    assert s["schedule"]["achieved_rate"] < s["schedule"]["offered_rate"] / 2


@pytest.mark.realtime
def test_trace_replay_sends_on_time(write_scenario: Callable[..., Path], tmp_path: Path) -> None:
    rng = random.Random(11)
    lines, ms = [], 200  # whole milliseconds: "t" and "t_ms" lines give the very same float
    expected: list[tuple[float, int]] = []
    for i in range(400):
        ms += round(rng.expovariate(0.1)) if i % 10 else 0  # ~100/s, with exact ties (bursts)
        if i % 3 == 0:
            lines.append(json.dumps({"t": ms / 1000, "prompt": "x" * (5 + i % 7)}))
            expected.append((ms / 1000, 5 + i % 7))
        elif i % 3 == 1:
            lines.append(json.dumps({"t_ms": ms, "prompt_chars": 40 + i}))
            expected.append((ms / 1000, 40 + i))
        else:
            lines.append(json.dumps({"t": ms / 1000}))
            expected.append((ms / 1000, len("Explain artificial intelligence")))
    t = ms / 1000
    traces = tmp_path / "traces"
    traces.mkdir()
    (traces / "t.jsonl").write_text("# recorded\n" + "\n".join(lines) + "\n", encoding="utf-8")
    duration = int(t) + 2
    path = write_scenario(f"""
        name: open-trace
        target: {{url: mock}}
        mock: {{ttft_ms: 5, gap_ms: 1, chunks: 3}}
        load: {{mode: open, trace: traces/t.jsonl, duration: {duration}s,
               connections: 30, max_connections: 60}}
        session:
          steps:
            - gen: {{prompt: "Explain artificial intelligence"}}
        """)
    # The figure under test is the harness's own timing. A run whose event loop was itself held
    # up (loop lag p99 > 2 ms: an idle loop at 100 arrivals/s wakes within ~1 ms) measured a
    # busy machine instead (other processes on the 2 cores); it gets one more try.
    for attempt in range(2):
        s, _, reqs = _run(path, tmp_path / f"run{attempt}")
        lateness = [(float(r["t_send_s"]) - float(r["t_intended_s"])) * 1000 for r in reqs]
        loop_lag_p99 = s["latency_ms"]["loop_lag"]["p99"]
        if _pct(lateness, 99) < P99_LATENESS_MS or loop_lag_p99 <= P50_LATENESS_MS:
            break
    assert _accounted(s) == s["requests"]["completed"] == len(reqs) == 400
    reqs.sort(key=lambda r: int(r["request_id"]))
    for r, (t_s, chars) in zip(reqs, expected, strict=True):
        assert float(r["t_intended_s"]) == pytest.approx(t_s, abs=2e-6)
        assert int(r["prompt_chars"]) == chars
    lateness = [(float(r["t_send_s"]) - float(r["t_intended_s"])) * 1000 for r in reqs]
    assert min(lateness) >= 0
    assert _pct(lateness, 99) < P99_LATENESS_MS, (sorted(lateness)[-10:], f"loop lag p99 {loop_lag_p99} ms")
    assert s["latency_ms"]["schedule_lag"]["p99"] < P99_LATENESS_MS, s["latency_ms"]["schedule_lag"]
    assert s["latency_ms"]["queue"]["p99"] < 1.0


@pytest.mark.realtime
def test_paced_closed_loop_counts_from_the_paced_start(write_scenario: Callable[..., Path],
                                                       tmp_path: Path) -> None:
    path = write_scenario("""
        name: paced
        target: {url: mock}
        mock:
          ttft_ms: 50
          gap_ms: 5
          chunks: 5
          faults: {stall: [{at_s: 2, ms: 1500}]}
        load: {mode: closed, concurrency: 10, pace: 500ms, duration: 6s, seed: 2}
        session:
          steps:
            - gen: {prompt: "Explain artificial intelligence"}
        slo: {ttft_p99_ms: 100000}
        """)
    s, _, reqs = _run(path, tmp_path / "run")
    ok = [r for r in reqs if r["outcome"] == "ok"]
    assert len(ok) == s["requests"]["completed"] >= 100
    # 10 users every 500 ms: the schedule offers 20/s
    assert s["schedule"]["offered_rate"] == pytest.approx(20, rel=0.1)
    corrected = [float(r["ttft_ms"]) for r in ok]
    raw = [float(r["ttft_uncorrected_ms"]) for r in ok]
    for r, c, u in zip(ok, corrected, raw, strict=True):
        late_ms = (float(r["t_send_s"]) - float(r["t_intended_s"])) * 1000
        assert c - u == pytest.approx(late_ms, abs=0.01)
    # the stall holds each user's in-flight request (slow in both views) and makes its next
    # paced start late (slow only when counted from the paced start)
    slow_corrected = sum(v >= 300 for v in corrected)
    slow_raw = sum(v >= 300 for v in raw)
    assert slow_raw >= 5 and slow_corrected >= slow_raw + 8, (slow_corrected, slow_raw)
    lat = s["latency_ms"]
    assert lat["ttft"]["mean"] > lat["ttft_uncorrected"]["mean"] * 1.2
    assert lat["ttft"]["p99"] >= lat["ttft_uncorrected"]["p99"]
    # the late starts are queue time (the user was busy), not schedule lag
    assert lat["queue"]["max"] >= 300
    assert lat["schedule_lag"]["p50"] < P50_LATENESS_MS
