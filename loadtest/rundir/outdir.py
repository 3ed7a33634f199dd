"""Writing where the user asked, with the standard library only: the one atomic file writer,
the probe every command runs on its output before any work, and signals held while files are
written. Imports neither numpy nor pydantic, so a Ctrl-C at start-up can still be recorded
(:mod:`loadtest.rundir.noresult`) while the heavy modules load.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from loadtest.errors import BadInput, OutputError

__all__ = ["prepare_output_dir", "prepare_output_file", "signals_ignored", "write_atomic"]


@contextlib.contextmanager
def signals_ignored(*, deliver: bool = True) -> Iterator[list[int]]:
    """SIGINT/SIGTERM held for the block: while files are written, a Ctrl-C then cannot leave a
    run directory without its summary.json. The signals that came are listed (yielded). With
    ``deliver`` the first is delivered once the block ends (to the handler that was in place:
    the command line's, a running study's), never dropped: a study whose step was writing its
    report when the user pressed Ctrl-C stops after that step. Without, the caller acts on the
    list itself (Ray's start: stop what it started first). Outside the main thread (signals
    cannot be handled there) the block runs as it is."""
    came: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield came
        return
    previous = {sig: signal.signal(sig, lambda s, _f: came.append(s)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield came
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if came and deliver:
            signal.raise_signal(came[0])


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and
    ``os.replace``: a reader (or a crash) never sees half a file. The one writer of every
    file of a run directory, report, comparison and sweep.

    Raises :class:`OutputError` (exit 74) when the write fails (disk full, I/O error, …),
    with the ``OSError`` as its cause; the previous file at ``path``, if any, is left as it was.
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; run directories and reports are meant to be shared
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise


def prepare_output_dir(path: Path, *, what: str = "run directory") -> None:
    """Check, before anything connects, that the directory ``path`` can be written: the one probe
    of every command that writes a directory (``run``, ``ab``, ``calibrate``, ``sweep``).

    Creates ``path`` (and its parents), writes and removes a probe file. A directory that exists
    must be empty: a second study would mix its files with the first's. Raises
    :class:`BadInput` (exit 2) with one line naming the directory and the reason.
    """
    try:  # a name the file system refuses (too long) raises here, before anything is made
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as exc:
        raise BadInput(f"{path}: cannot write the {what} here ({exc.strerror or exc})") from None
    if exists and not is_dir:
        raise BadInput(f"{path}: exists and is not a directory; choose another --out")
    if is_dir:
        try:
            with os.scandir(path) as listing:
                entries = next(listing, None)
        except OSError as exc:
            raise BadInput(f"{path}: cannot list the output directory ({exc.strerror or exc})") from None
        if entries is not None:
            raise BadInput(f"{path}: the output directory is not empty; a {what} is written fresh "
                           "(choose another --out, or empty it)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        _probe(path)
    except OSError as exc:
        raise BadInput(f"{path}: cannot write the {what} here ({exc.strerror or exc})") from None


def prepare_output_file(path: Path, *, what: str = "report") -> None:
    """Check before any work that the file ``path`` can be written (its directory created if
    missing, a probe file written and removed there); BadInput (exit 2) in one line if not."""
    try:  # a name the file system refuses (too long) raises here, before anything is made
        is_dir = path.is_dir()
        parent = next((p for p in path.parents if p.exists()), None)
    except OSError as exc:
        raise BadInput(f"{path}: cannot write the {what} there ({exc.strerror or exc})") from None
    if is_dir:
        raise BadInput(f"{path}: is a directory; give a file name for the {what}")
    if parent is not None and not parent.is_dir():
        raise BadInput(f"{path}: cannot write the {what} there, {parent} is not a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _probe(path.parent)
    except OSError as exc:
        raise BadInput(f"{path}: cannot write the {what} there ({exc.strerror or exc})") from None


def _probe(directory: Path) -> None:
    fd, probe = tempfile.mkstemp(dir=directory, prefix=".probe.", suffix=".tmp")
    try:
        os.write(fd, b"probe")
    finally:
        os.close(fd)
        os.unlink(probe)
