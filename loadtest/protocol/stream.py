"""The client side of one streamed answer, sans I/O: what each server frame means for the
``gen`` in flight (h11's ``Connection`` / python-websockets' ``Protocol`` shape).

The I/O layer sends ``gen``, then feeds every frame it reads, with the time it read it
(``perf_counter_ns`` taken before decoding), to :meth:`ClientStream.feed`, and acts on the
code it returns: reschedule its timeout at the first token, return at the end, retire the
connection on a failure. The rules, all of them here:

- ``conv-message``: the answer is accepted; its ids and time are kept.
- ``message`` with non-empty ``output``: a chunk. The first one is the first token
  (:data:`FIRST_TOKEN`), later ones add an inter-chunk gap each (:data:`CHUNK`). An empty
  ``output`` is not a chunk (no token, no gap).
- ``message`` with ``stop: true``: the answer is complete (:data:`DONE`), whatever its output.
- ``error``: the request failed (:data:`FAILED`, the text in :attr:`ClientStream.error`).
  PROTOCOL.md does not promise silence after it: frames of this stream may still arrive.
- an unknown event: counted, never fatal. ``pong``, ``auth-connect-complete`` and
  ``set-model-complete`` inside a stream: harmless, ignored.
- a malformed frame: :class:`~loadtest.errors.RemoteProtocolError` (the stream has failed).
- any frame after the stream ended (done or failed) is a *late frame*: counted in
  :attr:`ClientStream.late_frames`, never read as part of an answer (:data:`LATE`). The I/O
  layer retires a connection after a failure, so that the late frames of a failed stream
  never reach the next request (issue 9).
"""

from __future__ import annotations

from typing import Final

from loadtest.errors import RemoteProtocolError
from loadtest.protocol.codec import ConvMessage, ErrorEvent, Message, UnknownEvent, decode_stream_frame

__all__ = ["CHUNK", "DONE", "FAILED", "FIRST_TOKEN", "LATE", "NOTHING", "ClientStream"]

#: what a frame meant (the return value of :meth:`ClientStream.feed`)
NOTHING: Final = 0  # nothing that changes the stream's course (conv-message, unknown event, …)
CHUNK: Final = 1  # a chunk after the first
FIRST_TOKEN: Final = 2  # the first non-empty chunk: the stream timeout replaces the first-token one
DONE: Final = 3  # ``stop: true``: the answer is complete
FAILED: Final = 4  # an ``error`` event: the request failed
LATE: Final = 5  # a frame after the stream ended

_OPEN, _ENDED = 0, 1


class ClientStream:
    """One ``gen``'s answer as it arrives. Times are integers (ns) from the caller's clock.

    Not reusable: one instance per request. After :data:`DONE` or :data:`FAILED` (or a
    RemoteProtocolError) every further frame is :data:`LATE`.
    """

    __slots__ = ("_state", "chars", "chunks", "conversation_id", "error", "gaps_ns", "late_frames",
                 "message_id", "t_conv", "t_first", "t_last", "t_stop", "texts", "unknown_events")

    def __init__(self) -> None:
        self._state = _OPEN
        self.t_conv = 0
        self.t_first = 0
        self.t_last = 0  # the last non-empty chunk
        self.t_stop = 0
        self.chunks = 0
        self.chars = 0
        self.gaps_ns: list[int] = []
        #: the text of each non-empty chunk, in order (placing chunks in seconds; tokens)
        self.texts: list[str] = []
        self.unknown_events = 0
        self.late_frames = 0
        self.conversation_id = ""
        self.message_id = ""
        self.error = ""

    @property
    def chunk_chars(self) -> list[int]:
        """Characters of each non-empty chunk, in order."""
        return [len(t) for t in self.texts]

    @property
    def ended(self) -> bool:
        return self._state == _ENDED

    def feed(self, frame: str | bytes, t_ns: int) -> int:
        """What ``frame``, read at ``t_ns``, means for this answer (a code of this module).

        Raises RemoteProtocolError for a malformed frame; the stream has then failed.
        """
        if self._state == _ENDED:
            self.late_frames += 1
            return LATE
        try:
            ev = decode_stream_frame(frame)
        except RemoteProtocolError:
            self._state = _ENDED
            raise
        # The hot path, once per chunk: a well-formed `message` is a plain (output, stop) tuple.
        if type(ev) is tuple:
            output, stop = ev
        elif type(ev) is Message:
            output, stop = ev.output, ev.stop
        else:
            return self._event(ev, t_ns)
        code = NOTHING
        if output:
            n = len(output)
            if self.t_last:
                self.gaps_ns.append(t_ns - self.t_last)
                code = CHUNK
            else:
                self.t_first = t_ns
                code = FIRST_TOKEN
            self.t_last = t_ns
            self.chunks += 1
            self.chars += n
            self.texts.append(output)
        if stop:
            self.t_stop = t_ns
            self._state = _ENDED
            return DONE
        return code

    def _event(self, ev: object, t_ns: int) -> int:
        if isinstance(ev, ConvMessage):
            self.t_conv = t_ns
            self.conversation_id = ev.conversation_id
            self.message_id = ev.message_id
        elif isinstance(ev, ErrorEvent):
            self.error = ev.error or "error event without message"
            self._state = _ENDED
            return FAILED
        elif isinstance(ev, UnknownEvent):
            self.unknown_events += 1
        # pong / auth-connect-complete / set-model-complete inside a stream: harmless
        return NOTHING
