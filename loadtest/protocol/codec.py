"""Sans-I/O codec of the chat proxy protocol v2 (PROTOCOL.md): frames <-> typed events.

No sockets, no asyncio, no clock: the I/O layer feeds text frames in and writes
the strings this module encodes. Every frame is one JSON object
``{"event": NAME, "data": {...}}``.

Decoding is strict about the events we understand (wrong types raise
:class:`~loadtest.errors.RemoteProtocolError` carrying the frame) and lenient about
the ones we do not: an unknown event becomes :class:`UnknownEvent`, so a new server
feature is counted, never fatal.

Both roles use the same event classes (h11's idea): the client encodes ``ping``/``gen``/
``set-model`` and decodes server events; the server side (:mod:`.server`) decodes client
events and encodes server events with :func:`encode_server`, the inverse of
:func:`decode_server_frame`.
"""

from __future__ import annotations

import functools
import json
import json.scanner
from dataclasses import dataclass, field
from typing import Any, Final

from loadtest.errors import EXIT_BUG, LoadtestError, RemoteProtocolError

__all__ = [
    "AuthComplete",
    "ClientEvent",
    "ConvMessage",
    "ErrorEvent",
    "GenRequest",
    "LocalProtocolError",
    "Message",
    "Ping",
    "Pong",
    "ServerEvent",
    "SetModel",
    "SetModelComplete",
    "UnknownEvent",
    "decode_client_event",
    "decode_client_frame",
    "decode_server_frame",
    "decode_stream_frame",
    "encode_gen",
    "encode_ping",
    "encode_server",
    "encode_server_event",
    "encode_set_model",
]


# --------------------------------------------------------------------------- errors


class LocalProtocolError(LoadtestError):
    """*We* broke the protocol: this side tried a step its state forbids (a chunk after
    ``stop``, a ``conv-message`` with no ``gen`` to answer, a pong nobody asked for).

    A bug in the caller, never the peer's doing (that is
    :class:`~loadtest.errors.RemoteProtocolError`): exit 70, and the state is left as it was.
    """

    exit_code = EXIT_BUG


# --------------------------------------------------------------------------- server events


@dataclass(frozen=True, slots=True)
class AuthComplete:
    data: Any = None


@dataclass(frozen=True, slots=True)
class SetModelComplete:
    data: Any = None


@dataclass(frozen=True, slots=True)
class ConvMessage:
    conversation_id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class Message:
    output: str
    stop: bool


@dataclass(frozen=True, slots=True)
class Pong:
    data: Any = None


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    error: str


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    name: str
    data: Any = None


ServerEvent = AuthComplete | SetModelComplete | ConvMessage | Message | Pong | ErrorEvent | UnknownEvent


# --------------------------------------------------------------------------- client events


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class SetModel:
    model: str


@dataclass(frozen=True, slots=True)
class GenRequest:
    """A ``gen``: ``prompt`` plus optional fields; ``extra`` passes through unchanged."""

    prompt: str
    temperature: float | None = None
    enable_web_search: bool | None = None
    web_search: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


ClientEvent = Ping | SetModel | GenRequest


# --------------------------------------------------------------------------- encoding

_PING: Final = json.dumps({"event": "ping"})


def encode_ping() -> str:
    return _PING


def encode_set_model(model: str) -> str:
    return json.dumps({"event": "set-model", "data": {"model": model}})


def gen_payload(req: GenRequest) -> dict[str, Any]:
    """The ``data`` object of a ``gen``; extra fields never override the typed ones."""
    data: dict[str, Any] = dict(req.extra)
    data["prompt"] = req.prompt
    if req.temperature is not None:
        data["temperature"] = req.temperature
    if req.enable_web_search is not None:
        data["enableWebSearch"] = req.enable_web_search
    if req.web_search is not None:
        data["webSearch"] = req.web_search
    if req.tools is not None:
        data["tools"] = req.tools
    return data


def encode_gen(req: GenRequest) -> str:
    return json.dumps({"event": "gen", "data": gen_payload(req)}, ensure_ascii=False)


def encode_server_event(name: str, data: Any = None) -> str:
    """Encode a server frame by name (for tests and hostile scripts; the server side encodes
    typed events with :func:`encode_server`)."""
    frame: dict[str, Any] = {"event": name}
    if data is not None:
        frame["data"] = data
    return json.dumps(frame, ensure_ascii=False)


