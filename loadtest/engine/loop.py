"""The event loop a run, a worker process or the mock runs on: uvloop where it is installed
(every platform but Windows), else the standard asyncio loop; chosen by a loop factory
(``asyncio.Runner(loop_factory=...)``, uvicorn's way), never a global policy.

The loop a worker ran on is recorded per worker (``WorkerHealth.loop``) and for the run
(summary.json ``generator.loop``): the figures of the standard loop (timer accuracy, CPU per
frame; BENCHMARKS.md) are not uvloop's, so a run says which it had."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["FALLBACK_NOTE", "loop_factory", "loop_name", "new_runner", "run_loop"]

T = TypeVar("T")

#: appended to the loop's name where uvloop is not installed (the run's generator section)
FALLBACK_NOTE = "uvloop not installed: the standard asyncio loop"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's ``new_event_loop``, or asyncio's where uvloop cannot be imported."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop.Loop``, or e.g. ``asyncio.unix_events._UnixSelectorEventLoop (uvloop not
    installed: …)``: what summary.json and the report name."""
    name = type(loop).__module__ + "." + type(loop).__name__
    return name if name.startswith("uvloop.") else f"{name} ({FALLBACK_NOTE})"


def new_runner() -> asyncio.Runner:
    """An ``asyncio.Runner`` on a new loop (for several ``run`` calls on one loop)."""
    return asyncio.Runner(loop_factory=loop_factory())


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a new loop, then close the loop."""
    with new_runner() as runner:
        return runner.run(coro)
