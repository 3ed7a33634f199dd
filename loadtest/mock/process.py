"""The embedded mock as a process: serving until told to stop, and the child-process handle
the coordinator starts it with (so the mock does not share the generator's CPU).

The child dies with its parent even when the parent is killed (SIGKILL): a parent-death
signal on Linux, and EOF on a stdin pipe only the parent holds, everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from loadtest.errors import BadInput, TargetUnreachable
from loadtest.mock.latency import MockModel
from loadtest.mock.server import MockConfig, MockServer

__all__ = ["MockProcess", "model_args", "read_key_file", "serve_forever", "stop_line"]


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
    """Serve until cancelled or SIGTERM; prints the URL on one line of stdout when ``announce``,
    and when it stops, one more line with the streams completed and abandoned (:func:`stop_line`).

    ``exit_with_parent``: also stop when stdin reaches EOF, and (Linux) when the parent
    process dies (see :func:`_die_with_parent`). SIGTERM stops it as cleanly as Ctrl-C does
    (the default action would kill it before it could count); call this on the main thread.
    """
    _raise_nofile()
    stop = asyncio.Event()
    if exit_with_parent:
        _die_with_parent(stop)
    loop = asyncio.get_running_loop()
    on_term = False
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        on_term = True
    server = MockServer(config)
    url = await server.start(host, port, ssl_context=ssl_context)
    if announce:
        print(url, flush=True)
    try:
        await stop.wait()
    finally:
        if on_term:
            loop.remove_signal_handler(signal.SIGTERM)
        await server.stop()
        if announce:
            with contextlib.suppress(OSError):  # the parent, and our stdout, may be gone
                print(stop_line(server), flush=True)


def stop_line(server: MockServer) -> str:
    """What ``loadtest mock`` prints when it stops: how its streams ended."""
    return (f"mock stopped: {server.streams_completed} streams completed, {server.streams_abandoned} abandoned "
            f"by their client, {server.streams_started} started")


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
    if model.words_per_chunk != 1:
        args += ["--words-per-chunk", str(model.words_per_chunk)]
    if model.turn_ms:
        args += ["--turn-ms", str(model.turn_ms)]
    for key in api_keys:
        args += ["--api-key", key]
    if faults:
        args += ["--faults", json.dumps(faults)]
    return args