#: the event names of the typed server events (an UnknownEvent may not take one of them)
KNOWN_SERVER_EVENTS: Final = frozenset(
    {"auth-connect-complete", "set-model-complete", "conv-message", "message", "pong", "error"}
)


# A stream is mostly `message` frames, and a server repeats its chunks (the mock cycles a few
# dozen words): memoise their text so the per-chunk cost is a dict lookup, not a json.dumps.
@functools.lru_cache(maxsize=4096)
def _message_frame(output: str, stop: bool) -> str:
    return encode_server_event("message", {"output": output, "stop": stop})


def encode_server(event: ServerEvent) -> str:
    """The text frame of a server event; :func:`decode_server_frame` reads it back as an
    equal event (``decode_server_frame(encode_server(e)) == e``).

    Raises :class:`LocalProtocolError` for an :class:`UnknownEvent` that bears the name of a
    known event (it would not read back as itself: send the typed event instead).
    """
    if isinstance(event, Message):
        return _message_frame(event.output, event.stop)
    if isinstance(event, ConvMessage):
        return encode_server_event(
            "conv-message", {"conversationId": event.conversation_id, "messageId": event.message_id}
        )
    if isinstance(event, ErrorEvent):
        return encode_server_event("error", {"error": event.error})
    if isinstance(event, AuthComplete):
        return encode_server_event("auth-connect-complete", event.data)
    if isinstance(event, SetModelComplete):
        return encode_server_event("set-model-complete", event.data)
    if isinstance(event, Pong):
        return encode_server_event("pong", event.data)
    if event.name in KNOWN_SERVER_EVENTS:
        raise LocalProtocolError(
            f"UnknownEvent({event.name!r}) bears a known event's name: send the typed event"
        )
    return encode_server_event(event.name, event.data)


# --------------------------------------------------------------------------- decoding


# json.loads(s) is JSONDecoder.decode: two regex matches and three Python calls around the
# C scanner, about as costly as the scan itself for a 60-byte chunk frame. Call the scanner
# directly when the frame is a str that is exactly one JSON value; anything else (leading or
# trailing whitespace, extra data, bytes, malformed) goes through json.loads, so the result
# and every error are json.loads's own.
_scan_once = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # typeshed: the context is a decoder


def _loads(frame: str | bytes) -> Any:
    if type(frame) is str:
        try:
            obj, end = _scan_once(frame, 0)
        except StopIteration:
            return json.loads(frame)
        if end == len(frame):
            return obj
    return json.loads(frame)


def _parse(frame: str | bytes) -> tuple[str, Any]:
    try:
        obj = _loads(frame)
    # JSONDecodeError is a ValueError; absurdly deep nesting ("[[[[...") raises RecursionError.
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise RemoteProtocolError("frame is not JSON", frame=frame) from exc
    return _name_data(obj, frame)


def _name_data(obj: Any, frame: str | bytes) -> tuple[str, Any]:
    if not isinstance(obj, dict):
        raise RemoteProtocolError("frame is not a JSON object", frame=frame)
    name = obj.get("event")
    if not isinstance(name, str):
        raise RemoteProtocolError("frame has no string 'event'", frame=frame)
    return name, obj.get("data")


def _data_obj(data: Any, frame: str | bytes, name: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RemoteProtocolError(f"'{name}' frame has no 'data' object", frame=frame)
    return data


def _field(data: dict[str, Any], key: str, kind: type, frame: str | bytes, name: str) -> Any:
    value = data.get(key)
    # bool is an int subclass: refuse it where a number or string is expected.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise RemoteProtocolError(
            f"'{name}' frame has {key}={value!r}, expected {kind.__name__}", frame=frame
        )
    return value


def decode_server_frame(frame: str | bytes) -> ServerEvent:
    """Decode one server text frame.

    Raises :class:`RemoteProtocolError` for malformed frames (not JSON, not an
    object, no ``event``, wrong field types on a known event). Never raises
    anything else.
    """
    name, data = _parse(frame)
    return _server_event(name, data, frame)


