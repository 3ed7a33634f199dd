"""The per-chunk fast paths give exactly what the general paths give.

decode_stream_frame vs decode_server_frame, protocol._loads vs json.loads,
Recorder.record_ns_many vs record_us(ns / 1000). Pure: no event loop.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtest.errors import RemoteProtocolError
from loadtest.metrics.recorder import HIGHEST_US, Recorder
from loadtest.protocol import Message, decode_server_frame, decode_stream_frame
from loadtest.protocol.codec import _loads

FRAMES = [
    '{"event":"message","data":{"output":"hi ","stop":false}}',
    '{"event":"message","data":{"output":"","stop":true}}',
    '{"event":"message","data":{"output":null,"stop":true}}',
    '{"event":"message","data":{"stop":true}}',
    '{"event":"message","data":{"output":"x"}}',
    '{"event":"message","data":{"output":1,"stop":false}}',
    '{"event":"message","data":{"output":"x","stop":0}}',
    '{"event":"message","data":[]}',
    '{"event":"message"}',
    ' {"event":"message","data":{"output":"x","stop":false}}\n',
    '{"event":"message","data":{"output":"x","stop":false}}x',
    '{"event":"conv-message","data":{"conversationId":"c","messageId":7}}',
    '{"event":"pong"}',
    '{"event":"error","data":{"error":"boom"}}',
    '{"event":"tool-call","data":{"name":"f"}}',
    '{"event":1}',
    "[]",
    "",
    '{"event":"message","data":{"output":"trunc',
    "[" * 5000,
    b'{"event":"message","data":{"output":"b","stop":false}}',
]


def _outcome(fn: Any, frame: Any) -> Any:
    try:
        ev = fn(frame)
    except RemoteProtocolError as exc:
        return ("error", str(exc))
    if isinstance(ev, tuple):  # the fast path's form of a Message
        return Message(output=ev[0], stop=ev[1])
    return ev


@pytest.mark.parametrize("frame", FRAMES)
def test_stream_decoder_agrees_with_the_general_decoder(frame: Any) -> None:
    assert _outcome(decode_stream_frame, frame) == _outcome(decode_server_frame, frame)


def test_a_message_frame_comes_back_as_a_tuple() -> None:
    assert decode_stream_frame('{"event":"message","data":{"output":"a","stop":false}}') == ("a", False)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@given(st.one_of(_json.map(json.dumps), st.text(max_size=40)), st.sampled_from(["", " ", "\n", "x", "{}"]))
def test_loads_is_json_loads(text: str, suffix: str) -> None:
    frame = text + suffix

    def run(fn: Any) -> Any:
        try:
            return ("ok", fn(frame))
        except ValueError as exc:
            return (type(exc).__name__, str(exc))

    assert repr(run(_loads)) == repr(run(json.loads))


@given(st.lists(st.integers(min_value=-10**7, max_value=(HIGHEST_US + 5) * 1000), max_size=50))
def test_record_ns_many_equals_record_us_one_by_one(values_ns: list[int]) -> None:
    one, many = Recorder(), Recorder()
    one.record_us(1234)
    many.record_us(1234)
    for v in values_ns:
        one.record_us(v / 1000)
    many.record_ns_many(values_ns)
    assert one == many
    assert (one.min_us, one.max_us, one.count, one.below_range, one.above_range) == (
        many.min_us, many.max_us, many.count, many.below_range, many.above_range)
