"""The embedded mock proxy: an aiohttp.web server speaking protocol v2 at ``/v2/chat``, and
serving its own figures (active streams, queue depth, gens served, …) as Prometheus text at
``/metrics`` (:mod:`loadtest.mock.metrics`), for ``loadtest run --scrape``.

It executes the pure plans of :mod:`loadtest.mock.latency` (latency, capacity),
:mod:`loadtest.mock.conversations` (the conversations it keeps, one store for all connections)
and :mod:`loadtest.mock.faults` (misbehaviour) over the protocol's sans-I/O server side
(:class:`~loadtest.protocol.ServerConnection`, one per client): that decodes every frame and
encodes every answer, and refuses a step the protocol forbids, so this module holds no JSON.
It is the default target of ``loadtest run``, the fixture of the test suite, and the peer of
the benchmarks, so it must never be the bottleneck: the chunk events are built once (the codec
memoises their frames) and sleeps aim at absolute deadlines on the clock (a late chunk delays
the next, as a real decode step would; no early bursts).

Run it in-process with :class:`MockServer` (port 0 gives a free port), or in its own
process with :class:`MockProcess` / ``loadtest mock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, WSMsgType, web

from loadtest.clock import Clock, RealClock
from loadtest.mock.conversations import CONVERSATION_FIELD, Conversations, UnknownConversation
from loadtest.mock.faults import FaultModel, FaultPlan, StreamFault
from loadtest.mock.latency import MockModel
from loadtest.mock.metrics import CONTENT_TYPE, MockMetric, render_metrics
from loadtest.protocol import (
    AuthComplete,
    ConvMessage,
    ErrorEvent,
    GenRequest,
    Message,
    Ping,
    Pong,
    ServerConnection,
    ServerState,
    SetModel,
    SetModelComplete,
    UnknownEvent,
)

__all__ = ["CLOSE_BAD_KEY", "MockConfig", "MockServer", "mock_chunk_chars"]

_WORDS = ["Artificial", "intelligence", "is", "the", "study", "of", "systems", "that", "perceive,", "reason,", "learn", "and", "act;", "modern", "models", "predict", "the", "next", "token", "from", "vast", "corpora,", "and", "streaming", "lets", "a", "client", "show", "each", "piece", "of", "the", "answer", "as", "soon", "as", "it", "is", "ready."]
# The answer's chunks as events, built once and cycled (the codec memoises their frames).


def chunk_texts(words_per_chunk: int) -> tuple[str, ...]:
    """The texts the mock's chunks cycle through: ``words_per_chunk`` words each, a space after
    every word (chunk ``i`` of an answer is ``chunk_texts(k)[i % len(...)]``)."""
    n = len(_WORDS)
    return tuple("".join(_WORDS[(i * words_per_chunk + j) % n] + " " for j in range(words_per_chunk))
                 for i in range(n))
_STOP = Message("", True)
_OK = {"status": "ok"}
_TOOL_CALL = UnknownEvent("tool-call", {"name": "get_weather", "arguments": {"city": "Oslo"}})
CLOSE_BAD_KEY = 4401
_NS = 1_000_000_000
_NS_PER_MS = 1_000_000
#: stop(): how long the clients get to answer the close (then aiohttp's cleanup cancels what is left)
_STOP_GRACE_S = 1.0


@dataclass(frozen=True, kw_only=True)
class MockConfig:
    model: MockModel = field(default_factory=MockModel)
    faults: FaultModel = field(default_factory=FaultModel)
    #: accepted keys; empty = any key (or none) is accepted
    api_keys: frozenset[str] = frozenset()
    seed: int = 0


class MockServer:
    """One mock proxy. ``await start()`` returns the ``ws://`` (or, with TLS, ``wss://``) URL;
    ``await stop()``.

    Every frame goes through one :class:`~loadtest.protocol.ServerConnection` per client: this
    class only feeds it what it reads and writes what it returns, and keeps the time (through
    ``clock``, :class:`~loadtest.clock.RealClock` unless given), the capacity and the faults.
    """

    def __init__(self, config: MockConfig | None = None, *, clock: Clock | None = None) -> None:
        self.config = config or MockConfig()
        self._clock: Clock = clock or RealClock()
        self._rng = random.Random(self.config.seed)
        self._faults = FaultPlan(self.config.faults, seed=self.config.seed)
        self._chunks = tuple(Message(t, False) for t in chunk_texts(self.config.model.words_per_chunk))
        self._slots = asyncio.Semaphore(self.config.model.capacity) if self.config.model.capacity else None
        self._active = 0
        #: gens accepted and waiting for a slot of the capacity model (issue 21: ``mock_queue_depth``)
        self._waiting = 0
        #: every conversation this mock started, for all its connections (issue 20)
        self.conversations = Conversations()
        self._sockets: set[web.WebSocketResponse] = set()
        self._stopping = False
        self._runner: web.AppRunner | None = None
        self._t0_ns = 0
        self.url = ""
        # counters, for tests
        self.connections = 0
        self.streams_started = 0
        self.streams_completed = 0
        #: streams the client left before their stop (it closed or dropped the socket: the only
        #: way to stop a stream in this protocol); their slot is freed at once
        self.streams_abandoned = 0
        #: gens refused because they named a conversation this mock does not know
        self.unknown_conversations = 0
        self.bad_frames = 0

    # ------------------------------------------------------------------ lifecycle

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/chat", self._handle)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0, *,
                    ssl_context: ssl.SSLContext | None = None) -> str:
        """Listen on ``host:port`` (0 = a free port); TLS (``wss://``) when ``ssl_context``."""
        self._t0_ns = self._clock.now_ns()
        self._stopping = False
        self._runner = web.AppRunner(self.app(), handle_signals=False, access_log=None,
                                     shutdown_timeout=_STOP_GRACE_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=4096, reuse_address=True, ssl_context=ssl_context)
        await site.start()
        # the bound port (port 0 = any free one) is only known from the listening socket
        bound_port = self._runner.addresses[0][1]
        self.url = f"{'wss' if ssl_context else 'ws'}://{host}:{bound_port}/v2/chat"
        return self.url

    async def stop(self) -> None:
        """Close every client's socket (1001 going away), then stop listening. Streams in
        flight end without stop and are not counted as abandoned (the server left, not the
        client)."""
        if self._runner is None:
            return
        self._stopping = True
        # A WebSocket handler returns only when its client leaves, and aiohttp's cleanup waits
        # for every handler (up to its shutdown timeout): close the sockets first.
        if self._sockets:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_STOP_GRACE_S):
                    await asyncio.gather(*(ws.close(code=WSCloseCode.GOING_AWAY, message=b"mock stopping")
                                           for ws in list(self._sockets)))
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> MockServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ /metrics

    def metrics(self) -> list[MockMetric]:
        """The mock's own figures, as ``GET /metrics`` serves them (issue 21)."""
        capacity = self.config.model.capacity
        return [
            MockMetric("mock_active_streams", "gauge", "Gens being served now (holding a slot).", self._active),
            MockMetric("mock_queue_depth", "gauge", "Gens accepted and waiting for a slot of the capacity "
                       "model (0 without one).", self._waiting),
            *([MockMetric("mock_capacity", "gauge", "Gens served at once at most.", capacity)] if capacity else []),
            MockMetric("mock_open_connections", "gauge", "Client WebSockets open now.", len(self._sockets)),
            MockMetric("mock_conversations", "gauge", "Conversations the mock keeps.", len(self.conversations)),
            MockMetric("mock_connections_total", "counter", "WebSocket upgrades asked for.", self.connections),
            MockMetric("mock_streams_started_total", "counter", "Gens received.", self.streams_started),
            MockMetric("mock_gens_served_total", "counter", "Streams finished with a stop.", self.streams_completed),
            MockMetric("mock_streams_abandoned_total", "counter", "Streams the client left before their stop.",
                       self.streams_abandoned),
            MockMetric("mock_unknown_conversations_total", "counter", "Gens naming a conversation the mock "
                       "does not know.", self.unknown_conversations),
            MockMetric("mock_bad_frames_total", "counter", "Client frames refused.", self.bad_frames),
        ]  # fmt: skip

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=render_metrics(self.metrics()).encode(), headers={"Content-Type": CONTENT_TYPE})

    # ------------------------------------------------------------------ protocol

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.connections += 1
        refused = self._faults.refuse_upgrade()
        if refused:
            return web.Response(status=refused, text="refused by mock fault model")
        delay_s = self._faults.handshake_delay_s()
        if delay_s:
            await self._clock.sleep_until(self._clock.now_ns() + round(delay_s * _NS))
        ws = web.WebSocketResponse(autoping=True, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        conn = ServerConnection()
        keys = self.config.api_keys
        if keys and request.query.get("apikey", "") not in keys:
            await ws.send_str(conn.send(ErrorEvent("invalid api key")))
            await ws.close(code=CLOSE_BAD_KEY, message=b"invalid api key")
            return ws
        await ws.send_str(conn.send(AuthComplete(_OK)))
        streams: set[asyncio.Task[None]] = set()  # one in flight; the last may still be finishing
        self._sockets.add(ws)
        try:
            # This loop reads while a stream task writes, so a client that closes its socket
            # mid-stream ends the loop at once, and the stream is cancelled below: its slot is
            # freed now, not at its next chunk deadline or its planned end (issue 20).
            async for msg in ws:
                if conn.state is ServerState.CLOSED:  # a fault closed it: read nothing more
                    break
                if msg.type == WSMsgType.TEXT:
                    event = conn.receive(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    event = conn.receive_binary(msg.data)
                else:
                    continue
                if isinstance(event, Ping):
                    await ws.send_str(conn.send(Pong(_OK)))
                elif isinstance(event, SetModel):
                    await ws.send_str(conn.send(SetModelComplete({"model": event.model})))
                elif isinstance(event, GenRequest):
                    self.streams_started += 1  # here: a stream abandoned before its task ran counts too
                    task = asyncio.create_task(self._stream(ws, request, conn, event))
                    streams.add(task)
                    task.add_done_callback(streams.discard)
                else:  # a refused frame, an unknown client event
                    self.bad_frames += 1
                    await ws.send_str(conn.refuse(event))
        finally:
            self._sockets.discard(ws)
            self._leave(conn)
            for task in list(streams):
                task.cancel()
            for task in list(streams):
                with contextlib.suppress(asyncio.CancelledError):
                    await task  # a LocalProtocolError (a bug here) surfaces, never swallowed
        return ws

    async def _stream(self, ws: web.WebSocketResponse, request: web.Request, conn: ServerConnection,
                      gen: GenRequest) -> None:
        """Serve the gen ``conn`` has in flight: to stop, an error, a fault, or the client's
        departure (then ``conn`` is closed and nothing more is sent)."""
        requested = gen.extra.get(CONVERSATION_FIELD)
        clock = self._clock
        try:
            try:
                earlier = self.conversations.earlier_turns(requested)
            except UnknownConversation as exc:
                self.unknown_conversations += 1
                await ws.send_str(conn.send(ErrorEvent(str(exc))))
                return
            ttft_ms, chunks, gap_ms = self.config.model.plan(self._rng, len(gen.prompt), earlier)
            fault = self._faults.stream_fault(chunks)
            if fault.kind == "error_instead":
                await ws.send_str(conn.send(ErrorEvent("mock: generation failed")))
                return
            # accepted: the turn counts from now (no await since earlier_turns, so no other
            # turn of this conversation came between), even if it waits for a slot
            turn = self.conversations.add_turn(requested)
            if self._slots is not None:
                self._waiting += 1
                try:
                    await self._slots.acquire()
                finally:
                    self._waiting -= 1
            self._active += 1
            try:
                await ws.send_str(conn.send(ConvMessage(conversation_id=turn.conversation_id,
                                                        message_id=turn.message_id)))
                deadline = clock.now_ns() + round(ttft_ms * _NS_PER_MS)
                model = self.config.model
                for i in range(chunks):
                    deadline += round(self._faults.stall_s((deadline - self._t0_ns) / _NS) * _NS)
                    await clock.sleep_until(deadline)
                    if fault.kind and i == fault.at_chunk and await _inject(fault, ws, request, conn):
                        return
                    # A decode step cannot start before the previous token went out: a chunk
                    # sent late pushes the next one back (no catch-up burst), so every gap is
                    # >= the model's gap; the drift is only the wake-up overshoot (~µs).
                    deadline = max(deadline, clock.now_ns())
                    await ws.send_str(conn.send(self._chunks[i % len(self._chunks)]))
                    deadline += round(gap_ms * model.gap_factor(self._active) * _NS_PER_MS)
                if fault.kind == "no_stop":
                    conn.abandon()
                    return
                await ws.send_str(conn.send(_STOP))
                self.streams_completed += 1
            finally:
                self._active -= 1
                if self._slots is not None:
                    self._slots.release()
        except (ConnectionResetError, RuntimeError):
            # the client went away mid-stream (a write failed before the reader saw it go)
            self._leave(conn)
            return

    def _leave(self, conn: ServerConnection) -> None:
        """The client's socket is closed or lost: a stream still in flight was abandoned
        (unless the mock is stopping, or a fault closed it: then ``conn`` is closed already)."""
        if conn.in_flight and not self._stopping:
            self.streams_abandoned += 1
        conn.close()


async def _inject(fault: StreamFault, ws: web.WebSocketResponse, request: web.Request,
                  conn: ServerConnection) -> bool:
    """Perform a mid-stream fault; True when the stream ends with it."""
    kind = fault.kind
    if kind == "abrupt_close":
        # no close frame: drop the TCP connection under the WebSocket
        conn.close()
        if request.transport is not None:
            request.transport.abort()
        return True
    if kind == "close_code":
        conn.close()
        await ws.close(code=fault.code, message=b"mock fault")
        return True
    if kind == "malformed_frame":
        await ws.send_str(conn.malformed_frame())
        return False
    if kind == "error_mid_stream":
        await ws.send_str(conn.send(ErrorEvent("mock: generation aborted")))
        return True
    if kind == "error_then_late":
        # PROTOCOL.md does not promise silence after `error`: the rest of the answer follows
        await ws.send_str(conn.error_and_continue("mock: upstream hiccup"))
        return False
    if kind == "unknown_event":
        await ws.send_str(conn.send(_TOOL_CALL))
        return False
    return False


def mock_chunk_chars(chunks: int, words_per_chunk: int = 1) -> int:
    """Characters the mock streams for ``chunks`` chunks (for tests)."""
    texts = chunk_texts(words_per_chunk)
    return sum(len(texts[i % len(texts)]) for i in range(chunks))