def decode_stream_frame(frame: str | bytes) -> tuple[str, bool] | ServerEvent:
    """:func:`decode_server_frame` for the per-chunk hot path of a stream.

    A well-formed ``message`` frame comes back as a plain ``(output, stop)`` tuple, not a
    :class:`Message` (a frozen dataclass costs ~1 µs to build, about a third of decoding);
    any other frame gives exactly what ``decode_server_frame`` gives, errors included.
    """
    try:
        obj = _loads(frame)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # as in _parse
        raise RemoteProtocolError("frame is not JSON", frame=frame) from exc
    # json.loads builds plain dicts, strs and bools: exact type checks are enough here
    if type(obj) is dict and obj.get("event") == "message":
        data = obj.get("data")
        if type(data) is dict:
            output = data.get("output", "")
            stop = data.get("stop", False)
            if type(output) is str and type(stop) is bool:
                return output, stop
    name, data = _name_data(obj, frame)
    return _server_event(name, data, frame)


def _server_event(name: str, data: Any, frame: str | bytes) -> ServerEvent:
    if name == "message":
        d = _data_obj(data, frame, name)
        # One rule (issue 10): `output` is a string when present (PROTOCOL.md; the vendor's
        # client prints it as text). Absent means no text; null, numbers, lists are protocol
        # errors, as a null or non-bool `stop` is.
        output = d.get("output", "")
        if not isinstance(output, str):
            raise RemoteProtocolError(
                f"'message' frame has output={output!r}, expected str", frame=frame
            )
        stop = d.get("stop", False)
        if not isinstance(stop, bool):
            raise RemoteProtocolError(
                f"'message' frame has stop={stop!r}, expected bool", frame=frame
            )
        return Message(output=output, stop=stop)
    if name == "conv-message":
        d = _data_obj(data, frame, name)
        conv = d.get("conversationId")
        msg = d.get("messageId")
        for key, value in (("conversationId", conv), ("messageId", msg)):
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise RemoteProtocolError(
                    f"'conv-message' frame has {key}={value!r}, expected str", frame=frame
                )
        return ConvMessage(conversation_id=str(conv), message_id=str(msg))
    if name == "error":
        if isinstance(data, dict):
            err = data.get("error")
            if isinstance(err, str):
                return ErrorEvent(error=err)
            if err is not None:
                return ErrorEvent(error=json.dumps(err)[:500])
        if isinstance(data, str):
            return ErrorEvent(error=data)
        raise RemoteProtocolError("'error' frame has no 'error' string", frame=frame)
    if name == "auth-connect-complete":
        return AuthComplete(data)
    if name == "set-model-complete":
        return SetModelComplete(data)
    if name == "pong":
        return Pong(data)
    return UnknownEvent(name=name, data=data)


def decode_client_frame(frame: str | bytes) -> ClientEvent:
    """Decode one client frame. Raises RemoteProtocolError if malformed or unknown."""
    event = decode_client_event(frame)
    if isinstance(event, UnknownEvent):
        raise RemoteProtocolError(f"unknown client event {event.name!r}", frame=frame)
    return event


def decode_client_event(frame: str | bytes) -> ClientEvent | UnknownEvent:
    """Decode one client frame (the server's side): as :func:`decode_client_frame`, but an
    event of an unknown name comes back as :class:`UnknownEvent` for the server to judge.

    Raises RemoteProtocolError for malformed frames (not JSON, not an object, no ``event``,
    wrong field types on a known event).
    """
    name, data = _parse(frame)
    if name == "ping":
        return Ping()
    if name == "set-model":
        d = _data_obj(data, frame, name)
        return SetModel(model=_field(d, "model", str, frame, name))
    if name == "gen":
        return _gen(data, frame)
    return UnknownEvent(name=name, data=data)


def _gen(data: Any, frame: str | bytes) -> GenRequest:
    name = "gen"
    d = dict(_data_obj(data, frame, name))
    prompt = _field(d, "prompt", str, frame, name)
    temperature = d.pop("temperature", None)
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, (int, float))
    ):
        raise RemoteProtocolError("'gen' temperature must be a number", frame=frame)
    ews = d.pop("enableWebSearch", None)
    if ews is not None and not isinstance(ews, bool):
        raise RemoteProtocolError("'gen' enableWebSearch must be a bool", frame=frame)
    ws = d.pop("webSearch", None)
    if ws is not None and not isinstance(ws, dict):
        raise RemoteProtocolError("'gen' webSearch must be an object", frame=frame)
    tools = d.pop("tools", None)
    if tools is not None and not isinstance(tools, list):
        raise RemoteProtocolError("'gen' tools must be a list", frame=frame)
    d.pop("prompt")
    return GenRequest(
        prompt=prompt,
        temperature=None if temperature is None else float(temperature),
        enable_web_search=ews,
        web_search=ws,
        tools=tools,
        extra=d,
    )
