"""The mock proxy over real sockets (port 0), driven by a small aiohttp client.

Timestamps are ``time.perf_counter_ns()`` taken as each frame arrives, before decoding
(DESIGN.md, measurement rules). Every wait is bounded by a deadline; nothing sleeps for
a fixed time.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from support.aio import uvloop_test
from support.tolerances import GAP_SLACK_MS, MEDIAN_SLACK_MS, MODEL_REL

from loadtest.errors import RemoteProtocolError, TargetUnreachable
from loadtest.mock.latency import Dist, MockModel
from loadtest.mock.process import MockProcess
from loadtest.mock.server import CLOSE_BAD_KEY
from loadtest.protocol import (
    AuthComplete,
    ConvMessage,
    ErrorEvent,
    GenRequest,
    Message,
    Pong,
    ServerEvent,
    SetModelComplete,
    UnknownEvent,
    decode_server_frame,
    encode_gen,
    encode_ping,
    encode_set_model,
)
from loadtest.testing import running_mock

#: real sockets, processes or wall-clock time: the full tier only (scripts/test.sh)
pytestmark = pytest.mark.realtime


MS = 1_000_000  # ns per ms


# --------------------------------------------------------------------------- a tiny client


@dataclass
class Frame:
    t_ns: int
    type: WSMsgType
    raw: Any
    event: ServerEvent | None = None
    bad: RemoteProtocolError | None = None

    @property
    def is_close(self) -> bool:
        return self.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


async def recv(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = 5.0) -> Frame:
    msg = await ws.receive(timeout=timeout_s)
    t = time.perf_counter_ns()  # as the frame arrives, before any decoding
    frame = Frame(t, msg.type, msg.data)
    if msg.type == WSMsgType.TEXT:
        try:
            frame.event = decode_server_frame(msg.data)
        except RemoteProtocolError as exc:
            frame.bad = exc
    return frame


async def expect(ws: aiohttp.ClientWebSocketResponse, kind: type, timeout_s: float = 5.0) -> Any:
    frame = await recv(ws, timeout_s)
    assert isinstance(frame.event, kind), frame
    return frame.event


@dataclass
class Stream:
    t_send: int
    conv: ConvMessage | None = None
    t_conv: int = 0
    chunks: list[tuple[int, str]] = field(default_factory=list)
    empty_chunks: int = 0
    stopped: bool = False
    t_stop: int = 0
    error: ErrorEvent | None = None
    others: list[Frame] = field(default_factory=list)  # unknown, malformed, close
    #: index in ``chunks`` at which each of ``others`` arrived
    others_at: list[int] = field(default_factory=list)
    timed_out: bool = False

    @property
    def ttft_ms(self) -> float:
        return (self.chunks[0][0] - self.t_send) / MS

    @property
    def gaps_ms(self) -> list[float]:
        return [(b[0] - a[0]) / MS for a, b in zip(self.chunks, self.chunks[1:], strict=False)]

    @property
    def text(self) -> str:
        return "".join(c for _, c in self.chunks)


async def stream(ws: aiohttp.ClientWebSocketResponse, prompt: str = "hi", timeout_s: float = 5.0) -> Stream:
    """Send one gen; read until stop, an error event, a close, or ``timeout_s``."""
    s = Stream(t_send=time.perf_counter_ns())
    await ws.send_str(encode_gen(GenRequest(prompt=prompt)))
    deadline = time.perf_counter() + timeout_s
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            s.timed_out = True
            return s
        try:
            f = await recv(ws, remaining)
        except TimeoutError:
            s.timed_out = True
            return s
        ev = f.event
        if isinstance(ev, ConvMessage):
            s.conv, s.t_conv = ev, f.t_ns
        elif isinstance(ev, Message):
            if ev.output:
                s.chunks.append((f.t_ns, ev.output))
            elif not ev.stop:
                s.empty_chunks += 1
            if ev.stop:
                s.stopped, s.t_stop = True, f.t_ns
                return s
        elif isinstance(ev, ErrorEvent):
            s.error = ev
            return s
        else:
            s.others.append(f)
            s.others_at.append(len(s.chunks))
            if f.is_close:
                return s


# --------------------------------------------------------------------------- protocol


@uvloop_test
async def test_auth_complete_on_connect_and_any_key_without_configured_keys() -> None:
    async with running_mock() as server, aiohttp.ClientSession() as http:
        for suffix in ("", "?apikey=whatever", "?apikey="):
            async with http.ws_connect(server.url + suffix) as ws:
                assert await expect(ws, AuthComplete) == AuthComplete({"status": "ok"})
        assert server.connections == 3


@uvloop_test
async def test_configured_keys_reject_a_bad_key_with_4401_and_accept_a_good_one() -> None:
    async with running_mock(api_keys=["k-good", "k-other"]) as server, aiohttp.ClientSession() as http:
        for suffix in ("?apikey=k-bad", ""):
            async with http.ws_connect(server.url + suffix) as ws:
                err = await expect(ws, ErrorEvent)
                assert "invalid api key" in err.error
                close = await recv(ws)
                assert close.type == WSMsgType.CLOSE
                assert ws.close_code == CLOSE_BAD_KEY == 4401
        for key in ("k-good", "k-other"):
            async with http.ws_connect(f"{server.url}?apikey={key}") as ws:
                await expect(ws, AuthComplete)
                await ws.send_str(encode_ping())
                await expect(ws, Pong)


@uvloop_test
async def test_ping_pong_and_set_model() -> None:
    async with running_mock() as server, aiohttp.ClientSession() as http, http.ws_connect(server.url) as ws:
        await expect(ws, AuthComplete)
        await ws.send_str(encode_ping())
        assert await expect(ws, Pong) == Pong({"status": "ok"})
        await ws.send_str(encode_set_model("tiny-llm"))
        assert await expect(ws, SetModelComplete) == SetModelComplete({"model": "tiny-llm"})
        await ws.send_str(encode_set_model("other"))
        assert (await expect(ws, SetModelComplete)).data["model"] == "other"


@uvloop_test
async def test_gen_streams_conv_message_then_chunks_then_stop_with_fresh_ids() -> None:
    async with (
        running_mock(ttft_ms=5, gap_ms=1, chunks=7) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.url) as ws1,
        http.ws_connect(server.url) as ws2,
    ):
        await expect(ws1, AuthComplete)
        await expect(ws2, AuthComplete)
        streams = [await stream(ws1), await stream(ws1), await stream(ws2)]
        for s in streams:
            assert s.conv is not None and s.stopped and not s.others and s.error is None
            assert len(s.chunks) == 7 and s.empty_chunks == 0
            assert s.t_send < s.t_conv < s.chunks[0][0] <= s.chunks[-1][0] <= s.t_stop
        assert len({s.conv.conversation_id for s in streams if s.conv}) == 3
        assert len({s.conv.message_id for s in streams if s.conv}) == 3
        assert streams[0].text == streams[1].text and streams[0].text.startswith("Artificial intelligence")
        assert server.streams_started == server.streams_completed == 3
        # the stream is over: the next frame is the answer to a ping, not a stray chunk
        await ws1.send_str(encode_ping())
        await expect(ws1, Pong)


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        '{"data": {}}',
        '{"event": "gen", "data": {}}',
        '{"event": "gen", "data": {"prompt": "p", "temperature": "hot"}}',
        '{"event": "set-model", "data": {"model": 5}}',
        '{"event": "fly"}',
        b'{"event": "ping"}',
    ],
)
@uvloop_test
async def test_malformed_client_frame_gets_an_error_and_the_connection_stays_usable(
    frame: str | bytes,
) -> None:
    async with (
        running_mock(ttft_ms=2, gap_ms=1, chunks=3) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.url) as ws,
    ):
        await expect(ws, AuthComplete)
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)
        err = await expect(ws, ErrorEvent)
        assert err.error
        assert server.bad_frames == 1
        await ws.send_str(encode_ping())
        await expect(ws, Pong)
        s = await stream(ws)
        assert s.stopped and len(s.chunks) == 3


# --------------------------------------------------------------------------- timing


@uvloop_test
async def test_mock_timing_ttft_and_gap() -> None:
    """ttft 100 ms, gap 10 ms, 20 chunks; 10 connections x 2 streams each.

    p50 TTFT must be 100-103 ms and p50 gap 10-11.5 ms: the mock sleeps to deadlines,
    so only wake-up latency (<~1 ms on uvloop) and loopback cost add up. A chunk sent
    late pushes the next deadline back (no catch-up), so server-side gaps are never
    shorter than 10 ms.
    """
    async with running_mock(ttft_ms=100, gap_ms=10, chunks=20) as server, aiohttp.ClientSession() as http:

        async def user() -> list[Stream]:
            async with http.ws_connect(server.url) as ws:
                await expect(ws, AuthComplete)
                return [await stream(ws), await stream(ws)]

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(user()) for _ in range(10)]
    streams = [s for t in tasks for s in t.result()]
    assert len(streams) == 20
    for s in streams:
        assert s.stopped and not s.others and s.error is None
        assert len(s.chunks) == 20 and all(text for _, text in s.chunks)
    ttft_p50 = statistics.median(s.ttft_ms for s in streams)
    gaps = [g for s in streams for g in s.gaps_ms]
    assert len(gaps) == 20 * 19
    gap_p50 = statistics.median(gaps)
    print(f"mock timing: ttft p50 {ttft_p50:.2f} ms, gap p50 {gap_p50:.3f} ms")
    assert 100.0 <= ttft_p50 <= 100.0 + MEDIAN_SLACK_MS
    assert 10.0 <= gap_p50 <= 10.0 + GAP_SLACK_MS
    # no catch-up bursts: 19 gaps never add up to less than 190 ms, and each stays
    # within the 11.5 ms budget on average
    for s in streams:
        assert 190.0 - 0.5 <= (s.chunks[-1][0] - s.chunks[0][0]) / MS <= 19 * 11.5


async def _closed_loop(url: str, users: int, run_s: float) -> list[list[Stream]]:
    """``users`` clients, each repeating gen as soon as the previous stream stopped."""
    end = time.perf_counter() + run_s
    async with aiohttp.ClientSession() as http:

        async def user() -> list[Stream]:
            out = []
            async with http.ws_connect(url) as ws:
                await expect(ws, AuthComplete)
                while time.perf_counter() < end:
                    out.append(await stream(ws))
            return out

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(user()) for _ in range(users)]
    return [t.result() for t in tasks]


CAP_MODEL = MockModel(ttft_ms=Dist(a=50.0), gap_ms=Dist(a=5.0), chunks=Dist(a=10.0), capacity=4)


@uvloop_test
async def test_mock_capacity_queues_streams_as_the_model_predicts() -> None:
    """K=4 slots, 16 closed-loop users, ttft 50 ms, gap 5 ms, 10 chunks, ~4 s.

    Steady-state mean TTFT (first 2 cycles per user dropped) must match
    ``MockModel.expected_ttft_ms(16)`` = 3 * 95.675 + 50 = 337 ms within +-15%. Why 15%:
    the prediction is Little's law on means; the measurement adds timer wake-up lateness
    (up to ~1 ms per sleep, lengthening the service time), the client's own stop->gen
    turnaround (which shortens the queue), the brief dips below K active streams while a
    slot changes hands (which change the gap slowdown), and a window of only ~8 cycles per
    user. Together these stay well under 5% here; 15% leaves room for a loaded CI box
    while still failing any real queueing bug (no queue: 50 ms; one service time off: +-28%).
    """
    async with running_mock(ttft_ms=50, gap_ms=5, chunks=10, capacity=4) as server:
        per_user = await _closed_loop(server.url, 16, 4.0)
    steady = [s for streams in per_user for s in streams[2:]]
    for streams in per_user:
        assert len(streams) >= 6
        assert all(s.stopped and len(s.chunks) == 10 for s in streams)
    mean_ttft = statistics.fmean(s.ttft_ms for s in steady)
    expected = CAP_MODEL.expected_ttft_ms(16)
    assert expected == pytest.approx(337.025)
    print(f"capacity: mean ttft {mean_ttft:.1f} ms over {len(steady)} streams, model {expected:.1f} ms")
    assert mean_ttft == pytest.approx(expected, rel=MODEL_REL)
    assert mean_ttft >= 3 * CAP_MODEL.ttft_ms.mean


@uvloop_test
async def test_mock_capacity_does_not_queue_up_to_k_users() -> None:
    async with running_mock(ttft_ms=50, gap_ms=5, chunks=10, capacity=4) as server:
        per_user = await _closed_loop(server.url, 4, 1.2)
    steady = [s for streams in per_user for s in streams[2:]]
    assert len(steady) >= 4 * 5
    ttfts = [s.ttft_ms for s in steady]
    mean_ttft, p50_ttft = statistics.fmean(ttfts), statistics.median(ttfts)
    print(f"capacity, K users: ttft mean {mean_ttft:.2f} ms, p50 {p50_ttft:.2f} ms, max {max(ttfts):.1f} ms")
    assert CAP_MODEL.expected_ttft_ms(4) == 50.0
    # no queue: the typical stream starts on time; the mean (outlier-sensitive on a busy
    # box) stays far below what even one user too many would cause (73.9 ms with 5 users)
    assert 50.0 <= p50_ttft <= 50.0 + MEDIAN_SLACK_MS
    assert mean_ttft < 60.0 < CAP_MODEL.expected_ttft_ms(5)


# --------------------------------------------------------------------------- faults

FAST = {"ttft_ms": 5, "gap_ms": 2, "chunks": 20}


@uvloop_test
async def test_fault_abrupt_close_drops_the_connection_without_a_close_frame() -> None:
    async with (
        running_mock(**FAST, faults={"abrupt_close": 1}) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.url) as ws,
    ):
        await expect(ws, AuthComplete)
        s = await stream(ws)
        assert not s.stopped and s.error is None and not s.timed_out
        assert len(s.chunks) == 10
        assert [f.type for f in s.others] == [WSMsgType.CLOSED]
        assert ws.close_code == 1006  # WSCloseCode.ABNORMAL_CLOSURE: no close frame was received


@uvloop_test
async def test_fault_close_code_closes_with_that_code() -> None:
    async with (
        running_mock(**FAST, faults={"close_code": {"rate": 1, "code": 4002}}) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.url) as ws,
    ):
        await expect(ws, AuthComplete)
        s = await stream(ws)
        assert not s.stopped and len(s.chunks) == 10
        assert [f.type for f in s.others] == [WSMsgType.CLOSE]
        assert s.others[0].raw == 4002
        assert ws.close_code == 4002


@uvloop_test
async def test_fault_malformed_frame_mid_stream() -> None:
    async with (
        running_mock(**FAST, faults={"malformed_frame": 1}) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.url) as ws,
    ):
        await expect(ws, AuthComplete)
        s = await stream(ws)
        assert len(s.others) == 1 and s.others[0].bad is not None
        assert s.others[0].type == WSMsgType.TEXT
        assert s.others[0].bad.frame == s.others[0].raw
        assert s.others_at == [10]  # mid-stream, after half of the chunks
        # the mock keeps streaming after the bad frame
        assert s.stopped and len(s.chunks) == 20


@uvloop_test
async def test_fault_error_mid_stream() -> None:
    async with (
        running_mock(**FAST, faults={"error_mid_stream": 1}) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.url) as ws,
    ):
        await expect(ws, AuthComplete)
        s = await stream(ws)
        assert s.conv is not None and len(s.chunks) == 10
        assert s.error is not None and "aborted" in s.error.error
        # nothing more of that stream follows: the next frame answers the ping
        await ws.send_str(encode_ping())
        await expect(ws, Pong)
        assert server.streams_completed == 0


@uvloop_test
async def test_fault_error_instead_of_the_stream() -> None:
    async with (
        running_mock(**FAST, faults={"error_instead": 1}) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.url) as ws,
    ):
        await expect(ws, AuthComplete)
        s = await stream(ws)
        assert s.error is not None and "failed" in s.error.error
        assert s.conv is None and s.chunks == []
        await ws.send_str(encode_ping())
        await expect(ws, Pong)


@uvloop_test
async def test_fault_no_stop() -> None:
    async with (
        running_mock(ttft_ms=5, gap_ms=5, chunks=10, faults={"no_stop": 1}) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.url) as ws,
    ):
        await expect(ws, AuthComplete)
        # every chunk arrives, but no stop within gap * chunks + 1 s
        s = await stream(ws, timeout_s=5 * 10 / 1000 + 1.0)
        assert s.timed_out and not s.stopped
        assert len(s.chunks) == 10 and s.error is None and not s.others


@uvloop_test
async def test_fault_unknown_event_inside_a_stream_that_completes() -> None:
    async with (
        running_mock(**FAST, faults={"unknown_event": 1}) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.url) as ws,
    ):
        await expect(ws, AuthComplete)
        s = await stream(ws)
        assert [type(f.event) for f in s.others] == [UnknownEvent]
        ev = s.others[0].event
        assert isinstance(ev, UnknownEvent) and ev.name == "tool-call"
        assert s.others_at == [10]
        assert s.stopped and len(s.chunks) == 20


@uvloop_test
async def test_fault_stall_delays_chunks_due_in_the_window() -> None:
    # the window opens 0.3 s after the server starts; the stream spans 0.01 .. ~0.9 s
    async with (
        running_mock(ttft_ms=10, gap_ms=20, chunks=30, faults={"stall": {"at_s": 0.3, "ms": 300}}) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.url) as ws,
    ):
        await expect(ws, AuthComplete)
        s = await stream(ws)
    assert s.stopped and len(s.chunks) == 30
    gaps = s.gaps_ms
    big = max(gaps)
    print(f"stall: largest gap {big:.1f} ms")
    assert big >= 300.0
    assert big <= 300.0 + 20.0 + 15.0
    assert sorted(gaps)[-2] < 40.0  # only the gap spanning the window is long


@pytest.mark.parametrize("status", [503, 401])
@uvloop_test
async def test_fault_refuse_upgrade(status: int) -> None:
    async with (
        running_mock(faults={"refuse_upgrade": {"rate": 1, "status": status}}) as server,
        aiohttp.ClientSession() as http,
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(server.url)
        assert info.value.status == status
        assert server.connections == 1


@uvloop_test
async def test_fault_slow_handshake() -> None:
    async with (
        running_mock(faults={"slow_handshake": {"rate": 1, "ms": 300}}) as server,
        aiohttp.ClientSession() as http,
    ):
        t0 = time.perf_counter_ns()
        async with http.ws_connect(server.url) as ws:
            connect_ms = (time.perf_counter_ns() - t0) / MS
            await expect(ws, AuthComplete)
    assert 300.0 <= connect_ms < 1000.0


async def _fault_sequence(seed: int, n: int) -> list[str]:
    async with (
        running_mock(ttft_ms=1, gap_ms=1, chunks=2, seed=seed, faults={"error_instead": 0.5}) as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.url) as ws,
    ):
        await expect(ws, AuthComplete)
        out = []
        for _ in range(n):
            s = await stream(ws)
            assert s.stopped or s.error is not None
            out.append("error" if s.error else "ok")
        return out


@uvloop_test
async def test_fault_draws_are_seeded_and_deterministic() -> None:
    a = await _fault_sequence(7, 24)
    b = await _fault_sequence(7, 24)
    c = await _fault_sequence(8, 24)
    assert a == b
    assert set(a) == {"error", "ok"}
    assert a != c


def test_mock_process_that_cannot_start_reports_why() -> None:
    with pytest.raises(TargetUnreachable) as info, MockProcess(["--chunks", "-1"]):
        pass
    assert "chunks" in str(info.value)
    assert info.value.exit_code == 3
