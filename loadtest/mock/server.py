"""The embedded mock proxy: an aiohttp.web server speaking protocol v2 at ``/v2/chat``.

It executes the pure plan of :mod:`loadtest.mockmodel` (latency, capacity) and
:mod:`loadtest.faults` (misbehaviour). It is the default target of ``loadtest run``,
the fixture of the test suite, and the peer of the benchmarks, so it must never be
the bottleneck: frames are pre-encoded where possible and sleeps aim at absolute
deadlines (a late chunk delays the next, as a real decode step would; no early bursts).

Run it in-process with :class:`MockServer` (port 0 gives a free port), or in its own
process with :class:`MockProcess` / ``loadtest mock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import ssl
import time
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from loadtest.errors import RemoteProtocolError
from loadtest.mock.faults import FaultModel, FaultPlan, StreamFault
from loadtest.mock.latency import MockModel
from loadtest.protocol import GenRequest, Ping, SetModel, decode_client_frame, encode_server_event

__all__ = ["CLOSE_BAD_KEY", "MockConfig", "MockServer", "mock_chunk_chars"]

_WORDS = ["Artificial", "intelligence", "is", "the", "study", "of", "systems", "that", "perceive,", "reason,", "learn", "and", "act;", "modern", "models", "predict", "the", "next", "token", "from", "vast", "corpora,", "and", "streaming", "lets", "a", "client", "show", "each", "piece", "of", "the", "answer", "as", "soon", "as", "it", "is", "ready."]
# Pre-encoded chunk frames, cycled: the hot path does no JSON work.
_CHUNK_FRAMES = tuple(
    encode_server_event("message", {"output": w + " ", "stop": False}) for w in _WORDS
)
_CHUNK_CHARS = tuple(len(w) + 1 for w in _WORDS)
_STOP_FRAME = encode_server_event("message", {"output": "", "stop": True})
_AUTH_FRAME = encode_server_event("auth-connect-complete", {"status": "ok"})
_PONG_FRAME = encode_server_event("pong", {"status": "ok"})
CLOSE_BAD_KEY = 4401


@dataclass(frozen=True, kw_only=True)
class MockConfig:
    model: MockModel = field(default_factory=MockModel)
    faults: FaultModel = field(default_factory=FaultModel)
    #: accepted keys; empty = any key (or none) is accepted
    api_keys: frozenset[str] = frozenset()
    seed: int = 0


async def _sleep_until(deadline: float) -> None:
    """Sleep until ``time.perf_counter() >= deadline``.

    uvloop truncates timer delays to whole milliseconds and measures them from a
    per-iteration cached clock, so one sleep can wake up to ~1 ms early: re-check and
    sleep again rather than trust a single wake-up.
    """
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return
        await asyncio.sleep(remaining)


class MockServer:
    """One mock proxy. ``await start()`` returns the ``ws://`` (or, with TLS, ``wss://``) URL;
    ``await stop()``."""

    def __init__(self, config: MockConfig | None = None) -> None:
        self.config = config or MockConfig()
        self._rng = random.Random(self.config.seed)
        self._faults = FaultPlan(self.config.faults, seed=self.config.seed)
        self._slots = asyncio.Semaphore(self.config.model.capacity) if self.config.model.capacity else None
        self._active = 0
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._t0 = 0.0
        self.url = ""
        # counters, for tests
        self.connections = 0
        self.streams_started = 0
        self.streams_completed = 0
        self.bad_frames = 0

    # ------------------------------------------------------------------ lifecycle

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/chat", self._handle)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0, *,
                    ssl_context: ssl.SSLContext | None = None) -> str:
        """Listen on ``host:port`` (0 = a free port); TLS (``wss://``) when ``ssl_context``."""
        self._t0 = time.perf_counter()
        self._runner = web.AppRunner(self.app(), handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=4096, reuse_address=True, ssl_context=ssl_context)
        await site.start()
        # the bound port (port 0 = any free one) is only known from the listening socket
        bound_port = self._runner.addresses[0][1]
        self.url = f"{'wss' if ssl_context else 'ws'}://{host}:{bound_port}/v2/chat"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> MockServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ protocol

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.connections += 1
        refused = self._faults.refuse_upgrade()
        if refused:
            return web.Response(status=refused, text="refused by mock fault model")
        delay = self._faults.handshake_delay_s()
        if delay:
            await asyncio.sleep(delay)
        ws = web.WebSocketResponse(autoping=True, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        keys = self.config.api_keys
        if keys and request.query.get("apikey", "") not in keys:
            await ws.send_str(encode_server_event("error", {"error": "invalid api key"}))
            await ws.close(code=CLOSE_BAD_KEY, message=b"invalid api key")
            return ws
        await ws.send_str(_AUTH_FRAME)
        streams: set[asyncio.Task[None]] = set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        self.bad_frames += 1
                        await ws.send_str(
                            encode_server_event("error", {"error": "binary frames are not supported"})
                        )
                    continue
                try:
                    event = decode_client_frame(msg.data)
                except RemoteProtocolError as exc:
                    self.bad_frames += 1
                    await ws.send_str(encode_server_event("error", {"error": str(exc)}))
                    continue
                if isinstance(event, Ping):
                    await ws.send_str(_PONG_FRAME)
                elif isinstance(event, SetModel):
                    await ws.send_str(encode_server_event("set-model-complete", {"model": event.model}))
                elif isinstance(event, GenRequest):
                    task = asyncio.create_task(self._stream(ws, request, event))
                    streams.add(task)
                    task.add_done_callback(streams.discard)
        finally:
            for task in list(streams):
                task.cancel()
            for task in list(streams):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        return ws

    async def _stream(self, ws: web.WebSocketResponse, request: web.Request, gen: GenRequest) -> None:
        self.streams_started += 1
        n = next(self._ids)
        ttft_ms, chunks, gap_ms = self.config.model.plan(self._rng, len(gen.prompt))
        fault = self._faults.stream_fault(chunks)
        try:
            if fault.kind == "error_instead":
                await ws.send_str(encode_server_event("error", {"error": "mock: generation failed"}))
                return
            if self._slots is not None:
                await self._slots.acquire()
            self._active += 1
            try:
                await ws.send_str(
                    encode_server_event("conv-message", {"conversationId": f"c-{n}", "messageId": f"m-{n}"})
                )
                start = time.perf_counter()
                deadline = start + ttft_ms / 1000.0
                model = self.config.model
                for i in range(chunks):
                    deadline += self._faults.stall_s(deadline - self._t0)
                    await _sleep_until(deadline)
                    if fault.kind and i == fault.at_chunk and await _inject(fault, ws, request):
                        return
                    # A decode step cannot start before the previous token went out: a chunk
                    # sent late pushes the next one back (no catch-up burst), so every gap is
                    # >= the model's gap; the drift is only the wake-up overshoot (~µs).
                    deadline = max(deadline, time.perf_counter())
                    await ws.send_str(_CHUNK_FRAMES[i % len(_CHUNK_FRAMES)])
                    deadline += gap_ms * model.gap_factor(self._active) / 1000.0
                if fault.kind == "no_stop":
                    return
                await ws.send_str(_STOP_FRAME)
                self.streams_completed += 1
            finally:
                self._active -= 1
                if self._slots is not None:
                    self._slots.release()
        except (ConnectionResetError, RuntimeError):
            # the client went away mid-stream: nothing to send to
            return


async def _inject(fault: StreamFault, ws: web.WebSocketResponse, request: web.Request) -> bool:
    """Perform a mid-stream fault; True when the stream ends with it."""
    kind = fault.kind
    if kind == "abrupt_close":
        # no close frame: drop the TCP connection under the WebSocket
        if request.transport is not None:
            request.transport.abort()
        return True
    if kind == "close_code":
        await ws.close(code=fault.code, message=b"mock fault")
        return True
    if kind == "malformed_frame":
        await ws.send_str('{"event": "message", "data": {"output": "trunc')
        return False
    if kind == "error_mid_stream":
        await ws.send_str(encode_server_event("error", {"error": "mock: generation aborted"}))
        return True
    if kind == "error_then_late":
        # PROTOCOL.md does not promise silence after `error`: the rest of the answer follows
        await ws.send_str(encode_server_event("error", {"error": "mock: upstream hiccup"}))
        return False
    if kind == "unknown_event":
        await ws.send_str(encode_server_event("tool-call", {"name": "get_weather", "arguments": {"city": "Oslo"}}))
        return False
    return False


def mock_chunk_chars(chunks: int) -> int:
    """Characters the mock streams for ``chunks`` chunks (for tests)."""
    return sum(_CHUNK_CHARS[i % len(_CHUNK_CHARS)] for i in range(chunks))
