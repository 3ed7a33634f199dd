"""The server side of the protocol (loadtest.protocol.server) joined to the client side with a
fake link (h11's test idea): what the server sends is what the client stream reads, what the
client encodes is what the server receives. No loop, no sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtest.errors import EXIT_BUG, RemoteProtocolError
from loadtest.protocol import (
    CHUNK,
    DONE,
    FAILED,
    FIRST_TOKEN,
    AuthComplete,
    ClientStream,
    ConvMessage,
    ErrorEvent,
    GenRequest,
    LocalProtocolError,
    Message,
    Ping,
    Pong,
    RefusedFrame,
    ServerConnection,
    ServerEvent,
    ServerState,
    SetModel,
    SetModelComplete,
    UnknownEvent,
    decode_server_frame,
    encode_gen,
    encode_ping,
    encode_server,
    encode_set_model,
)
from loadtest.protocol.codec import KNOWN_SERVER_EVENTS
from loadtest.protocol.stream import LATE, NOTHING


class Link:
    """One client and one server joined in memory: frames go across in order, each stamped
    with a tick of a fake clock (1 per frame) as the client reads it."""

    def __init__(self, *, authenticate: bool = True) -> None:
        self.server = ServerConnection()
        self.wire: list[str] = []  # server -> client, not read yet
        self.t = 0
        if authenticate:
            self.send(AuthComplete({"status": "ok"}))
            assert self.read() == [AuthComplete({"status": "ok"})]

    def send(self, *events: ServerEvent) -> None:
        for event in events:
            self.wire.append(self.server.send(event))

    def write(self, frame: str) -> Any:
        """The client writes ``frame``; the server's reading of it."""
        return self.server.receive(frame)

    def read(self) -> list[ServerEvent]:
        frames, self.wire = self.wire, []
        return [decode_server_frame(f) for f in frames]

    def stream(self, answer: ClientStream) -> list[int]:
        """Feed what is on the wire to a client stream; the codes it returned."""
        codes = []
        frames, self.wire = self.wire, []
        for frame in frames:
            self.t += 1
            codes.append(answer.feed(frame, self.t))
        return codes


def _snapshot(server: ServerConnection) -> tuple[Any, ...]:
    return tuple(getattr(server, name) for name in ServerConnection.__slots__)


def _refused(server: ServerConnection, event: ServerEvent, needle: str) -> None:
    """``send(event)`` is refused as our mistake, and changes nothing."""
    before = _snapshot(server)
    with pytest.raises(LocalProtocolError) as info:
        server.send(event)
    assert needle in str(info.value)
    assert not isinstance(info.value, RemoteProtocolError) and info.value.exit_code == EXIT_BUG
    assert _snapshot(server) == before


VENDOR_GEN = GenRequest(prompt="Explain AI", temperature=0.2, enable_web_search=True,
                        web_search={"enabled": True, "mode": "force", "maxResults": 5},
                        tools=[{"type": "function", "function": {"name": "get_weather"}}],
                        extra={"conversationId": "c-7"})


# --------------------------------------------------------------------------- whole exchanges


def test_gen_conv_message_chunks_stop_across_the_link() -> None:
    link = Link()
    assert link.write(encode_gen(VENDOR_GEN)) == VENDOR_GEN  # every field, the extra one too
    assert link.server.state is ServerState.ACCEPTED and link.server.gen == VENDOR_GEN
    answer = ClientStream()
    link.send(ConvMessage("c-1", "m-1"), Message("He", False), Message("", False), Message("llo", False),
              Message("!", True))
    assert link.stream(answer) == [NOTHING, FIRST_TOKEN, NOTHING, CHUNK, DONE]
    assert (answer.conversation_id, answer.message_id) == ("c-1", "m-1")
    assert (answer.chunks, answer.chars, answer.chunk_chars, answer.gaps_ns) == (3, 6, [2, 3, 1], [2, 1])
    s = link.server
    assert (s.state, s.gen, s.streams, s.completed, s.failed) == (ServerState.IDLE, None, 1, 1, 0)
    assert (s.chunks_sent, s.chars_sent, s.conversation_id) == (answer.chunks, answer.chars, "c-1")
    # the connection is ready for the next gen, which starts from zero
    assert link.write(encode_gen(GenRequest(prompt="again"))) == GenRequest(prompt="again")
    assert (s.state, s.streams, s.chunks_sent, s.conversation_id) == (ServerState.ACCEPTED, 2, 0, "")


