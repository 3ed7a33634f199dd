"""The client stream state machine (loadtest.protocol.stream): frames and times in, meanings out.
No loop, no sockets."""

from __future__ import annotations

import pytest

from loadtest.errors import RemoteProtocolError
from loadtest.protocol import CHUNK, DONE, FAILED, FIRST_TOKEN, ClientStream, encode_server_event
from loadtest.protocol.stream import LATE, NOTHING


def msg(output: str, stop: bool = False) -> str:
    return encode_server_event("message", {"output": output, "stop": stop})


CONV = encode_server_event("conv-message", {"conversationId": "c1", "messageId": "m1"})


def test_a_whole_answer() -> None:
    s = ClientStream()
    codes = [s.feed(CONV, 10), s.feed(msg("He"), 100), s.feed(msg(""), 105), s.feed(msg("llo"), 130),
             s.feed(msg("!", stop=True), 170)]
    assert codes == [NOTHING, FIRST_TOKEN, NOTHING, CHUNK, DONE]
    assert (s.t_conv, s.t_first, s.t_last, s.t_stop) == (10, 100, 170, 170)
    assert (s.chunks, s.chars, s.chunk_chars, s.gaps_ns) == (3, 6, [2, 3, 1], [30, 40])
    assert (s.conversation_id, s.message_id) == ("c1", "m1")
    assert s.ended


def test_an_empty_stop_ends_without_a_chunk() -> None:
    s = ClientStream()
    assert s.feed(msg("a"), 5) == FIRST_TOKEN
    assert s.feed(msg("", stop=True), 9) == DONE
    assert (s.chunks, s.t_last, s.t_stop) == (1, 5, 9)


def test_an_error_fails_the_stream_and_what_follows_is_late() -> None:
    s = ClientStream()
    s.feed(CONV, 1)
    s.feed(msg("a"), 2)
    assert s.feed(encode_server_event("error", {"error": "upstream hiccup"}), 3) == FAILED
    assert s.error == "upstream hiccup" and s.ended
    # the proxy flushes the rest of the answer anyway: none of it is read as an answer
    assert [s.feed(msg("b"), 4), s.feed(msg("c", stop=True), 5)] == [LATE, LATE]
    assert (s.chunks, s.t_stop, s.late_frames) == (1, 0, 2)


def test_frames_after_stop_are_late() -> None:
    s = ClientStream()
    s.feed(msg("a", stop=True), 1)
    assert s.feed(msg("b"), 2) == LATE and s.chunks == 1 and s.late_frames == 1


def test_unknown_and_harmless_events_do_not_change_the_course() -> None:
    s = ClientStream()
    assert s.feed(encode_server_event("tool-call", {"name": "x"}), 1) == NOTHING
    assert s.feed(encode_server_event("pong"), 2) == NOTHING
    assert s.feed(encode_server_event("auth-connect-complete", {}), 3) == NOTHING
    assert s.unknown_events == 1 and not s.ended


@pytest.mark.parametrize("frame", ["not json", '{"event": "message", "data": {"output": null}}',
                                   '{"event": "message", "data": {"output": "x", "stop": "yes"}}'])
def test_a_malformed_frame_fails_the_stream(frame: str) -> None:
    s = ClientStream()
    with pytest.raises(RemoteProtocolError):
        s.feed(frame, 1)
    assert s.ended and s.feed(msg("a"), 2) == LATE
