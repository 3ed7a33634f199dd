"""Virtual time for asyncio (trio's ``MockClock(autojump_threshold=0)``)::

    result = run_virtual(lambda clock: my_coroutine(clock))

runs the coroutine on an event loop whose clock stands still while anything is ready to run
and jumps straight to the next timer when nothing is: ``asyncio.sleep``, ``asyncio.timeout``
and :meth:`VirtualClock.sleep_until` all follow it. A ten-second schedule then takes as long as
its callbacks take to run, and every timestamp is exact. Only for code whose every wait is a
timer or an event set by other tasks (no real sockets: a socket that is merely slow would look
idle, and time would jump past it); :class:`~loadtest.testing.FakeWebSocket` is the peer that
fits.
"""

from __future__ import annotations

import asyncio
import math
import selectors
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from loadtest.clock import LoopClock

__all__ = ["VirtualClock", "VirtualLoop", "run_virtual"]

T = TypeVar("T")


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
