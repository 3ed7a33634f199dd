"""The event loop a run, a worker process or the mock runs on: uvloop, chosen by a loop factory
(``asyncio.Runner(loop_factory=...)``, uvicorn's way), never a global policy."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["new_runner", "run_loop"]

T = TypeVar("T")


def new_runner() -> asyncio.Runner:
    """An ``asyncio.Runner`` on a new uvloop loop (for several ``run`` calls on one loop)."""
    import uvloop

    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a new uvloop loop, then close the loop."""
    with new_runner() as runner:
        return runner.run(coro)
