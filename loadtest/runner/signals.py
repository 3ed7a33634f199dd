"""The one signal relay of a run: SIGINT/SIGTERM reach the fleet, whatever backend runs it.

First signal: :meth:`~loadtest.runner.fleet.Fleet.stop` (stop starting work, drain what is in
flight); second: :meth:`~loadtest.runner.fleet.Fleet.abort` (end the drain). The handlers are the
running loop's (``add_signal_handler``); the previous ones come back after, since
``remove_signal_handler`` alone would leave the default instead of the CLI's guard
(:mod:`loadtest.cli.entry`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from typing import Any, Protocol

__all__ = ["SignalRelay"]


class _Stoppable(Protocol):
    def stop(self) -> None: ...

    def abort(self) -> None: ...


class SignalRelay:
    """Counts the signals of a run and relays them to ``target``."""

    def __init__(self, target: _Stoppable) -> None:
        self.target = target
        self.seen = 0

    def __call__(self) -> None:
        self.seen += 1
        self.target.stop() if self.seen == 1 else self.target.abort()

    @contextlib.contextmanager
    def installed(self) -> Iterator[SignalRelay]:
        """SIGINT/SIGTERM call this relay on the running loop for the block."""
        loop = asyncio.get_running_loop()
        installed: dict[signal.Signals, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self)
                installed[sig] = previous
        try:
            yield self
        finally:
            for sig, previous in installed.items():
                loop.remove_signal_handler(sig)
                if previous is not None:
                    signal.signal(sig, previous)
