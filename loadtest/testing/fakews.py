"""A fake WebSocket: the client half of aiohttp's WebSocket interface (what
:class:`~loadtest.engine.connection.Connection` uses), served in this process by the protocol's
own server side (:class:`~loadtest.protocol.ServerConnection`) on a clock — the peer of the
engine in virtual time (:func:`~loadtest.testing.run_virtual`), with no socket anywhere::

    def answer(n: int) -> Answer:          # the n-th gen on this connection (0, 1, ...)
        return [(0, ConvMessage("c", "m")), (50 * MS, Message("tok", False)),
                (60 * MS, Message("tok", True))]

    conn = Connection(FakeWebSocket(clock, answer), 1, None, clock)

Every client frame is fed to the server side: ``ping`` and ``set-model`` are answered at once,
a ``gen`` is answered by the script (each frame ``delay_ns`` after the gen was sent), anything
the server refuses (a malformed frame, a second gen while one is in flight) gets its ``error``
at once. Every frame of a script goes through the server's state machine, so a script that
breaks the protocol (a chunk before the conv-message, a chunk after stop) fails with
:class:`~loadtest.protocol.LocalProtocolError` at the ``gen`` that asked for it; a hostile
script says so by wrapping a frame in :class:`Raw`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp

from loadtest.clock import Clock
from loadtest.errors import RemoteProtocolError
from loadtest.protocol import (
    AuthComplete,
    ClientInput,
    GenRequest,
    Ping,
    Pong,
    ServerConnection,
    ServerEvent,
    SetModel,
    SetModelComplete,
    decode_server_frame,
)

__all__ = ["Answer", "FakeWebSocket", "Raw", "Script"]

_OK = {"status": "ok"}


@dataclass(frozen=True, slots=True)
class Raw:
    """A frame sent exactly as written and never checked: for scripts that misbehave on
    purpose (frames after ``stop`` or after an ``error``, a stream that goes on after it ended)."""

    text: str


#: one answer: ``(delay after the gen was sent, ns; what the server sends)``. A ``str`` is a
#: frame as written: when it decodes, the server's state machine checks it like an event; when
#: it does not (a malformed frame), it is sent verbatim.
Answer = Sequence[tuple[int, ServerEvent | str | Raw]]
#: the answer to the n-th ``gen`` of a connection (n = 0, 1, ...); an empty one = a silent server
Script = Callable[[int], Answer]


class FakeWebSocket:
    """A scripted server behind ``send_str``/``send_bytes``/``receive``/``close``/``close_code``.

    ``clock`` stamps and times the frames (the :class:`~loadtest.testing.VirtualClock` of a
    virtual run, or a real one). With ``greet`` the first frame received is
    ``auth-connect-complete`` (for code that authenticates); without it the connection is
    handed over already authenticated. ``received`` lists what the server side made of each
    client frame, ``gens`` counts the gens it accepted, ``server`` is its state machine.
    """

    def __init__(self, clock: Clock, script: Script, *, greet: bool = False) -> None:
        self.clock = clock
        self.script = script
        self.server = ServerConnection()
        self.received: list[ClientInput] = []
        self.gens = 0
        self.close_code: int | None = None
        self._queue: list[tuple[int, int, str]] = []  # a heap of (due ns, order sent, frame)
        self._order = itertools.count()
        self._pushed = asyncio.Event()
        greeting = self.server.send(AuthComplete(_OK))
        if greet:
            self._push(clock.now_ns(), greeting)

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    # ------------------------------------------------------------------ the client writes

    async def send_str(self, text: str) -> None:
        self._check_open()
        event = self.server.receive(text)
        self.received.append(event)
        now = self.clock.now_ns()
        if isinstance(event, Ping):
            self._push(now, self.server.send(Pong(_OK)))
        elif isinstance(event, SetModel):
            self._push(now, self.server.send(SetModelComplete({"model": event.model})))
        elif isinstance(event, GenRequest):
            answer = self.script(self.gens)
            self.gens += 1
            for delay_ns, item in answer:
                self._push(now + delay_ns, self._frame(item))
        else:
            self._push(now, self.server.refuse(event))

    async def send_bytes(self, data: bytes) -> None:
        self._check_open()
        event = self.server.receive_binary(data)
        self.received.append(event)
        self._push(self.clock.now_ns(), self.server.refuse(event))

    def _check_open(self) -> None:
        if self.closed:
            # what aiohttp raises for a write to a closed WebSocket (a ConnectionResetError)
            raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")

    def _frame(self, item: ServerEvent | str | Raw) -> str:
        if isinstance(item, Raw):
            return item.text
        if isinstance(item, str):
            try:
                event = decode_server_frame(item)
            except RemoteProtocolError:
                return item  # malformed on purpose: nothing for the state machine to check
            self.server.send(event)
            return item
        return self.server.send(item)

    def _push(self, due_ns: int, frame: str) -> None:
        heapq.heappush(self._queue, (due_ns, next(self._order), frame))
        self._pushed.set()

    # ------------------------------------------------------------------ the client reads

    async def receive(self) -> aiohttp.WSMessage:
        """The next frame, when it is due; frames due at the same time come in the order they
        were sent. Waits for ever for a server with nothing to say (a stall: only the
        caller's timeout ends it). After :meth:`close`, a CLOSED message."""
        while True:
            if self.closed:
                return aiohttp.WSMessage(aiohttp.WSMsgType.CLOSED, None, None)
            queue = self._queue
            if queue and queue[0][0] <= self.clock.now_ns():
                return aiohttp.WSMessage(aiohttp.WSMsgType.TEXT, heapq.heappop(queue)[2], None)
            await self._wait(queue[0][0] if queue else None)

    async def _wait(self, due_ns: int | None) -> None:
        """Until ``due_ns`` (on the clock) or until a frame is pushed (a pong may overtake a
        chunk that is due later), whichever is first."""
        self._pushed.clear()
        waits: set[asyncio.Future[object]] = {asyncio.ensure_future(self._pushed.wait())}
        if due_ns is not None:
            waits.add(asyncio.ensure_future(self.clock.sleep_until(due_ns)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        """Close (aiohttp's signature); True the first time. The server side is closed too."""
        if self.closed:
            return False
        self.close_code = code
        self.server.close()
        self._pushed.set()  # a reader waiting in receive() sees the close
        return True
