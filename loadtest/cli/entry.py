"""The console entry point: the interrupt guard goes in before anything heavy is imported.

Why (issue 10): a second Ctrl-C that lands while the first one is being handled (the mock
child being stopped, the interpreter shutting down) raised a second KeyboardInterrupt that
nothing caught, and Python exited 130 — a code the README does not list. The guard turns
the first SIGINT or SIGTERM outside a run into one KeyboardInterrupt (exit 4, see
``cli.main``) and ignores every later one. During a run the runner's own handlers take
over (first signal: stop and drain; second: stop at once) and put the guard back after.
Only the interpreter's own start-up, before this module runs, is unguarded (a few ms).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

__all__ = ["interrupt_guard", "main"]


def interrupt_guard(signum: int, frame: FrameType | None) -> None:
    """First signal: KeyboardInterrupt. From then on SIGINT/SIGTERM are ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGINT, interrupt_guard)
    signal.signal(signal.SIGTERM, interrupt_guard)
    try:
        from loadtest.cli.main import main as cli_main
    except BaseException as exc:  # a signal while the command line itself is imported: exit 4 too
        from loadtest.errors import EXIT_INTERRUPTED, caused_by_interrupt

        if not caused_by_interrupt(exc):
            raise
        sys.stderr.write("Interrupted.\n")
        sys.exit(EXIT_INTERRUPTED)
    cli_main()
