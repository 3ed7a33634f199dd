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
import json
import os
import random
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from loadtest.errors import BadInput, RemoteProtocolError, TargetUnreachable
from loadtest.mock.faults import FaultModel, FaultPlan, StreamFault
from loadtest.mock.model import MockModel
from loadtest.protocol import GenRequest, Ping, SetModel, decode_client_frame, encode_server_event

__all__ = ["MockConfig", "MockProcess", "MockServer", "read_key_file", "serve_forever"]

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


def _raise_nofile() -> None:
    """One fd per connection: lift the soft RLIMIT_NOFILE (often 1024) to the hard limit."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def read_key_file(path: str) -> list[str]:
    """Accepted keys from a file, one per line; blank lines and ``#`` lines are ignored."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise BadInput(f"cannot read the key file {path}: {reason or exc}") from None
    keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise BadInput(f"the key file {path} holds no key")
    return keys


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(stop: asyncio.Event) -> None:
    """Make this mock end when the process that started it ends, even by SIGKILL (issue 10).

    Two mechanisms. Linux: ``prctl(PR_SET_PDEATHSIG, SIGTERM)``: the kernel sends SIGTERM
    when the parent dies (it was set here, after exec, so a parent that died before this
    line is caught by the other one). Portable: the parent holds the write end of our stdin
    and never writes; EOF on stdin means it closed it or died, and the mock stops.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    loop = asyncio.get_running_loop()

    def watch() -> None:
        with contextlib.suppress(OSError, ValueError):
            while os.read(sys.stdin.fileno(), 4096):
                pass
        with contextlib.suppress(RuntimeError):  # the loop is already closed: nothing to stop
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch, name="mock-parent-watch", daemon=True).start()


async def serve_forever(config: MockConfig, host: str, port: int, *, announce: bool = True,
                        ssl_context: ssl.SSLContext | None = None, exit_with_parent: bool = False) -> None:
    """Serve until cancelled; prints the URL on one line of stdout when ``announce``.

    ``exit_with_parent``: also stop when stdin reaches EOF, and (Linux) when the parent
    process dies (see :func:`_die_with_parent`).
    """
    _raise_nofile()
    stop = asyncio.Event()
    if exit_with_parent:
        _die_with_parent(stop)
    server = MockServer(config)
    url = await server.start(host, port, ssl_context=ssl_context)
    if announce:
        print(url, flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


class MockProcess:
    """The mock in a child process (so it does not share the generator's CPU).

    ``with MockProcess(args) as url:`` starts ``python -m loadtest mock ... --port 0``,
    waits for the URL line, and terminates the process on exit. The child ends with us even
    when we are killed (SIGKILL): it runs with ``--exit-with-parent`` and a pipe as stdin
    whose write end only we hold.
    """

    def __init__(self, args: Iterable[str] = (), *, host: str = "127.0.0.1", timeout_s: float = 20.0) -> None:
        self.args = list(args)
        self.host = host
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> str:
        cmd = [sys.executable, "-m", "loadtest", "mock", "--host", self.host, "--port", "0",
               "--exit-with-parent", *self.args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + self.timeout_s
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().strip()
            if line.startswith(("ws://", "wss://")) or self.proc.poll() is not None:
                break
        if not line.startswith(("ws://", "wss://")):
            err = ""
            self._terminate()
            if self.proc.stderr is not None:
                err = self.proc.stderr.read()[-2000:]
            self.__exit__()
            raise TargetUnreachable(f"the embedded mock did not start: {err.strip() or line!r}")
        self.url = line
        return line

    def _terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __exit__(self, *exc: object) -> None:
        self._terminate()
        # close our ends of the pipes, or they leak (ResourceWarning, an error under -W error)
        if self.proc is not None:
            for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()


def model_args(model: MockModel, *, seed: int = 0, api_keys: Iterable[str] = (), faults: dict[str, Any] | None = None) -> list[str]:
    """The ``loadtest mock`` arguments that reproduce ``model`` in another process."""
    args = [
        "--ttft-ms", json.dumps(model.ttft_ms.to_spec()),
        "--gap-ms", json.dumps(model.gap_ms.to_spec()),
        "--chunks", json.dumps(model.chunks.to_spec()),
        "--seed", str(seed),
    ]
    if model.capacity:
        args += ["--capacity", str(model.capacity)]
    if model.gap_slowdown is not None:
        args += ["--gap-slowdown", str(model.gap_slowdown)]
    if model.prefill_ms_per_kchar:
        args += ["--prefill-ms-per-kchar", str(model.prefill_ms_per_kchar)]
    for key in api_keys:
        args += ["--api-key", key]
    if faults:
        args += ["--faults", json.dumps(faults)]
    return args