def test_error_mid_stream_fails_the_client_and_ends_the_servers_stream() -> None:
    link = Link()
    link.write(encode_gen(GenRequest(prompt="p")))
    answer = ClientStream()
    link.send(ConvMessage("c", "m"), Message("a", False), Message("b", False), ErrorEvent("upstream died"))
    assert link.stream(answer) == [NOTHING, FIRST_TOKEN, CHUNK, FAILED]
    assert answer.error == "upstream died" and answer.chunks == 2
    assert (link.server.state, link.server.failed, link.server.completed) == (ServerState.IDLE, 1, 0)
    _refused(link.server, Message("c", False), "no stream is in flight")
    _refused(link.server, ErrorEvent("again"), "no stream to fail")


def test_error_instead_of_the_stream() -> None:
    link = Link()
    link.write(encode_gen(GenRequest(prompt="p")))
    answer = ClientStream()
    link.send(ErrorEvent("quota exceeded"))
    assert link.stream(answer) == [FAILED]
    assert answer.t_conv == 0 and answer.conversation_id == "" and answer.error == "quota exceeded"
    assert link.server.state is ServerState.IDLE and link.server.failed == 1


def test_ping_pong_owes_one_answer_per_ping_even_inside_a_stream() -> None:
    link = Link()
    _refused(link.server, Pong(None), "no ping to answer")
    assert link.write(encode_ping()) == Ping() and link.write(encode_ping()) == Ping()
    link.write(encode_gen(GenRequest(prompt="p")))
    answer = ClientStream()
    link.send(ConvMessage("c", "m"), Pong({"n": 1}), Message("x", False), Pong({"n": 2}), Message("", True))
    # pongs inside a stream are harmless to the client, and the stream still completes
    assert link.stream(answer) == [NOTHING, NOTHING, FIRST_TOKEN, NOTHING, DONE]
    _refused(link.server, Pong({"n": 3}), "no ping to answer")


def test_set_model_is_answered_once_and_remembered() -> None:
    link = Link()
    assert link.write(encode_set_model("tiny-llm")) == SetModel("tiny-llm")
    assert link.server.model == "tiny-llm"
    link.send(SetModelComplete({"model": "tiny-llm"}))
    assert link.read() == [SetModelComplete({"model": "tiny-llm"})]
    _refused(link.server, SetModelComplete({"model": "tiny-llm"}), "no set-model to answer")


def test_a_refused_key_closes_the_connection() -> None:
    link = Link(authenticate=False)
    with pytest.raises(LocalProtocolError, match="before the key was judged"):
        link.write(encode_ping())
    _refused(link.server, Message("x", False), "judge the key first")
    link.send(ErrorEvent("invalid api key"))
    assert link.read() == [ErrorEvent("invalid api key")] and link.server.state is ServerState.CLOSED
    _refused(link.server, AuthComplete(None), "closed")
    with pytest.raises(LocalProtocolError, match="after close"):
        link.write(encode_ping())


# --------------------------------------------------------------------------- misuse


def test_a_second_gen_while_one_is_in_flight_is_refused_and_the_first_goes_on() -> None:
    link = Link()
    link.write(encode_gen(GenRequest(prompt="first")))
    for phase in ("accepted", "streaming"):
        refused = link.write(encode_gen(GenRequest(prompt="second")))
        assert refused == RefusedFrame("a gen is already in flight on this connection (one stream at a time)")
        assert link.server.gen == GenRequest(prompt="first") and link.server.streams == 1
        assert decode_server_frame(link.server.refuse(refused)) == ErrorEvent(refused.reason)
        if phase == "accepted":
            assert link.server.state is ServerState.ACCEPTED
            link.send(ConvMessage("c", "m"))
    assert link.server.state is ServerState.STREAMING  # the refusals did not touch the stream
    link.send(Message("done", True))
    assert isinstance(link.write(encode_gen(GenRequest(prompt="second"))), GenRequest)


