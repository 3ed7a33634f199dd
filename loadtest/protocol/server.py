"""The server side of one connection, sans I/O: the counterpart of :class:`~.stream.ClientStream`
(h11's one ``Connection`` for both roles, python-websockets' ``ServerProtocol``).

The I/O layer (the mock, the fake WebSocket of :mod:`loadtest.testing`) feeds every text frame
it reads to :meth:`ServerConnection.receive` and gets a typed event back; it writes the text that
:meth:`ServerConnection.send` returns for each event it decides to send. It never writes a JSON
frame of its own, and the connection refuses a step its state forbids with
:class:`~.codec.LocalProtocolError` (*we* broke it; nothing changes) — what the *client* got wrong
comes back as an event (:class:`RefusedFrame`, :class:`~.codec.UnknownEvent`) for the server to
answer with :meth:`ServerConnection.refuse`, since a mock must survive any client.

The states and what may be sent in each (``send``; any other event is a LocalProtocolError):

================  =====================================  ===================================
state             event sent                             next state
================  =====================================  ===================================
AUTHENTICATING    ``auth-connect-complete``              IDLE
AUTHENTICATING    ``error`` (the key is refused)         CLOSED (the I/O layer closes)
ACCEPTED          ``conv-message``                       STREAMING
ACCEPTED          ``error`` (instead of the stream)      IDLE
STREAMING         ``message`` with ``stop: false``       STREAMING
STREAMING         ``message`` with ``stop: true``        IDLE
STREAMING         ``error`` (mid-stream)                 IDLE
IDLE/ACCEPTED/    ``pong`` (a ping is owed an answer),   unchanged
STREAMING         ``set-model-complete`` (a set-model
                  is owed one), an unknown event
================  =====================================  ===================================

What is received (``receive``) in an authenticated state: a ``gen`` in IDLE starts a stream
(→ ACCEPTED); a ``gen`` while one is in flight is refused, as the harness runs one stream at a
time per connection (PROTOCOL.md leaves it open); ``ping`` and ``set-model`` leave an answer owed;
a malformed or binary frame is a :class:`RefusedFrame`. Reading before the key was judged
(AUTHENTICATING) or after :meth:`~ServerConnection.close` is the caller's mistake.

Deliberate misbehaviour for the fault model is named as such and allowed only mid-stream:
:meth:`~ServerConnection.error_and_continue`, :meth:`~ServerConnection.malformed_frame`,
:meth:`~ServerConnection.abandon`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from loadtest.errors import RemoteProtocolError
from loadtest.protocol.codec import (
    AuthComplete,
    ConvMessage,
    ErrorEvent,
    GenRequest,
    LocalProtocolError,
    Message,
    Ping,
    Pong,
    ServerEvent,
    SetModel,
    SetModelComplete,
    UnknownEvent,
    decode_client_event,
    encode_server,
)

__all__ = ["ClientInput", "RefusedFrame", "ServerConnection", "ServerState"]


class ServerState(enum.Enum):
    AUTHENTICATING = "authenticating"  # upgraded; the key not judged yet
    IDLE = "idle"  # authenticated, no stream in flight
    ACCEPTED = "accepted"  # a gen received; its conv-message not sent yet (queued for a slot)
    STREAMING = "streaming"  # conv-message sent; chunks until stop or an error
    CLOSED = "closed"  # the key was refused, or close(): nothing more is sent or read


@dataclass(frozen=True, slots=True)
class RefusedFrame:
    """A client frame the server will not act on (malformed, binary, a second ``gen`` while one
    is in flight). ``reason`` says why; :meth:`ServerConnection.refuse` turns it into the
    ``error`` frame that answers it."""

    reason: str


#: what :meth:`ServerConnection.receive` returns
ClientInput = Ping | SetModel | GenRequest | UnknownEvent | RefusedFrame

_AUTH, _IDLE, _ACCEPTED, _STREAMING, _CLOSED = (
    ServerState.AUTHENTICATING, ServerState.IDLE, ServerState.ACCEPTED, ServerState.STREAMING, ServerState.CLOSED,
)
_AUTHENTICATED: Final = frozenset({_IDLE, _ACCEPTED, _STREAMING})
_IN_FLIGHT: Final = frozenset({_ACCEPTED, _STREAMING})

#: the stream's transitions (state, event class) -> next state; a `message` with stop: true
#: leaves STREAMING for IDLE (see send). Pong, SetModelComplete, UnknownEvent: _AUTHENTICATED.
_TRANSITIONS: Final[dict[tuple[ServerState, type], ServerState]] = {
    (_AUTH, AuthComplete): _IDLE,
    (_AUTH, ErrorEvent): _CLOSED,
    (_ACCEPTED, ConvMessage): _STREAMING,
    (_ACCEPTED, ErrorEvent): _IDLE,
    (_STREAMING, Message): _STREAMING,
    (_STREAMING, ErrorEvent): _IDLE,
}

#: why an event cannot be sent in a state (the LocalProtocolError's message)
_WHY: Final[dict[tuple[ServerState, type], str]] = {
    (_IDLE, Message): "no stream is in flight (a chunk after stop, or before any gen)",
    (_ACCEPTED, Message): "send the stream's conv-message first",
    (_IDLE, ConvMessage): "no gen to answer",
    (_STREAMING, ConvMessage): "this stream already has its conv-message",
    (_IDLE, ErrorEvent): "no stream to fail (answer a refused frame with refuse())",
}

_IN_FLIGHT_REASON: Final = "a gen is already in flight on this connection (one stream at a time)"
_BINARY_REASON: Final = "binary frames are not supported"


def _name(event: object) -> str:
    return type(event).__name__


class ServerConnection:
    """One client connection as the server sees it, from the upgrade to the close.

    Not thread-safe; one instance per connection. Every method either does what it says and
    moves the state, or raises :class:`LocalProtocolError` and changes nothing.
    """

    __slots__ = ("_pings_owed", "_refusals_owed", "_set_models_owed", "abandoned", "chars_sent",
                 "chunks_sent", "completed", "conversation_id", "failed", "gen", "message_id", "model",
                 "refused", "state", "streams")

    def __init__(self) -> None:
        self.state = _AUTH
        #: the ``gen`` in flight (ACCEPTED, STREAMING), else None
        self.gen: GenRequest | None = None
        #: the ids the current (or last) stream's conv-message carried
        self.conversation_id = ""
        self.message_id = ""
        #: the model the client last asked for with set-model (None: never asked)
        self.model: str | None = None
        #: non-empty chunks and their characters sent in the current (or last) stream
        self.chunks_sent = 0
        self.chars_sent = 0
        #: gens accepted; streams ended by stop, by an error, without either (abandon/close)
        self.streams = 0
        self.completed = 0
        self.failed = 0
        self.abandoned = 0
        #: client frames refused (RefusedFrame) or of an unknown event
        self.refused = 0
        self._pings_owed = 0
        self._set_models_owed = 0
        self._refusals_owed = 0

    @property
    def in_flight(self) -> bool:
        """A stream is in flight: a gen was accepted and has not ended."""
        return self.state in _IN_FLIGHT

    # ------------------------------------------------------------------ receiving

    def receive(self, frame: str | bytes) -> ClientInput:
        """What one client text frame asks for.

        The caller must have judged the key first (sent ``auth-connect-complete``) and must
        stop reading after :meth:`close`: otherwise LocalProtocolError. Never raises for
        anything the client sent: a frame the server will not act on is a RefusedFrame.
        """
        state = self._readable()
        try:
            event = decode_client_event(frame)
        except RemoteProtocolError as exc:
            return self._refused(str(exc))
        if isinstance(event, GenRequest):
            if state is not _IDLE:
                return self._refused(_IN_FLIGHT_REASON)
            self.state = _ACCEPTED
            self.gen = event
            self.streams += 1
            self.conversation_id = self.message_id = ""
            self.chunks_sent = self.chars_sent = 0
        elif isinstance(event, Ping):
            self._pings_owed += 1
        elif isinstance(event, SetModel):
            self._set_models_owed += 1
            self.model = event.model
        else:  # an unknown client event: the server may refuse it
            self.refused += 1
            self._refusals_owed += 1
        return event

    def receive_binary(self, data: bytes) -> RefusedFrame:
        """A binary frame: the protocol is JSON text, so it is refused (whatever it holds)."""
        self._readable()
        return self._refused(_BINARY_REASON)

    def _readable(self) -> ServerState:
        state = self.state
        if state is _AUTH:
            raise LocalProtocolError("read a frame before the key was judged: "
                                     "send auth-connect-complete (or error) first")
        if state is _CLOSED:
            raise LocalProtocolError("read a frame after close(): stop reading")
        return state

    def _refused(self, reason: str) -> RefusedFrame:
        self.refused += 1
        self._refusals_owed += 1
        return RefusedFrame(reason)

    # ------------------------------------------------------------------ sending

    def send(self, event: ServerEvent) -> str:
        """The text frame of ``event``, which this connection's state allows (the module's
        table); the state moves on. Raises LocalProtocolError if the state forbids it."""
        state = self.state
        kind = type(event)
        # The hot path, once per chunk: a message inside a stream.
        if type(event) is Message and state is _STREAMING:
            if event.output:
                self.chunks_sent += 1
                self.chars_sent += len(event.output)
            if event.stop:
                self._end()
                self.completed += 1
            return encode_server(event)
        if kind in (Pong, SetModelComplete, UnknownEvent):
            return self._aside(event, state)
        after = _TRANSITIONS.get((state, kind))
        if after is None:
            raise LocalProtocolError(f"cannot send {_name(event)} while {state.value}: {self._why(state, kind)}")
        frame = encode_server(event)  # first: an unencodable event changes nothing
        if isinstance(event, ConvMessage):
            self.conversation_id, self.message_id = event.conversation_id, event.message_id
        elif isinstance(event, ErrorEvent) and state in _IN_FLIGHT:
            self.failed += 1
            self._end()
        self.state = after
        return frame

    def _aside(self, event: ServerEvent, state: ServerState) -> str:
        if state not in _AUTHENTICATED:
            raise LocalProtocolError(f"cannot send {_name(event)} while {state.value}: {self._why(state, type(event))}")
        if isinstance(event, Pong):
            if not self._pings_owed:
                raise LocalProtocolError("cannot send Pong: no ping to answer")
            frame = encode_server(event)
            self._pings_owed -= 1
            return frame
        if isinstance(event, SetModelComplete):
            if not self._set_models_owed:
                raise LocalProtocolError("cannot send SetModelComplete: no set-model to answer")
            frame = encode_server(event)
            self._set_models_owed -= 1
            return frame
        return encode_server(event)  # an unknown event: a server's new feature, allowed any time

    @staticmethod
    def _why(state: ServerState, kind: type) -> str:
        if state is _CLOSED:
            return "the connection is closed"
        if state is _AUTH:
            return "judge the key first (auth-connect-complete or error)"
        if kind is AuthComplete:
            return "the connection is already authenticated"
        return _WHY.get((state, kind), "not allowed in this state")

    def refuse(self, event: RefusedFrame | UnknownEvent) -> str:
        """The ``error`` frame answering a refused frame or an unknown client event that
        :meth:`receive` returned. The stream in flight, if any, goes on (the state is
        unchanged); a client reading that stream will take the error as its own, which is
        the protocol's ambiguity, not this method's."""
        if self.state not in _AUTHENTICATED:
            raise LocalProtocolError(f"cannot refuse a frame while {self.state.value}: {self._why(self.state, ErrorEvent)}")
        if not self._refusals_owed:
            raise LocalProtocolError("cannot refuse: no refused frame or unknown event to answer")
        text = f"unknown client event {event.name!r}" if isinstance(event, UnknownEvent) else event.reason
        frame = encode_server(ErrorEvent(text))
        self._refusals_owed -= 1
        return frame

    def close(self) -> None:
        """The transport is closing (or was lost): nothing more is sent or read. A stream in
        flight ends without stop (counted as abandoned)."""
        if self.state in _IN_FLIGHT:
            self.abandoned += 1
            self._end()
        self.state = _CLOSED

    def _end(self) -> None:
        self.state = _IDLE
        self.gen = None

    # ------------------------------------------------------------------ deliberate faults

    def error_and_continue(self, error: str) -> str:
        """Fault: an ``error`` frame mid-stream that does not end the stream (PROTOCOL.md does
        not promise silence after an error; a proxy may flush the rest of the answer)."""
        self._mid_stream("error_and_continue")
        return encode_server(ErrorEvent(error))

    def malformed_frame(self) -> str:
        """Fault: a ``message`` frame cut short, which no JSON decoder reads."""
        self._mid_stream("malformed_frame")
        frame = encode_server(Message("truncated", False))
        return frame[: frame.index("truncated") + len("trunc")]

    def abandon(self) -> None:
        """Fault: end the stream in flight without ``stop`` or ``error`` (the no-stop fault;
        the client's timeout ends it on its side). The next gen is accepted."""
        if self.state not in _IN_FLIGHT:
            raise LocalProtocolError(f"cannot abandon a stream while {self.state.value}: no stream is in flight")
        self.abandoned += 1
        self._end()

    def _mid_stream(self, what: str) -> None:
        if self.state is not _STREAMING:
            raise LocalProtocolError(f"cannot send {what} while {self.state.value}: only inside a stream")
