"""Time, injected: one object gives the current time and sleeps until a deadline.

Every timestamp the engine takes and every wait it makes goes through a :class:`Clock`
(trio's ``Clock`` / ``MockClock`` idea): :class:`RealClock` in a run, the virtual clock of
:mod:`loadtest.testing` in the fast tests, which drive the open-loop dispatcher, ramps,
pacing and stream timeouts deterministically in virtual time.

Rules (DESIGN.md): timestamps are ``time.perf_counter_ns()`` (never ``loop.time()``, which
uvloop caches per iteration at 1 ms resolution); wait *until* a deadline, never *for* an
interval, so that errors do not accumulate. :meth:`LoopClock.sleep_until` is the one
sleep-until loop of the package (it was written out by hand in five places). Wall-clock time
(``wall_ns``) is only for stamps in files and for the common start of several workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol

__all__ = ["Clock", "LoopClock", "RealClock"]

_NS = 1_000_000_000
#: below this, one plain timer (re-checked after it fires); above, a stop also wakes the sleeper
_WATCH_NS = 50_000_000


class Clock(Protocol):
    """Monotonic time in integer nanoseconds, wall-clock stamps, a sleep until a deadline."""

    def now_ns(self) -> int: ...

    def wall_ns(self) -> int: ...

    async def sleep_until(self, deadline_ns: int, stop: asyncio.Event | None = None) -> bool:
        """True once ``now_ns() >= deadline_ns`` (at once if it already is); False as soon as
        ``stop`` is set first."""
        ...


class LoopClock:
    """A clock whose waits are the running event loop's timers; subclasses give ``now_ns``."""

    #: the last stretch before a deadline is spent polling the loop instead of on a timer
    poll_ns = 0

    def now_ns(self) -> int:
        raise NotImplementedError

    @staticmethod
    def wall_ns() -> int:
        """Wall-clock ns since the epoch: for stamps, never for intervals."""
        return time.time_ns()

    async def sleep_until(self, deadline_ns: int, stop: asyncio.Event | None = None) -> bool:
        """Sleep until ``now_ns() >= deadline_ns``; False if ``stop`` was set first.

        A deadline already reached counts as reached even if ``stop`` is set meanwhile: a run
        sets its stop at the end of the duration, and an arrival due before the end that a busy
        loop wakes late for must still be offered (and its lateness measured), not lost. Short
        waits are one timer, re-checked after it fires (uvloop timers fire up to 1 ms early);
        long ones also wake at once on a stop.
        """
        while True:
            remaining = deadline_ns - self.now_ns()
            if remaining <= 0:
                return True
            if stop is not None and stop.is_set():
                return False
            if remaining < self.poll_ns:
                await asyncio.sleep(0)
            elif stop is None or remaining < _WATCH_NS:
                await asyncio.sleep(remaining / _NS)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout((remaining - _WATCH_NS // 2) / _NS):
                        await stop.wait()


class RealClock(LoopClock):
    """``time.perf_counter_ns`` and the running event loop's timers."""

    # uvloop keeps timers in whole milliseconds and rounds a wait under 0.5 ms to one loop
    # iteration: the last half millisecond before a deadline is spent polling the loop (which
    # keeps serving the connections meanwhile), so a deadline is met within ~0.1 ms, not ~1 ms.
    poll_ns = 500_000

    @staticmethod
    def now_ns() -> int:
        return time.perf_counter_ns()
