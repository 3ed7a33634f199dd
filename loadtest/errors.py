"""One error tree for the whole package; every class carries its exit code.

    LoadtestError                    exit 70 (a bug, unless a subclass says otherwise)
    ├── BadInput                     exit 2  (scenario files, flags, arguments)
    │   └── ScenarioError            exit 2  (carries the key path and the line)
    ├── TargetUnreachable            exit 3  (no connection could be made at all)
    ├── WorkersUnavailable           exit 3  (the workers could not be placed: a Ray cluster
    │                                         without the CPUs asked for)
    ├── RunInterrupted               exit 4  (SIGINT/SIGTERM: partial results written)
    ├── OutputError                  exit 74 (the run directory could not be written in full:
    │                                         disk full, I/O error; what was written is kept)
    └── ConnectionFailure            (per-request failures, mapped to error categories;
        │                             they never end a run by themselves)
        ├── ConnectFailed            category "connect"
        ├── AuthFailed               category "auth" (the key was refused)
        │   └── AuthTimeout          category "auth" (no auth-connect-complete in time)
        ├── Disconnected             category "disconnect"
        ├── ServerError              category "server_error"
        ├── RequestTimeout           category "timeout"
        └── RemoteProtocolError      category "protocol" (the peer sent something malformed)

Exit codes follow DESIGN.md: 0 passed, 1 an SLO failed, 2 bad input, 3 target
unreachable, 4 interrupted, 74 output failed (sysexits' EX_IOERR). The SLO failure is not an exception: a run that
measured what it should have is a result, not an error.
"""

from __future__ import annotations

import re

__all__ = [
    "ERROR_CATEGORIES",
    "EXIT_BAD_INPUT",
    "EXIT_BUG",
    "EXIT_INCOMPLETE",
    "EXIT_INCONCLUSIVE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_OUTPUT",
    "EXIT_SLO_FAILED",
    "EXIT_UNREACHABLE",
    "AuthFailed",
    "AuthTimeout",
    "BadInput",
    "ConnectFailed",
    "ConnectionFailure",
    "Disconnected",
    "LoadtestError",
    "OutputError",
    "RemoteProtocolError",
    "RequestTimeout",
    "RunInterrupted",
    "ScenarioError",
    "ServerError",
    "TargetUnreachable",
    "WorkersUnavailable",
    "caused_by_interrupt",
    "error_for",
    "redact",
]

EXIT_OK = 0
EXIT_SLO_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 4
EXIT_INCOMPLETE = 5  # a worker was lost: its data up to the loss merged
EXIT_INCONCLUSIVE = 6  # a sweep ended with no failing level bounding its answer (saturated, budget)
EXIT_OUTPUT = 74  # sysexits.h EX_IOERR
EXIT_BUG = 70

#: Failure categories of DESIGN.md, in the order reports show them.
ERROR_CATEGORIES: tuple[str, ...] = (
    "auth",
    "connect",
    "disconnect",
    "server_error",
    "timeout",
    "protocol",
)


class LoadtestError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code: int = EXIT_BUG

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BadInput(LoadtestError):
    """The user gave us something we cannot run: fix the input and retry."""

    exit_code = EXIT_BAD_INPUT


class ScenarioError(BadInput):
    """A scenario file is wrong. ``where`` is ``file:line: key.path`` when known."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where


class TargetUnreachable(LoadtestError):
    """No connection to the target could be made, even after bounded retries."""

    exit_code = EXIT_UNREACHABLE


class WorkersUnavailable(LoadtestError):
    """The run's workers could not be placed (nothing ran, nothing was measured)."""

    exit_code = EXIT_UNREACHABLE


class RunInterrupted(LoadtestError):
    """The run was cut short by a signal; what was measured has been written."""

    exit_code = EXIT_INTERRUPTED


class OutputError(LoadtestError):
    """Writing the run directory failed mid-way (ENOSPC, EIO, ...): what was written is kept."""

    exit_code = EXIT_OUTPUT


class ConnectionFailure(LoadtestError):
    """A failure of one connection or one request; ``category`` names it in reports."""

    category: str = "unknown"


class ConnectFailed(ConnectionFailure):
    category = "connect"


class AuthFailed(ConnectionFailure):
    category = "auth"


class AuthTimeout(AuthFailed):
    """The upgrade succeeded but ``auth-connect-complete`` never came: not a refused key."""


class Disconnected(ConnectionFailure):
    category = "disconnect"


class ServerError(ConnectionFailure):
    """The server sent an ``error`` event."""

    category = "server_error"


class RequestTimeout(ConnectionFailure):
    category = "timeout"


class RemoteProtocolError(ConnectionFailure):
    """The peer sent a frame we cannot understand. ``frame`` is the raw frame, truncated."""

    category = "protocol"
    MAX_FRAME_CHARS = 200

    def __init__(self, message: str, *, frame: str | bytes = "") -> None:
        text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
        if len(text) > self.MAX_FRAME_CHARS:
            text = text[: self.MAX_FRAME_CHARS] + f"…(+{len(text) - self.MAX_FRAME_CHARS} chars)"
        self.frame = text
        super().__init__(f"{message}: {text!r}" if text else message)


_APIKEY_RE = re.compile(r"(apikey=)[^&\s'\"<>]*", re.IGNORECASE)
_ANYWHERE_LEN = 12


def error_for(exit_code: int, message: str) -> LoadtestError:
    """The error a worker elsewhere reported as ``(exit_code, message)``, as the class that
    carries that code here (a worker process or Ray actor sends plain data, not exceptions)."""
    by_code: dict[int, type[LoadtestError]] = {
        EXIT_BAD_INPUT: BadInput, EXIT_UNREACHABLE: TargetUnreachable, EXIT_OUTPUT: OutputError,
        EXIT_INTERRUPTED: RunInterrupted,
    }
    return by_code.get(exit_code, LoadtestError)(message)


def redact(text: str, secret: str | None = None) -> str:
    """Remove a secret from free text (server messages, exception texts).

    Every ``apikey=…`` value is masked, whatever the key. A literal occurrence of ``secret``
    elsewhere is masked as a whole token: not inside a longer alphanumeric run, so that a
    short key (``k``, ``test``) never rewrites ordinary words (issue 10: with key ``k``,
    ``chunks_per_s`` became ``chun***s_per_s``). A key of ``_ANYWHERE_LEN`` characters or
    more is masked wherever it occurs: no ordinary word collides with it, and a server that
    glues it to other text must not leak it. Structured output (summary.json, scenario.yaml)
    is never passed through here: it is built from data that holds no key.
    """
    text = _APIKEY_RE.sub(r"\1***", text)
    if secret:
        if len(secret) >= _ANYWHERE_LEN:
            text = text.replace(secret, "***")
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
    return text


def caused_by_interrupt(exc: BaseException | None) -> bool:
    """``exc`` is a KeyboardInterrupt, or an error raised while handling one or from one (pydantic
    wraps a signal that lands while it builds a model class): the user's Ctrl-C, exit 4."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
