"""The mock keeps conversations (issue 20): ids global across connections, an unknown id gets an
``error``, TTFT grows by ``turn_ms`` per earlier turn, an abandoned stream frees its slot at once
and is counted (``loadtest mock`` prints the count).

The store and the model are pure (no loop); the rest runs real sockets on port 0, timed by a
small aiohttp client (``time.perf_counter_ns()`` as each frame arrives, before decoding).
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop
from aiohttp import WSMsgType
from click.testing import CliRunner
from support.aio import uvloop_test

from loadtest.errors import RemoteProtocolError, ScenarioError
from loadtest.mock.conversations import MAX_CONVERSATIONS, Conversations, UnknownConversation
from loadtest.mock.faults import parse_faults
from loadtest.mock.latency import Dist, MockModel
from loadtest.mock.process import model_args
from loadtest.mock.server import MockConfig, MockServer
from loadtest.protocol import (
    AuthComplete,
    ConvMessage,
    ErrorEvent,
    GenRequest,
    Message,
    Pong,
    ServerEvent,
    decode_server_frame,
    encode_gen,
    encode_ping,
)
from loadtest.scenario import load_scenario

MS = 1_000_000  # ns per ms
ROOT = Path(__file__).resolve().parents[2]
#: a single TTFT (not a median) measured over loopback may exceed the model by this much
TTFT_SLACK_MS = 5.0


def mock(**model: Any) -> MockServer:
    return MockServer(MockConfig(model=MockModel(**{k: Dist(a=v) if k in ("ttft_ms", "gap_ms", "chunks") else v
                                                    for k, v in model.items()})))


# --------------------------------------------------------------------------- the store (pure)


def test_a_new_conversation_then_its_turns_keep_the_id_with_fresh_message_ids() -> None:
    store = Conversations()
    first = store.add_turn(None)
    second = store.add_turn(first.conversation_id)
    other = store.add_turn(None)
    assert (first.number, second.number, other.number) == (1, 2, 1)
    assert second.conversation_id == first.conversation_id != other.conversation_id
    assert len({first.message_id, second.message_id, other.message_id}) == 3
    assert store.earlier_turns(first.conversation_id) == 2 and store.earlier_turns(None) == 0


@pytest.mark.parametrize(("requested", "text"), [("nope", "unknown conversationId 'nope'"),
                                                  ("", "unknown conversationId ''"),
                                                  (5, "conversationId must be a string, got 5")])
def test_an_unknown_or_non_string_id_is_refused_and_nothing_is_recorded(requested: object, text: str) -> None:
    store = Conversations()
    with pytest.raises(UnknownConversation) as info:
        store.add_turn(requested)
    assert str(info.value) == text and len(store) == 0


def test_the_store_is_bounded_and_forgets_the_least_recently_continued() -> None:
    store = Conversations(limit=2)
    a, b = store.add_turn(None), store.add_turn(None)
    store.add_turn(a.conversation_id)  # a is now the most recent
    c = store.add_turn(None)
    assert len(store) == 2 and store.forgotten == 1
    assert a.conversation_id in store and c.conversation_id in store and b.conversation_id not in store
    with pytest.raises(UnknownConversation):
        store.earlier_turns(b.conversation_id)
    assert c.conversation_id not in {a.conversation_id, b.conversation_id}  # ids are never reused
    assert Conversations().limit == MAX_CONVERSATIONS == 100_000


def test_plan_adds_turn_ms_per_earlier_turn_on_top_of_prefill() -> None:
    model = MockModel(ttft_ms=Dist(a=50.0), turn_ms=30.0, prefill_ms_per_kchar=20.0)
    assert [model.plan(random.Random(1), 0, k - 1)[0] for k in (1, 2, 4)] == [50.0, 80.0, 140.0]
    assert model.plan(random.Random(1), 2500, 3)[0] == 50.0 + 90.0 + 50.0
    assert MockModel(ttft_ms=Dist(a=50.0)).plan(random.Random(1), 0, 9)[0] == 50.0  # default 0
    base = MockModel(ttft_ms=Dist(a=50.0), gap_ms=Dist(a=10.0), chunks=Dist(a=5.0), turn_ms=30.0)
    assert base.service_ms(1) == 90.0 and base.service_ms(1, earlier_turns=1.5) == 135.0


def test_turn_ms_from_the_scenario_the_command_line_and_model_args(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sc.yaml"
    path.write_text("target: {url: mock}\nmock:\n  turn_ms: 25\n", encoding="utf-8")
    model = load_scenario(path).mock.model
    assert model.turn_ms == 25.0
    assert model_args(model)[-2:] == ["--turn-ms", "25.0"] and "--turn-ms" not in model_args(MockModel())
    path.write_text("target: {url: mock}\nmock:\n  turn_ms: -1\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert ":3: mock.turn_ms" in str(info.value) and "greater than or equal to 0" in str(info.value)

    from loadtest.cli import main as cli
    from loadtest.mock import process

    seen: list[float] = []

    async def fake_serve(config: MockConfig, *a: Any, **k: Any) -> None:
        seen.append(config.model.turn_ms)

    monkeypatch.setattr(process, "serve_forever", fake_serve)
    result = CliRunner().invoke(cli.cli, ["mock", *model_args(model)])
    assert result.exit_code == 0, result.output
    assert seen == [25.0]
    assert CliRunner().invoke(cli.cli, ["mock", "--turn-ms", "-1"]).exit_code == 2


# --------------------------------------------------------------------------- over sockets


@dataclass
class Answer:
    ttft_ms: float = 0.0
    conv: ConvMessage | None = None
    error: str | None = None
    chunks: int = 0
    stopped: bool = False


async def event(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = 5.0) -> tuple[int, ServerEvent | None]:
    msg = await ws.receive(timeout=timeout_s)
    t = time.perf_counter_ns()  # as the frame arrives, before decoding
    if msg.type != WSMsgType.TEXT:
        return t, None
    try:
        return t, decode_server_frame(msg.data)
    except RemoteProtocolError:
        return t, None


async def connect(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(url)
    assert isinstance((await event(ws))[1], AuthComplete)
    return ws


async def send_gen(ws: aiohttp.ClientWebSocketResponse, prompt: str = "hi", conversation_id: object = None) -> int:
    extra = {} if conversation_id is None else {"conversationId": conversation_id}
    t_send = time.perf_counter_ns()
    await ws.send_str(encode_gen(GenRequest(prompt=prompt, extra=extra)))
    return t_send


async def turn(ws: aiohttp.ClientWebSocketResponse, prompt: str = "hi", conversation_id: object = None) -> Answer:
    """One gen, read to its stop or error."""
    t_send = await send_gen(ws, prompt, conversation_id)
    answer = Answer()
    while True:
        t, ev = await event(ws)
        if isinstance(ev, ConvMessage):
            answer.conv = ev
        elif isinstance(ev, ErrorEvent):
            answer.error = ev.error
            return answer
        elif isinstance(ev, Message):
            if ev.output:
                answer.chunks += 1
                if answer.chunks == 1:
                    answer.ttft_ms = (t - t_send) / MS
            if ev.stop:
                answer.stopped = True
                return answer
        else:
            raise AssertionError(f"unexpected frame {ev!r}")


@pytest.mark.realtime
@uvloop_test
async def test_ids_are_global_across_connections_and_an_unknown_id_gets_an_error() -> None:
    server = mock(ttft_ms=1, gap_ms=1, chunks=3)
    url = await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            ws1, ws2 = await connect(http, url), await connect(http, url)
            first = await turn(ws1)
            assert first.conv is not None and first.stopped
            cid = first.conv.conversation_id
            second = await turn(ws2, conversation_id=cid)  # another socket continues it
            third = await turn(ws1, conversation_id=cid)
            convs = [a.conv for a in (first, second, third) if a.stopped and a.chunks == 3 and a.conv is not None]
            assert [c.conversation_id for c in convs] == [cid] * 3  # every turn names the conversation
            assert len({c.message_id for c in convs}) == 3  # and a fresh answer
            assert server.conversations.earlier_turns(cid) == 3

            unknown = await turn(ws2, conversation_id="c-999")
            assert unknown.error == "unknown conversationId 'c-999'" and unknown.conv is None and not unknown.chunks
            typed = await turn(ws2, conversation_id=7)
            assert typed.error == "conversationId must be a string, got 7" and typed.conv is None
            # the connection stays usable: a ping is answered, the next gen streams in full
            await ws2.send_str(encode_ping())
            assert isinstance((await event(ws2))[1], Pong)
            fresh = await turn(ws2)
            assert fresh.stopped and fresh.chunks == 3 and fresh.conv is not None
            assert fresh.conv.conversation_id != cid
            assert server.unknown_conversations == 2 and server.streams_completed == 4
            assert server.streams_abandoned == 0
            await ws1.close()
            await ws2.close()
    finally:
        await server.stop()


@pytest.mark.realtime
@uvloop_test
async def test_ttft_grows_by_turn_ms_per_earlier_turn_across_connections_plus_prefill() -> None:
    ttft, turn_ms, prefill = 20.0, 30.0, 10.0
    server = mock(ttft_ms=ttft, gap_ms=1, chunks=2, turn_ms=turn_ms, prefill_ms_per_kchar=prefill)
    url = await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            sockets = [await connect(http, url), await connect(http, url)]
            first = await turn(sockets[0], "x" * 10)
            assert first.conv is not None
            cid = first.conv.conversation_id
            measured = [first.ttft_ms]
            for k in (2, 3, 4):  # alternating sockets: the context is the conversation's, not the socket's
                a = await turn(sockets[(k - 1) % 2], "x" * 10, cid)
                assert a.stopped, a
                measured.append(a.ttft_ms)
            long = await turn(sockets[1], "x" * 2000, cid)  # turn 5 with a 2,000-char prompt
            measured.append(long.ttft_ms)
            expected = [ttft + 0.1 + (k - 1) * turn_ms for k in (1, 2, 3, 4)] + [ttft + 4 * turn_ms + 2 * prefill]
            print("turn TTFT ms measured", [round(m, 2) for m in measured], "expected", expected)
            for k, (m, e) in enumerate(zip(measured, expected, strict=True), start=1):
                assert e - 0.5 <= m <= e + TTFT_SLACK_MS, (k, m, e)
            for ws in sockets:
                await ws.close()
    finally:
        await server.stop()


@pytest.mark.realtime
@pytest.mark.parametrize("how", ["close", "drop"])
@uvloop_test
async def test_an_abandoned_stream_frees_its_slot_at_once_and_is_counted(how: str) -> None:
    gap_ms, chunks = 20.0, 50  # a stream holds the slot ~1 s
    server = mock(ttft_ms=5, gap_ms=gap_ms, chunks=chunks, capacity=1)
    url = await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            a, b = await connect(http, url), await connect(http, url)
            t_a = await send_gen(a)
            seen = 0
            while seen < 2:  # the user reads two chunks, then stops reading
                _, ev = await event(a)
                seen += isinstance(ev, Message) and bool(ev.output)
            await send_gen(b)  # queued behind a's slot
            with pytest.raises(TimeoutError):
                await event(b, timeout_s=0.05)
            t_close = time.perf_counter_ns()
            if how == "close":
                await a.close()  # a close frame, as a browser tab closing its socket
            else:
                a._response.connection.transport.abort()  # type: ignore[union-attr]  # no close frame
            t_conv, ev = await event(b)
            assert isinstance(ev, ConvMessage)
            t_first, first = await event(b)
            assert isinstance(first, Message) and first.output
            planned_end_ms = (t_a - t_close) / MS + 5 + (chunks - 1) * gap_ms
            start_ms = (t_conv - t_close) / MS
            print(f"{how}: b's conv-message {start_ms:.2f} ms after a's close; first chunk "
                  f"{(t_first - t_close) / MS:.2f} ms; a's planned end was {planned_end_ms:.0f} ms away")
            assert start_ms < 5.0 and planned_end_ms > 800
            assert 5.0 <= (t_first - t_close) / MS < 5.0 + TTFT_SLACK_MS
            assert server.streams_abandoned == 1
            rest = 1
            while True:  # b's stream runs to its stop
                _, ev = await event(b)
                assert isinstance(ev, Message)
                if ev.stop:
                    break
                rest += 1
            assert rest == chunks
            assert (server.streams_started, server.streams_completed, server.streams_abandoned) == (2, 1, 1)
            await b.close()
    finally:
        await server.stop()


@pytest.mark.realtime
@uvloop_test
async def test_streams_the_mock_ends_itself_are_not_abandoned_and_stop_is_prompt() -> None:
    server = MockServer(MockConfig(model=MockModel(ttft_ms=Dist(a=1.0), gap_ms=Dist(a=20.0), chunks=Dist(a=500.0))))
    faulty = MockServer(MockConfig(model=MockModel(ttft_ms=Dist(a=1.0), gap_ms=Dist(a=1.0), chunks=Dist(a=5.0)),
                                   faults=parse_faults({"abrupt_close": 1.0})))
    url, faulty_url = await server.start(), await faulty.start()
    try:
        async with aiohttp.ClientSession() as http:
            ws = await connect(http, faulty_url)
            dropped = await turn_until_close(ws)
            assert dropped and faulty.streams_abandoned == 0 and faulty.streams_completed == 0
            ws = await connect(http, url)
            await send_gen(ws)
            while not isinstance((await event(ws))[1], Message):
                pass
            t0 = time.perf_counter()
            await server.stop()  # a 10 s stream in flight: the mock closes its socket (1001)
            stop_s = time.perf_counter() - t0
            assert stop_s < 1.5, stop_s
            assert server.streams_abandoned == 0 and server.streams_completed == 0
            await ws.close()
    finally:
        await server.stop()
        await faulty.stop()


async def turn_until_close(ws: aiohttp.ClientWebSocketResponse) -> bool:
    await send_gen(ws)
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return True


# --------------------------------------------------------------------------- loadtest mock


@pytest.mark.realtime
def test_loadtest_mock_prints_completed_and_abandoned_when_terminated() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "loadtest", "mock", "--port", "0", "--exit-with-parent",
                             "--ttft-ms", "1", "--gap-ms", "5", "--chunks", "20"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("ws://"), url

        async def drive() -> None:
            async with aiohttp.ClientSession() as http:
                a = await connect(http, url)
                await send_gen(a)
                while not isinstance((await event(a))[1], Message):
                    pass
                await a.close()  # abandoned after one chunk
                b = await connect(http, url)
                assert (await turn(b)).stopped  # and one stream completed
                await b.close()

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(drive())
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert out.strip() == "mock stopped: 1 streams completed, 1 abandoned by their client, 2 started", out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