def test_a_chunk_after_stop_is_our_mistake() -> None:
    link = Link()
    link.write(encode_gen(GenRequest(prompt="p")))
    link.send(ConvMessage("c", "m"), Message("a", True))
    _refused(link.server, Message("late", False), "a chunk after stop")
    _refused(link.server, Message("", True), "a chunk after stop")
    assert link.server.completed == 1 and len(link.wire) == 2  # nothing went on the wire


@pytest.mark.parametrize(
    ("setup", "event", "needle"),
    [
        ([], ConvMessage("c", "m"), "no gen to answer"),
        (["gen"], Message("x", False), "conv-message first"),
        (["gen", "conv"], ConvMessage("c", "m"), "already has its conv-message"),
        ([], AuthComplete(None), "already authenticated"),
        ([], UnknownEvent("message", {"output": "x"}), "known event's name"),
    ],
)
def test_steps_out_of_order_are_local_protocol_errors(setup: list[str], event: ServerEvent, needle: str) -> None:
    link = Link()
    if "gen" in setup:
        link.write(encode_gen(GenRequest(prompt="p")))
    if "conv" in setup:
        link.send(ConvMessage("c", "m"))
    _refused(link.server, event, needle)


def test_refuse_and_faults_need_something_to_act_on() -> None:
    server = Link().server
    with pytest.raises(LocalProtocolError, match="no refused frame"):
        server.refuse(RefusedFrame("made up"))
    for fault in (server.malformed_frame, server.abandon, lambda: server.error_and_continue("x")):
        with pytest.raises(LocalProtocolError, match="idle"):
            fault()
    assert server.state is ServerState.IDLE and server.abandoned == 0


# --------------------------------------------------------------------------- what the client gets wrong


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        ("not json", "frame is not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"data": {}}', "no string 'event'"),
        ('{"event": "gen", "data": {}}', "prompt"),
        ('{"event": "gen", "data": {"prompt": "p", "temperature": "hot"}}', "temperature must be a number"),
        ('{"event": "set-model", "data": {"model": 5}}', "model=5"),
    ],
)
def test_a_malformed_client_frame_is_refused_and_answered_mid_stream(frame: str, needle: str) -> None:
    link = Link()
    link.write(encode_gen(GenRequest(prompt="p")))
    link.send(ConvMessage("c", "m"))
    refused = link.write(frame)
    assert isinstance(refused, RefusedFrame) and needle in refused.reason and frame in refused.reason
    assert decode_server_frame(link.server.refuse(refused)) == ErrorEvent(refused.reason)
    assert link.server.state is ServerState.STREAMING and link.server.refused == 1
    link.send(Message("on", True))  # the stream goes on to its end


def test_unknown_client_events_and_binary_frames() -> None:
    link = Link()
    assert link.write('{"event": "fly", "data": {"to": "moon"}}') == UnknownEvent("fly", {"to": "moon"})
    assert decode_server_frame(link.server.refuse(UnknownEvent("fly"))) == ErrorEvent("unknown client event 'fly'")
    binary = link.server.receive_binary(b'{"event": "ping"}')
    assert binary == RefusedFrame("binary frames are not supported")
    link.server.refuse(binary)
    assert link.server.refused == 2 and link.server.state is ServerState.IDLE


# --------------------------------------------------------------------------- deliberate faults


def test_fault_error_and_continue_leaves_the_rest_of_the_answer_late_for_the_client() -> None:
    link = Link()
    link.write(encode_gen(GenRequest(prompt="p")))
    answer = ClientStream()
    link.send(ConvMessage("c", "m"), Message("a", False))
    link.wire.append(link.server.error_and_continue("hiccup"))
    link.send(Message("b", False), Message("", True))
    assert link.stream(answer) == [NOTHING, FIRST_TOKEN, FAILED, LATE, LATE]
    assert answer.late_frames == 2 and link.server.completed == 1 and link.server.failed == 0


