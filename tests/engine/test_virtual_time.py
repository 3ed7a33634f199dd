"""The engine in virtual time (loadtest.testing.run_virtual): the open-loop dispatcher, a
closed-loop ramp, the stream timeouts and pacing under a stalled server, deterministic to the
nanosecond and in a fraction of the real time. No sockets: a scripted fake WebSocket
(loadtest.testing.FakeWebSocket, served by the protocol's server side) stands in for the server,
under the real Connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from loadtest.engine.connection import Connection, ConnectTimings
from loadtest.engine.openloop import dispatch
from loadtest.engine.users import Ramp, RunContext, run_user
from loadtest.errors import RequestTimeout
from loadtest.metrics.collector import Collector, RequestRecord
from loadtest.protocol import GenRequest, encode_gen, encode_server_event
from loadtest.scenario import GenStep
from loadtest.schedule.arrivals import RateProfile, Stage, schedule
from loadtest.testing import Answer, FakeWebSocket, VirtualClock, run_virtual

MS = 1_000_000
S = 1_000_000_000

#: a gen as the engine writes it (the fake's server side refuses a malformed one)
GEN_FRAME = encode_gen(GenRequest(prompt="hi"))


def answer(ttft_ms: float = 50, gap_ms: float = 10, chunks: int = 3) -> Answer:
    frames = [(0, encode_server_event("conv-message", {"conversationId": "c", "messageId": "m"}))]
    for i in range(chunks):
        frames.append((round((ttft_ms + i * gap_ms) * MS),
                       encode_server_event("message", {"output": "tok", "stop": i == chunks - 1})))
    return frames


def _ctx(clock: VirtualClock, script: Callable[[int], Answer], *, duration_s: float,
         sink: list[RequestRecord] | None = None) -> RunContext:
    collector = Collector(t0_ns=0, warmup_s=0, duration_s=duration_s,
                          request_sink=(lambda r, t0: sink.append(r)) if sink is not None else None)

    async def connector(conn_id: int, timings: ConnectTimings) -> Connection:
        return Connection(FakeWebSocket(clock, script), conn_id, None, clock)  # type: ignore[arg-type]

    return RunContext(session=None, url="ws://fake", api_key=None, model=None, connect_s=1.0, first_token_s=5.0,
                      stream_s=10.0, collector=collector, end_ns=round(duration_s * S), clock=clock,
                      connector=connector)


GEN = GenStep.model_validate({"prompt": "hi"})


def test_open_loop_dispatcher_sends_every_arrival_on_time_at_10000_per_s() -> None:
    sent: list[tuple[int, int]] = []

    class Pool:
        def submit(self, rec: RequestRecord, frame: str) -> None:
            sent.append((rec.t_intended, clock_ref[0].now_ns()))

    clock_ref: list[VirtualClock] = []

    async def main(clock: VirtualClock) -> str:
        clock_ref.append(clock)
        ctx = _ctx(clock, lambda n: answer(), duration_s=10)
        arrivals = schedule("constant", RateProfile(rate_per_s=10_000, duration_s=10), seed=1)
        return await dispatch(ctx, Pool(), arrivals, lambda a: ("{}", "hi", ()), t0_ns=0)  # type: ignore[arg-type]

    assert run_virtual(main) == "end"
    assert len(sent) == 100_000
    lateness = [at - intended for intended, at in sent]
    assert min(lateness) >= 0 and max(lateness) <= 1_000  # every send within 1 µs of its time
    assert [i for i, _ in sent] == [n * 100_000 for n in range(100_000)]  # the n-th at n / rate


def test_closed_loop_ramp_follows_its_stages() -> None:
    profile = RateProfile(stages=[Stage(duration_s=2, target=10), Stage(duration_s=2, target=10),
                                  Stage(duration_s=1, target=0)], start=0.0)
    active: dict[float, int] = {}

    async def main(clock: VirtualClock) -> None:
        ctx = _ctx(clock, lambda n: answer(ttft_ms=20, gap_ms=10, chunks=3), duration_s=6)
        async with asyncio.TaskGroup() as tg:
            ramp = Ramp(ctx, tg, profile, [GEN], pace_s=None, t0_ns=0)
            tasks: list[asyncio.Task[None]] = []
            for tick in range(60):  # every 100 ms, as the runner's ticker
                await clock.sleep_until(tick * 100 * MS)
                tasks += ramp.step(clock.now_ns())
                await asyncio.sleep(0)  # the users just started run their first line
                active[round(tick / 10, 1)] = ctx.active_sessions
            ctx.stop()
            await asyncio.gather(*tasks)

    run_virtual(main)
    # users join as the ramp reaches them (0 → 10 over 2 s), stay, then leave (10 → 0 over 1 s)
    assert [active[t] for t in (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 3.9)] == [0, 2, 5, 8, 10, 10, 10]
    assert active[4.5] <= 6 and active[5.5] == 0


def test_first_token_timeout_fires_at_its_deadline() -> None:
    async def main(clock: VirtualClock) -> tuple[int, str, RequestRecord]:
        conn = Connection(FakeWebSocket(clock, lambda n: []), 1, None, clock)  # type: ignore[arg-type]
        rec = RequestRecord(request_id=1, user=0)
        await clock.sleep_until(7 * MS)
        with pytest.raises(RequestTimeout) as info:
            await conn.stream(GEN_FRAME, rec, first_token_s=1.0, stream_s=5.0)
        return clock.now_ns() - rec.t_send, str(info.value), rec

    elapsed, message, rec = run_virtual(main)
    assert elapsed == pytest.approx(1 * S, abs=1_000)
    assert message == "no first token within 1 s" and rec.t_send == 7 * MS and rec.t_first == 0


def test_stream_timeout_counts_from_the_send_and_keeps_what_arrived() -> None:
    def stalls_after_two_chunks(n: int) -> Answer:
        return answer(ttft_ms=500, gap_ms=100, chunks=30)[:3]  # conv-message and 2 chunks, then silence

    async def main(clock: VirtualClock) -> tuple[int, str, RequestRecord, bool]:
        conn = Connection(FakeWebSocket(clock, stalls_after_two_chunks), 1, None, clock)  # type: ignore[arg-type]
        rec = RequestRecord(request_id=1, user=0)
        with pytest.raises(RequestTimeout) as info:
            await conn.stream(GEN_FRAME, rec, first_token_s=1.0, stream_s=3.0)
        return clock.now_ns() - rec.t_send, str(info.value), rec, conn.broken

    elapsed, message, rec, broken = run_virtual(main)
    assert elapsed == pytest.approx(3 * S, abs=1_000)  # the first token came in time; the stream did not
    assert message == "stream did not finish within 3 s (2 chunks received)"
    assert (rec.t_first - rec.t_send, rec.chunks, rec.gaps_ns) == (500 * MS, 2, [100 * MS])
    assert broken  # a late frame of this stream must never reach the next request


def test_pacing_under_a_stalled_server_keeps_the_schedule_and_counts_the_wait() -> None:
    # pace 1 s; the server answers in 100 ms, but the third answer stalls for 2.5 s
    def server(n: int) -> Answer:
        return answer(ttft_ms=2450 if n == 2 else 50, gap_ms=50, chunks=2)

    records: list[RequestRecord] = []

    async def main(clock: VirtualClock) -> None:
        ctx = _ctx(clock, server, duration_s=7.5, sink=records)
        await run_user(ctx, 0, [GEN], pace_s=1.0, users=1)

    run_virtual(main)
    recs = sorted(records, key=lambda r: r.request_id)
    assert [r.t_intended for r in recs] == [n * S for n in range(8)]  # the schedule never slipped
    sends = [r.t_send for r in recs]
    # the 4th and 5th waited behind the stalled 3rd (done at 4.5 s), then the user caught up
    assert sends == [0, S, 2 * S, 4500 * MS, 4600 * MS, 5 * S, 6 * S, 7 * S]
    assert [r.queue_ns for r in recs][3:5] == [1500 * MS, 600 * MS]
    # latency from the intended time shows the stall to every request it delayed
    ttft = [(r.t_first - r.t_intended) // MS for r in recs]
    assert ttft == [50, 50, 2450, 1550, 650, 50, 50, 50]
    assert all(r.outcome == "ok" for r in recs)




def test_a_stop_while_a_million_users_are_being_created_is_honoured_within_a_batch() -> None:
    """Issue 10: SIGINT was ignored for 27 s while users were created. Users start in batches
    with the loop running between them, so a stop lands after at most one more batch."""
    from types import SimpleNamespace

    from loadtest.engine.worker import _start_users

    async def main(clock: VirtualClock) -> int:
        ctx = _ctx(clock, lambda n: answer(), duration_s=10)
        sc = SimpleNamespace(session=SimpleNamespace(steps=[GEN], conversation=None),
                             load=SimpleNamespace(concurrency=1_000_000, pace_s=None))
        tasks: list[asyncio.Task[None]] = []
        async with asyncio.TaskGroup() as tg:
            starter = tg.create_task(_start_users(tg, ctx, sc, tasks))
            await asyncio.sleep(0)  # the starter ran its first batch and yielded
            ctx.stop()  # what the coordinator does on SIGINT
            await starter
        return len(tasks)

    assert 0 < run_virtual(main) <= 1_000


def test_arrivals_the_generator_never_sent_are_offered_and_cancelled_not_forgotten() -> None:
    """When the drain ends while the dispatcher is still behind, every arrival the schedule
    offered inside the window is accounted for: the offered rate is the schedule's."""
    from loadtest.engine.openloop import OpenLoop

    sent: list[int] = []

    class Pool:
        def attach(self, tg: asyncio.TaskGroup) -> None:
            pass

        def submit(self, rec: RequestRecord, frame: str) -> None:
            sent.append(rec.request_id)

        def cancel_queued(self) -> None:
            pass

        async def drain(self) -> None:
            pass

        async def close(self) -> None:
            pass

    async def main(clock: VirtualClock) -> Collector:
        ctx = _ctx(clock, lambda n: answer(), duration_s=2)
        arrivals = schedule("constant", RateProfile(rate_per_s=1_000, duration_s=2), seed=1)
        loop = OpenLoop(ctx, Pool(), arrivals, lambda a: ("{}", "hi", ()))  # type: ignore[arg-type]
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(loop.run(tg, t0_ns=0))
            await clock.sleep_until(1_234 * MS + 500_000)  # the run ends while 765 arrivals are still due
            task.cancel()
        return ctx.collector

    c = run_virtual(main)
    assert len(sent) == 1_235  # 0 .. 1.234 s at 1,000/s
    assert c.offered == 2_000 and c.cancelled == 2_000 - 1_235
    assert c.offered == len(sent) + c.cancelled  # every arrival: sent, or reported never sent
