"""Test doubles shipped with the product: an in-process mock on port 0, and virtual time.

    async with running_mock(ttft_ms=100, gap_ms=10, chunks=20) as server:
        url = server.url      # ws://127.0.0.1:PORT/v2/chat

For a mock in its own process (benchmarks, ``loadtest run``) use
:class:`loadtest.mock.MockProcess`.

Virtual time (trio's ``MockClock(autojump_threshold=0)``, on asyncio)::

    result = run_virtual(lambda clock: my_coroutine(clock))

runs the coroutine on an event loop whose clock stands still while anything is ready to run
and jumps straight to the next timer when nothing is: ``asyncio.sleep``, ``asyncio.timeout``
and :meth:`VirtualClock.sleep_until` all follow it. A ten-second schedule then takes as long as
its callbacks take to run, and every timestamp is exact. Only for code whose every wait is a
timer or an event set by other tasks (no real sockets: a socket that is merely slow would look
idle, and time would jump past it).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import selectors
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar

from loadtest.clock import LoopClock
from loadtest.mock.faults import parse_faults
from loadtest.mock.latency import MockModel, parse_dist
from loadtest.mock.process import MockProcess
from loadtest.mock.server import MockConfig, MockServer

__all__ = ["MockProcess", "MockServer", "VirtualClock", "VirtualLoop", "make_mock_config", "run_virtual",
           "running_mock"]

T = TypeVar("T")


def make_mock_config(
    *,
    ttft_ms: Any = 100,
    gap_ms: Any = 10,
    chunks: Any = 20,
    capacity: int | None = None,
    gap_slowdown: float | None = None,
    faults: dict[str, Any] | None = None,
    api_keys: Iterable[str] = (),
    seed: int = 0,
) -> MockConfig:
    return MockConfig(
        model=MockModel(
            ttft_ms=parse_dist(ttft_ms, name="ttft_ms"),
            gap_ms=parse_dist(gap_ms, name="gap_ms"),
            chunks=parse_dist(chunks, name="chunks"),
            capacity=capacity,
            gap_slowdown=gap_slowdown,
        ),
        faults=parse_faults(faults),
        api_keys=frozenset(api_keys),
        seed=seed,
    )


@contextlib.asynccontextmanager
async def running_mock(**kwargs: Any) -> AsyncIterator[MockServer]:
    """An in-process mock on 127.0.0.1, a free port; keyword args as :func:`make_mock_config`."""
    server = MockServer(make_mock_config(**kwargs))
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.stop()


class _JumpSelector(selectors.BaseSelector):
    """A real selector that, when nothing is ready, advances the loop's virtual time by the
    wait the loop asked for instead of waiting."""

    def __init__(self, loop: VirtualLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            # no timer is pending and nothing is ready: every task waits for something that
            # will never come (in virtual time there is nobody else to wake them)
            raise RuntimeError("virtual loop: every task is waiting and no timer is pending (deadlock)")
        self._loop.jump(timeout)
        return []


class VirtualLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on virtual time (integer ns): it jumps to the next timer when idle."""

    def __init__(self) -> None:
        self._virtual_ns = 0
        super().__init__(selector=_JumpSelector(self))

    def time(self) -> float:
        return self._virtual_ns / 1e9

    def now_ns(self) -> int:
        return self._virtual_ns

    def advance_ns(self, ns: int) -> None:
        self._virtual_ns += ns

    def jump(self, timeout_s: float) -> None:
        """Idle: go to the next timer. Its float deadline is rounded to the nearest ns (not
        up), so that ``sleep_until(deadline_ns)`` lands on the deadline itself, not 1 ns after."""
        scheduled = getattr(self, "_scheduled", None)  # asyncio's timer heap (when: float s)
        target = round(scheduled[0].when() * 1e9) if scheduled else self._virtual_ns + math.ceil(timeout_s * 1e9)
        self._virtual_ns = max(self._virtual_ns + 1, target)


class VirtualClock(LoopClock):
    """The engine's :class:`~loadtest.clock.Clock` on a :class:`VirtualLoop` (its
    ``sleep_until`` is the real clock's, on virtual timers; no polling: nothing would advance)."""

    def __init__(self, loop: VirtualLoop) -> None:
        self._loop = loop

    def now_ns(self) -> int:
        return self._loop.now_ns()


def run_virtual(main: Callable[[VirtualClock], Coroutine[Any, Any, T]]) -> T:
    """Run ``main(clock)`` to completion on a fresh :class:`VirtualLoop`; returns its result."""
    loop = VirtualLoop()
    clock = VirtualClock(loop)
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        return runner.run(main(clock))
