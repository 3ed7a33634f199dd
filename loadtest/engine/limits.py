"""What this machine can do, checked before anything connects (issue 10).

Every WebSocket connection holds a file descriptor. A load that needs more descriptors than
the process may open would fail mid-run with ``EMFILE`` ("too many open files") counted as
connect errors against the target; it is refused (or the limit raised) up front instead.

Policy: with ``peak`` connections the run needs ``peak + HEADROOM`` descriptors (the headroom
covers the interpreter, log files, the run directory, the mock's pipes). Compared with
``RLIMIT_NOFILE``:

- needed <= soft limit: nothing to do;
- soft < needed <= hard: the soft limit is raised to ``needed`` (any process may raise its
  soft limit up to the hard one) and a note says so; ``validate`` only says it would be;
- needed > hard: :class:`~loadtest.errors.BadInput` (exit 2) saying how many are needed,
  the hard limit, and ``ulimit -n N``.

Where ``resource`` does not exist (Windows) nothing is checked.
"""

from __future__ import annotations

import os

from loadtest.errors import BadInput

__all__ = ["HEADROOM", "available_cores", "ensure_open_files"]

#: descriptors kept for everything but the connections
HEADROOM = 64


def ensure_open_files(peak_connections: int, *, apply: bool = True) -> str | None:
    """Make sure ``peak_connections`` connections can be open at once; see the module docstring.

    Returns a note (one line) when the soft limit was raised (``apply``) or would be (not
    ``apply``, as in ``loadtest validate``), else None. Raises BadInput when the hard limit
    is too low.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    needed = peak_connections + HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    if soft == unlimited or needed <= soft:
        return None
    if hard != unlimited and needed > hard:
        raise BadInput(
            f"this load opens up to {peak_connections:,} connections and needs {needed:,} file "
            f"descriptors, but this process may open {soft:,} (hard limit {hard:,}): raise it with "
            f"`ulimit -n {needed}` (above the hard limit {hard:,} only root can, e.g. in "
            "/etc/security/limits.conf), or lower the load"
        )
    if not apply:
        return (f"note: this load needs {needed:,} file descriptors; the soft limit is {soft:,}, "
                f"`loadtest run` will raise it to {needed:,} (hard limit {hard if hard != unlimited else 'unlimited'})")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    except (ValueError, OSError) as exc:
        raise BadInput(
            f"this load needs {needed:,} file descriptors and the soft limit {soft:,} could not be "
            f"raised ({exc}): run `ulimit -n {needed}` first, or lower the load"
        ) from None
    return f"note: raised the open-file limit from {soft:,} to {needed:,} for {peak_connections:,} connections"


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
