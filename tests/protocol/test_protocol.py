"""Unit and property tests of the sans-I/O codec (loadtest.protocol): no loop, no sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtest.errors import RemoteProtocolError
from loadtest.protocol import (
    AuthComplete,
    ConvMessage,
    ErrorEvent,
    GenRequest,
    Message,
    Ping,
    Pong,
    SetModel,
    SetModelComplete,
    UnknownEvent,
    decode_client_frame,
    decode_server_frame,
    encode_gen,
    encode_ping,
    encode_server_event,
    encode_set_model,
)

SERVER_EVENT_TYPES = (AuthComplete, SetModelComplete, ConvMessage, Message, Pong, ErrorEvent, UnknownEvent)
CLIENT_EVENT_TYPES = (Ping, SetModel, GenRequest)

# The vendor example's gen payload, verbatim (reference/chat-proxy-v2-client-example.txt).
VENDOR_WEB_SEARCH = {"enabled": True, "mode": "force", "maxResults": 5, "freshness": "week", "lang": "auto"}
VENDOR_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get weather by city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
VENDOR_PROMPT = "Hello, please explain the concept of artificial intelligence"
VENDOR_GEN: dict[str, Any] = {
    "event": "gen",
    "data": {
        "prompt": VENDOR_PROMPT,
        "temperature": 0.2,
        "enableWebSearch": True,
        "webSearch": VENDOR_WEB_SEARCH,
        "tools": VENDOR_TOOLS,
    },
}


# --------------------------------------------------------------------------- encoding


def test_encode_ping_has_no_data() -> None:
    assert json.loads(encode_ping()) == {"event": "ping"}


def test_encode_set_model() -> None:
    assert json.loads(encode_set_model("gpt-4o-mini")) == {
        "event": "set-model",
        "data": {"model": "gpt-4o-mini"},
    }


def test_encode_gen_prompt_only_omits_unset_fields() -> None:
    assert json.loads(encode_gen(GenRequest(prompt="hi"))) == {"event": "gen", "data": {"prompt": "hi"}}


def test_encode_gen_matches_vendor_example() -> None:
    req = GenRequest(
        prompt=VENDOR_PROMPT,
        temperature=0.2,
        enable_web_search=True,
        web_search=VENDOR_WEB_SEARCH,
        tools=VENDOR_TOOLS,
    )
    assert json.loads(encode_gen(req)) == VENDOR_GEN


def test_encode_gen_false_and_zero_are_sent_not_dropped() -> None:
    data = json.loads(encode_gen(GenRequest(prompt="p", temperature=0.0, enable_web_search=False)))["data"]
    assert data == {"prompt": "p", "temperature": 0.0, "enableWebSearch": False}


def test_encode_gen_passes_extra_fields_through() -> None:
    req = GenRequest(prompt="p", extra={"conversationId": "c-42", "topP": 0.9, "nested": {"a": [1, 2]}})
    data = json.loads(encode_gen(req))["data"]
    assert data == {"prompt": "p", "conversationId": "c-42", "topP": 0.9, "nested": {"a": [1, 2]}}


def test_encode_gen_extra_never_overrides_typed_fields() -> None:
    req = GenRequest(
        prompt="typed",
        temperature=0.5,
        enable_web_search=True,
        web_search={"enabled": True},
        tools=VENDOR_TOOLS,
        extra={
            "prompt": "from extra",
            "temperature": 9.0,
            "enableWebSearch": False,
            "webSearch": {"enabled": False},
            "tools": [],
            "conversationId": "c-1",
        },
    )
    data = json.loads(encode_gen(req))["data"]
    assert data["prompt"] == "typed"
    assert data["temperature"] == 0.5
    assert data["enableWebSearch"] is True
    assert data["webSearch"] == {"enabled": True}
    assert data["tools"] == VENDOR_TOOLS
    assert data["conversationId"] == "c-1"
    # the request itself was not mutated by encoding
    assert req.extra["prompt"] == "from extra"


def test_encode_gen_keeps_non_ascii_text_as_is() -> None:
    frame = encode_gen(GenRequest(prompt="héllo 世界 😀"))
    assert "héllo 世界 😀" in frame
    assert json.loads(frame)["data"]["prompt"] == "héllo 世界 😀"


def test_decode_client_frame_round_trips_encode_gen() -> None:
    req = GenRequest(
        prompt="p",
        temperature=0.7,
        enable_web_search=False,
        web_search=VENDOR_WEB_SEARCH,
        tools=VENDOR_TOOLS,
        extra={"conversationId": "c-9", "stream": True},
    )
    assert decode_client_frame(encode_gen(req)) == req
    assert decode_client_frame(encode_gen(GenRequest(prompt="x"))) == GenRequest(prompt="x")


def test_decode_client_frame_ping_and_set_model() -> None:
    assert decode_client_frame(encode_ping()) == Ping()
    assert decode_client_frame(encode_set_model("m")) == SetModel(model="m")


_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_json_values = st.recursive(
    _json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3), max_leaves=8
)
_TYPED_GEN_KEYS = {"prompt", "temperature", "enableWebSearch", "webSearch", "tools"}


@settings(max_examples=200, deadline=None)
@given(
    prompt=st.text(),
    temperature=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    ews=st.none() | st.booleans(),
    web_search=st.none() | st.dictionaries(st.text(), _json_values, max_size=3),
    tools=st.none() | st.lists(st.dictionaries(st.text(), _json_values, max_size=3), max_size=3),
    extra=st.dictionaries(st.text().filter(lambda k: k not in _TYPED_GEN_KEYS), _json_values, max_size=4),
)
def test_decode_client_frame_round_trips_any_gen(
    prompt: str,
    temperature: float | None,
    ews: bool | None,
    web_search: dict[str, Any] | None,
    tools: list[dict[str, Any]] | None,
    extra: dict[str, Any],
) -> None:
    req = GenRequest(
        prompt=prompt,
        temperature=temperature,
        enable_web_search=ews,
        web_search=web_search,
        tools=tools,
        extra=extra,
    )
    assert decode_client_frame(encode_gen(req)) == req


@pytest.mark.parametrize(
    "frame",
    [
        '{"event": "gen", "data": {}}',
        '{"event": "gen"}',
        '{"event": "gen", "data": {"prompt": 5}}',
        '{"event": "gen", "data": {"prompt": "p", "temperature": "hot"}}',
        '{"event": "gen", "data": {"prompt": "p", "temperature": true}}',
        '{"event": "gen", "data": {"prompt": "p", "enableWebSearch": "yes"}}',
        '{"event": "gen", "data": {"prompt": "p", "webSearch": []}}',
        '{"event": "gen", "data": {"prompt": "p", "tools": {}}}',
        '{"event": "set-model", "data": {}}',
        '{"event": "set-model", "data": {"model": 3}}',
        '{"event": "launch-missiles"}',
        "ping",
    ],
)
def test_decode_client_frame_refuses_malformed(frame: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_client_frame(frame)
    assert info.value.frame == frame


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    ("frame", "event"),
    [
        ('{"event": "auth-connect-complete", "data": {"status": "ok"}}', AuthComplete({"status": "ok"})),
        ('{"event": "auth-connect-complete"}', AuthComplete(None)),
        ('{"event": "set-model-complete", "data": {"model": "m1"}}', SetModelComplete({"model": "m1"})),
        (
            '{"event": "conv-message", "data": {"conversationId": "c-1", "messageId": "m-1"}}',
            ConvMessage(conversation_id="c-1", message_id="m-1"),
        ),
        (
            '{"event": "conv-message", "data": {"conversationId": 7, "messageId": 8}}',
            ConvMessage(conversation_id="7", message_id="8"),
        ),
        ('{"event": "message", "data": {"output": "Hello ", "stop": false}}', Message("Hello ", False)),
        ('{"event": "message", "data": {"output": "", "stop": true}}', Message("", True)),
        ('{"event": "message", "data": {"output": "", "stop": false}}', Message("", False)),
        ('{"event": "message", "data": {"stop": true}}', Message("", True)),
        ('{"event": "message", "data": {"stop": true}}', Message("", True)),
        ('{"event": "message", "data": {"output": "tail"}}', Message("tail", False)),
        ('{"event": "pong", "data": {"status": "ok"}}', Pong({"status": "ok"})),
        ('{"event": "pong"}', Pong(None)),
        ('{"event": "error", "data": {"error": "quota exceeded"}}', ErrorEvent("quota exceeded")),
        ('{"event": "error", "data": "plain string"}', ErrorEvent("plain string")),
        ('{"event": "error", "data": {"error": {"code": 5}}}', ErrorEvent('{"code": 5}')),
        (
            '{"event": "tool-call", "data": {"name": "get_weather"}}',
            UnknownEvent(name="tool-call", data={"name": "get_weather"}),
        ),
        ('{"event": "", "data": 1}', UnknownEvent(name="", data=1)),
        ('{"event": "heartbeat"}', UnknownEvent(name="heartbeat", data=None)),
    ],
)
def test_decode_server_frame(frame: str, event: object) -> None:
    assert decode_server_frame(frame) == event
    assert decode_server_frame(frame.encode()) == event


def test_decode_server_frame_reads_what_encode_server_event_writes() -> None:
    frame = encode_server_event("message", {"output": "日本 ", "stop": False})
    assert decode_server_frame(frame) == Message("日本 ", False)
    assert decode_server_frame(encode_server_event("pong")) == Pong(None)


def test_long_error_text_is_kept_whole() -> None:
    text = "e" * 1000
    assert decode_server_frame(encode_server_event("error", {"error": text})) == ErrorEvent(text)


MALFORMED = [
    pytest.param("not json", id="not-json"),
    pytest.param("", id="empty"),
    pytest.param('{"event": "message"', id="truncated"),
    pytest.param("[1, 2]", id="array"),
    pytest.param('"message"', id="string"),
    pytest.param("42", id="number"),
    pytest.param("null", id="null"),
    pytest.param('{"data": {"output": "x", "stop": false}}', id="no-event"),
    pytest.param('{"event": 5, "data": {}}', id="event-int"),
    pytest.param('{"event": null}', id="event-null"),
    pytest.param('{"event": ["message"]}', id="event-list"),
    pytest.param('{"event": "message"}', id="message-no-data"),
    pytest.param('{"event": "message", "data": "hello"}', id="message-data-str"),
    pytest.param('{"event": "message", "data": {"output": "x", "stop": "true"}}', id="stop-str"),
    pytest.param('{"event": "message", "data": {"output": "x", "stop": 1}}', id="stop-int"),
    pytest.param('{"event": "message", "data": {"output": "x", "stop": null}}', id="stop-null"),
    pytest.param('{"event": "message", "data": {"output": 5, "stop": false}}', id="output-int"),
    pytest.param('{"event": "message", "data": {"output": null, "stop": true}}', id="output-null"),
    pytest.param('{"event": "message", "data": {"output": ["a"], "stop": false}}', id="output-list"),
    pytest.param('{"event": "message", "data": {"output": true, "stop": false}}', id="output-bool"),
    pytest.param('{"event": "conv-message"}', id="conv-no-data"),
    pytest.param('{"event": "conv-message", "data": {"messageId": "m"}}', id="conv-no-conversationId"),
    pytest.param('{"event": "conv-message", "data": {"conversationId": "c"}}', id="conv-no-messageId"),
    pytest.param('{"event": "conv-message", "data": {}}', id="conv-no-ids"),
    pytest.param(
        '{"event": "conv-message", "data": {"conversationId": true, "messageId": "m"}}', id="conv-id-bool"
    ),
    pytest.param(
        '{"event": "conv-message", "data": {"conversationId": "c", "messageId": null}}', id="conv-id-null"
    ),
    pytest.param('{"event": "error"}', id="error-no-data"),
    pytest.param('{"event": "error", "data": {}}', id="error-no-error"),
    pytest.param('{"event": "error", "data": {"error": null}}', id="error-null"),
    pytest.param('{"event": "error", "data": 5}', id="error-data-int"),
    pytest.param("[" * 100_000, id="nested-too-deep"),
]


@pytest.mark.parametrize("frame", MALFORMED)
def test_malformed_frame_raises_with_frame_attached(frame: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_server_frame(frame)
    exc = info.value
    assert exc.category == "protocol"
    assert exc.frame[: RemoteProtocolError.MAX_FRAME_CHARS] == frame[: RemoteProtocolError.MAX_FRAME_CHARS]
    if len(frame) <= RemoteProtocolError.MAX_FRAME_CHARS:
        assert exc.frame == frame
        if frame:
            assert repr(frame) in str(exc)


@pytest.mark.parametrize(
    "frame",
    [
        b"\xff\xfe\xfd not utf-8",
        b'{"event": "message", "data": {"output": "\xc3\x28", "stop": false}}',
        b'{"event": "\x80"}',
    ],
)
def test_invalid_utf8_bytes_raise_remote_protocol_error(frame: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_server_frame(frame)
    assert info.value.frame == frame.decode("utf-8", "replace")
    assert "\ufffd" in info.value.frame


def test_frame_in_error_is_truncated_to_200_chars() -> None:
    frame = "x" * 1000
    with pytest.raises(RemoteProtocolError) as info:
        decode_server_frame(frame)
    assert info.value.frame == "x" * 200 + "…(+800 chars)"
    assert "x" * 201 not in str(info.value)


def test_long_malformed_message_frame_is_truncated() -> None:
    frame = json.dumps({"event": "message", "data": {"output": "y" * 5000, "stop": "no"}})
    with pytest.raises(RemoteProtocolError) as info:
        decode_server_frame(frame)
    assert info.value.frame.startswith(frame[:200])
    assert info.value.frame.endswith(f"…(+{len(frame) - 200} chars)")
    assert len(info.value.frame) == 200 + len(f"…(+{len(frame) - 200} chars)")


# --------------------------------------------------------------------------- properties

KNOWN_SERVER_EVENTS = [
    "auth-connect-complete",
    "set-model-complete",
    "conv-message",
    "message",
    "pong",
    "error",
]
KNOWN_CLIENT_EVENTS = ["ping", "gen", "set-model"]

_any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(), c, max_size=4),
    max_leaves=12,
)
# data objects shaped like the real ones, with each field of any JSON type, present or not
_data_like = st.fixed_dictionaries(
    {},
    optional={
        k: _any_json
        for k in ("output", "stop", "conversationId", "messageId", "error", "model", "prompt", "temperature")
    },
)


def _frames(names: list[str]) -> st.SearchStrategy[str | bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> str | bytes:
        obj: dict[str, Any] = draw(st.dictionaries(st.text(), _any_json, max_size=2))
        obj["event"] = draw(st.sampled_from(names) | st.text() | _any_json)
        if draw(st.booleans()):
            obj["data"] = draw(_data_like | _any_json)
        text = json.dumps(obj)
        return text.encode() if draw(st.booleans()) else text

    return build()


def _check_error(exc: RemoteProtocolError) -> None:
    limit = RemoteProtocolError.MAX_FRAME_CHARS
    assert isinstance(exc.frame, str)
    head, _, tail = exc.frame.partition("…(+")
    assert len(exc.frame) <= limit or (len(head) == limit and tail.endswith(" chars)"))


@settings(max_examples=500, deadline=None)
@given(st.text() | st.binary() | _frames(KNOWN_SERVER_EVENTS))
def test_decode_server_frame_yields_event_or_remote_protocol_error(frame: str | bytes) -> None:
    try:
        event = decode_server_frame(frame)
    except RemoteProtocolError as exc:
        _check_error(exc)
    else:
        assert isinstance(event, SERVER_EVENT_TYPES)


@settings(max_examples=300, deadline=None)
@given(st.text() | st.binary() | _frames(KNOWN_CLIENT_EVENTS))
def test_decode_client_frame_yields_event_or_remote_protocol_error(frame: str | bytes) -> None:
    try:
        event = decode_client_frame(frame)
    except RemoteProtocolError as exc:
        _check_error(exc)
    else:
        assert isinstance(event, CLIENT_EVENT_TYPES)
