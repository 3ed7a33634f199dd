"""The fake WebSocket of loadtest.testing (FakeWebSocket): the protocol's server side as the
peer of the engine's real Connection, on virtual time. No sockets."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from loadtest.engine.connection import Connection
from loadtest.errors import RemoteProtocolError, ServerError
from loadtest.metrics.collector import RequestRecord
from loadtest.protocol import (
    AuthComplete,
    ConvMessage,
    ErrorEvent,
    GenRequest,
    LocalProtocolError,
    Message,
    Ping,
    Pong,
    RefusedFrame,
    ServerEvent,
    ServerState,
    SetModel,
    decode_server_frame,
    encode_gen,
    encode_ping,
)
from loadtest.testing import Answer, FakeWebSocket, Raw, VirtualClock, run_virtual

MS = 1_000_000
GEN = encode_gen(GenRequest(prompt="hi"))


def answer(n: int) -> Answer:
    return [(0, ConvMessage(f"c-{n}", f"m-{n}")), (50 * MS, Message("He", False)), (70 * MS, Message("llo", False)),
            (75 * MS, Message("", True))]


async def _event(ws: FakeWebSocket) -> tuple[int, ServerEvent]:
    msg = await ws.receive()
    assert msg.type is aiohttp.WSMsgType.TEXT
    return ws.clock.now_ns(), decode_server_frame(msg.data)


def test_the_engines_connection_against_the_fake_streams_on_exact_times() -> None:
    async def main(clock: VirtualClock) -> tuple[list[RequestRecord], FakeWebSocket, int, int]:
        fake = FakeWebSocket(clock, answer)
        conn = Connection(fake, 1, None, clock)  # type: ignore[arg-type]
        rtt = await conn.ping(1.0)
        set_ns = await conn.set_model("tiny", 1.0)
        recs = [RequestRecord(request_id=i, user=0) for i in range(2)]
        for rec in recs:
            await clock.sleep_until(clock.now_ns() + 5 * MS)
            await conn.stream(GEN, rec, first_token_s=1.0, stream_s=2.0)
        return recs, fake, rtt, set_ns

    recs, fake, rtt, set_ns = run_virtual(main)
    assert (rtt, set_ns) == (0, 0)  # answered at once, in virtual time exactly
    assert fake.received == [Ping(), SetModel("tiny"), GenRequest(prompt="hi"), GenRequest(prompt="hi")]
    for n, rec in enumerate(recs):
        assert (rec.t_first - rec.t_send, rec.t_stop - rec.t_send) == (50 * MS, 75 * MS)
        assert (rec.chunks, rec.chars, rec.gaps_ns) == (2, 5, [20 * MS])
        assert rec.conversation_id == f"c-{n}"
    assert (fake.gens, fake.server.completed, fake.server.state) == (2, 2, ServerState.IDLE)


def test_a_pong_overtakes_a_chunk_that_is_due_later() -> None:
    async def main(clock: VirtualClock) -> list[tuple[int, ServerEvent]]:
        fake = FakeWebSocket(clock, lambda n: [(0, ConvMessage("c", "m")), (100 * MS, Message("x", True))])
        await fake.send_str(GEN)
        seen = [await _event(fake)]
        reader = asyncio.ensure_future(_event(fake))  # waits for the chunk at 100 ms
        await clock.sleep_until(10 * MS)
        await fake.send_str(encode_ping())
        seen.append(await reader)
        seen.append(await _event(fake))
        return seen

    assert run_virtual(main) == [(0, ConvMessage("c", "m")), (10 * MS, Pong({"status": "ok"})),
                                 (100 * MS, Message("x", True))]


def test_a_second_gen_on_a_stalled_stream_is_refused_at_once() -> None:
    async def main(clock: VirtualClock) -> tuple[tuple[int, ServerEvent], FakeWebSocket]:
        fake = FakeWebSocket(clock, lambda n: [(0, ConvMessage("c", "m"))])  # then silence
        await fake.send_str(GEN)
        await _event(fake)
        await clock.sleep_until(3 * MS)
        await fake.send_str(GEN)
        return await _event(fake), fake

    (t, event), fake = run_virtual(main)
    assert (t, event) == (3 * MS, ErrorEvent("a gen is already in flight on this connection (one stream at a time)"))
    assert isinstance(fake.received[-1], RefusedFrame) and fake.gens == 1


def test_a_script_that_breaks_the_protocol_fails_at_its_gen() -> None:
    async def main(clock: VirtualClock) -> None:
        fake = FakeWebSocket(clock, lambda n: [(0, Message("chunk before conv-message", False))])
        await fake.send_str(GEN)

    with pytest.raises(LocalProtocolError, match="conv-message first"):
        run_virtual(main)


def test_raw_and_malformed_frames_go_out_as_written() -> None:
    late = '{"event": "message", "data": {"output": "late", "stop": false}}'

    def hostile(n: int) -> Answer:
        return [(0, ConvMessage("c", "m")), (1 * MS, ErrorEvent("hiccup")), (2 * MS, Raw(late)),
                (3 * MS, '{"event": "message", "da')]

    async def main(clock: VirtualClock) -> tuple[list[str], RequestRecord, Exception]:
        fake = FakeWebSocket(clock, hostile)
        conn = Connection(fake, 1, None, clock)  # type: ignore[arg-type]
        rec = RequestRecord(request_id=1, user=0)
        with pytest.raises(ServerError) as info:
            await conn.stream(GEN, rec, first_token_s=1.0, stream_s=2.0)
        rest = [(await fake.receive()).data, (await fake.receive()).data]
        return rest, rec, info.value

    rest, rec, error = run_virtual(main)
    assert str(error) == "hiccup" and rec.t_conv == rec.t_send
    assert rest == [late, '{"event": "message", "da']
    with pytest.raises(RemoteProtocolError):
        decode_server_frame(rest[1])


def test_greeting_binary_frames_and_close() -> None:
    async def main(clock: VirtualClock) -> tuple[list[ServerEvent], aiohttp.WSMsgType, FakeWebSocket]:
        fake = FakeWebSocket(clock, answer, greet=True)
        greeting = (await _event(fake))[1]
        await fake.send_bytes(b'{"event": "ping"}')
        refusal = (await _event(fake))[1]
        assert await fake.close(code=4002) and not await fake.close()
        with pytest.raises(ConnectionResetError):
            await fake.send_str(encode_ping())
        return [greeting, refusal], (await fake.receive()).type, fake

    events, after_close, fake = run_virtual(main)
    assert events == [AuthComplete({"status": "ok"}), ErrorEvent("binary frames are not supported")]
    assert after_close is aiohttp.WSMsgType.CLOSED
    assert (fake.close_code, fake.server.state) == (4002, ServerState.CLOSED)
