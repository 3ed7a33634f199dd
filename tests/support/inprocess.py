"""The ``loadtest`` command line run inside the test process: for the many refusals that read
files only (a damaged run directory, calibration.json, an unknown option), where a subprocess
per case would cost a second of interpreter start-up each. The path is the console's own
(``loadtest.cli.main.main``: the mapping of errors to exit codes); only the entry point's
signal guard is left out.

``main()`` ignores SIGINT/SIGTERM as it exits (so that a second Ctrl-C cannot turn exit 4 into
130): the handlers of the test process are put back after each call.
"""

from __future__ import annotations

import contextlib
import io
import signal
import sys
from dataclasses import dataclass
from os import PathLike

from loadtest.cli import main as cli

__all__ = ["Outcome", "run_main"]


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        """The non-blank lines of stderr."""
        return [line for line in self.err.splitlines() if line.strip()]


def run_main(*args: str | PathLike[str]) -> Outcome:
    """``loadtest ARGS`` in this process: its exit code, stdout and stderr."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    argv = sys.argv
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["loadtest", *(str(a) for a in args)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    finally:
        sys.argv = argv
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return Outcome(code, out.getvalue(), err.getvalue())
