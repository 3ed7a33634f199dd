"""Time, injected: one object gives the current time and sleeps until a deadline.

Every timestamp the engine takes and every wait it makes goes through a :class:`Clock`
(trio's ``Clock`` / ``MockClock`` idea): :class:`RealClock` in a run, the virtual clock of
:mod:`loadtest.testing` in the fast tests, which drive the open-loop dispatcher, ramps,
pacing and stream timeouts deterministically in virtual time.

Rules (DESIGN.md): timestamps are ``time.perf_counter_ns()`` (never ``loop.time()``, which
uvloop caches per iteration at 1 ms resolution); wait *until* a deadline, never *for* an
interval, so that errors do not accumulate.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "RealClock"]

_NS = 1_000_000_000
# uvloop keeps timers in whole milliseconds and rounds a wait under 0.5 ms to one loop
# iteration: the last half millisecond before a deadline is spent polling the loop (which
# keeps serving the connections meanwhile), so a deadline is met within ~0.1 ms, not ~1 ms.
_POLL_NS = 500_000


class Clock(Protocol):
    """Monotonic time in integer nanoseconds, and a sleep until a deadline on that scale."""

    def now_ns(self) -> int: ...

    async def sleep_until(self, deadline_ns: int) -> None:
        """Return once ``now_ns() >= deadline_ns`` (at once if it already is)."""
        ...


class RealClock:
    """``time.perf_counter_ns`` and the running event loop's timers."""

    __slots__ = ()

    @staticmethod
    def now_ns() -> int:
        return time.perf_counter_ns()

    async def sleep_until(self, deadline_ns: int) -> None:
        # re-check after every wake-up: uvloop timers fire up to 1 ms early
        while (remaining := deadline_ns - time.perf_counter_ns()) > 0:
            await asyncio.sleep(0 if remaining < _POLL_NS else remaining / _NS)