def test_fault_malformed_frame_is_a_remote_error_for_the_client_only() -> None:
    link = Link()
    link.write(encode_gen(GenRequest(prompt="p")))
    link.send(ConvMessage("c", "m"))
    frame = link.server.malformed_frame()
    assert frame == '{"event": "message", "data": {"output": "trunc'
    with pytest.raises(RemoteProtocolError):
        ClientStream().feed(frame, 1)
    assert link.server.state is ServerState.STREAMING
    link.send(Message("x", True))


def test_fault_abandon_and_close_end_the_stream_without_stop() -> None:
    link = Link()
    link.write(encode_gen(GenRequest(prompt="p")))
    link.send(ConvMessage("c", "m"), Message("x", False))
    link.server.abandon()
    assert (link.server.state, link.server.abandoned) == (ServerState.IDLE, 1)
    link.write(encode_gen(GenRequest(prompt="next")))  # accepted: the server moved on
    link.server.close()
    assert (link.server.state, link.server.abandoned, link.server.gen) == (ServerState.CLOSED, 2, None)


# --------------------------------------------------------------------------- properties

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3),
    max_leaves=8,
)
_server_events = st.one_of(
    st.builds(AuthComplete, _json),
    st.builds(SetModelComplete, _json),
    st.builds(Pong, _json),
    st.builds(ConvMessage, st.text(), st.text()),
    st.builds(Message, st.text(), st.booleans()),
    st.builds(ErrorEvent, st.text()),
    st.builds(UnknownEvent, st.text().filter(lambda n: n not in KNOWN_SERVER_EVENTS), _json),
)


@settings(max_examples=300, deadline=None)
@given(_server_events)
def test_every_server_event_reads_back_as_itself(event: ServerEvent) -> None:
    assert decode_server_frame(encode_server(event)) == event


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=20), max_size=30), st.text(max_size=5))
def test_any_chunks_reach_the_client_as_the_same_text(outputs: list[str], last: str) -> None:
    link = Link()
    link.write(encode_gen(GenRequest(prompt="p")))
    link.send(ConvMessage("c", "m"), *(Message(o, False) for o in outputs), Message(last, True))
    frames = list(link.wire)
    answer = ClientStream()
    codes = link.stream(answer)
    texts = [e.output for e in map(decode_server_frame, frames) if isinstance(e, Message)]
    assert "".join(texts) == "".join(outputs) + last
    sent = [o for o in [*outputs, last] if o]
    assert answer.chunk_chars == [len(o) for o in sent] and answer.chunks == len(sent)
    assert (link.server.chunks_sent, link.server.chars_sent) == (answer.chunks, answer.chars)
    # the first token is reported as such unless it came on the stop message itself
    assert codes[-1] == DONE and codes.count(FIRST_TOKEN) == (1 if any(outputs) else 0)
    assert (answer.t_first > 0) == bool(sent)
    assert len(answer.gaps_ns) == max(0, len(sent) - 1)


_client_frames = st.sampled_from([
    encode_ping(), encode_set_model("m"), encode_gen(GenRequest(prompt="p")), '{"event": "fly"}', "junk",
])
_server_steps = st.sampled_from([
    ConvMessage("c", "m"), Message("x", False), Message("", True), ErrorEvent("e"), Pong(None),
    SetModelComplete(None), UnknownEvent("tool-call"),
])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_client_frames, _server_steps), max_size=40))
def test_any_interleaving_keeps_one_stream_at_a_time(steps: list[str | ServerEvent]) -> None:
    """Whatever the client writes and the server tries, in any order: a refused send changes
    nothing, every accepted gen ends exactly once, and a gen is in flight iff one was accepted
    and has not ended."""
    link = Link()
    s = link.server
    gens = 0
    for step in steps:
        if isinstance(step, str):
            event = link.write(step)  # never raises for anything the client sends
            gens += isinstance(event, GenRequest)
            if isinstance(event, RefusedFrame | UnknownEvent):
                link.server.refuse(event)
            continue
        before = _snapshot(s)
        try:
            link.send(step)
        except LocalProtocolError:
            assert _snapshot(s) == before
        assert s.streams == gens
        assert gens - (s.completed + s.failed + s.abandoned) == (1 if s.in_flight else 0)
    for frame in link.wire:
        json.loads(frame)  # every frame the server produced is well-formed JSON
