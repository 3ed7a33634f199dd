"""Connecting to Ray for a run (``--backend ray``): the session, the environment its processes
inherit, and the check that every actor runs this coordinator's loadtest.

- **The session** (:func:`ray_session`): a cluster at ``--ray-address`` (or ``RAY_ADDRESS``) is
  connected to and never stopped; without one a local Ray is started and stopped. SIGINT and
  SIGTERM are held while Ray starts or stops: interrupted in the middle, ``ray.init`` left its
  node's processes running with no parent for a minute (and once crashed the interpreter).
- **The environment**: a local Ray's processes (and so the actors) inherit the coordinator's
  environment as it is when Ray starts. Only :data:`ENV_ALLOWED` (and ``RAY_*``, ``LC_*``)
  reach them; the rest, the API key's variable first, is hidden from Ray for the start. The key
  travels to each actor as an argument of its constructor, never in ``runtime_env``. A remote
  cluster's actors have its own hosts' environment.
- **Versions** (:func:`check_versions`): an actor on a host whose loadtest differs from the
  coordinator's ends the run with exit 3 naming both, rather than an import error deep in Ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from typing import Any

from loadtest.engine.limits import available_cores
from loadtest.errors import BadInput, WorkersUnavailable
from loadtest.rundir.outdir import signals_ignored

__all__ = ["ENV_ALLOWED", "check_versions", "local_version", "ray_session", "require_ray"]

#: environment variables a local Ray (and its actors) may inherit, besides RAY_* and LC_*
ENV_ALLOWED = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
    "PYTHONPATH", "PYTHONHOME", "PYTHONIOENCODING", "PYTHONUNBUFFERED", "VIRTUAL_ENV", "CONDA_PREFIX",
    "LD_LIBRARY_PATH", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "TOKENIZERS_PARALLELISM", "OMP_NUM_THREADS", "PYTHONHASHSEED", "PYTHONBREAKPOINT", "LOADTEST_RAY_READY_TIMEOUT",
})
_ENV_PREFIXES = ("RAY_", "LC_")


def local_version() -> str:
    """This host's loadtest version (what an actor reports to its coordinator)."""
    from loadtest.version import __version__

    return __version__


def check_versions(actors: Mapping[int, str], *, mine: str | None = None) -> None:
    """WorkersUnavailable (exit 3) when an actor runs another loadtest than the coordinator."""
    mine = mine or local_version()
    other = {i: v for i, v in sorted(actors.items()) if v != mine}
    if other:
        which = ", ".join(f"worker {i}: loadtest {v}" for i, v in other.items())
        raise WorkersUnavailable(f"the Ray workers' hosts run another loadtest than this coordinator "
                                 f"(loadtest {mine}; {which}): install the same version on every node")


@contextlib.contextmanager
def _environ_for_ray(*, local: bool) -> Iterator[None]:
    """For a local Ray's start: only the allowed variables in ``os.environ`` (restored after)."""
    if not local:
        yield
        return
    hidden = {k: v for k, v in os.environ.items() if k not in ENV_ALLOWED and not k.startswith(_ENV_PREFIXES)}
    for k in hidden:
        del os.environ[k]
    try:
        yield
    finally:
        os.environ.update(hidden)


def require_ray() -> Any:
    """The ``ray`` module, or BadInput (exit 2) with how to install it."""
    try:
        import ray
    except ImportError:
        raise BadInput("Ray is not installed: pip install 'loadtest[ray]'") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None, *, workers: int | str) -> Iterator[Any]:
    """Connected to Ray for the block: ``address`` (or RAY_ADDRESS) is a cluster this does not
    stop; without one a local Ray is started (enough CPUs for ``workers``) and stopped after.
    A Ray the caller initialised already is used as it is, and left running."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING,
             "configure_logging": True}
    if address:
        _check_reachable(address)
    _quiet_notices()
    with signals_ignored(deliver=False) as signalled, _environ_for_ray(local=not address):
        try:
            if address:
                ray.init(address=address, **quiet)
            else:
                n = workers if isinstance(workers, int) else 0
                ray.init(address="local", num_cpus=max(available_cores(), n), **quiet)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            ray.shutdown()  # whatever it started so far
            raise WorkersUnavailable(f"cannot {'connect to Ray at ' + address if address else 'start Ray'}: "
                                     f"{exc}") from None
        if signalled:  # a Ctrl-C while Ray started: stop what it started, then honour the signal
            ray.shutdown()
            raise KeyboardInterrupt
    try:
        yield ray
    finally:
        with signals_ignored(deliver=False):
            ray.shutdown()  # a cluster we connected to: the driver disconnects, the cluster runs on


#: Ray's console notices that need no action from our user: (logger, message start)
_NOTICES = (
    # a new local cluster enables token authentication by default (secure, nothing to do);
    # its opposite, "… is disabled for this Ray cluster", stays: that one may need action
    ("ray._private.authentication.authentication_token_setup", "Token authentication is enabled"),
)


class _DropNotice(logging.Filter):
    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)


def _quiet_notices() -> None:
    for name, start in _NOTICES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotice) and f.start == start for f in logger.filters):
            logger.addFilter(_DropNotice(start))


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A ``host:port`` that accepts no TCP connection ends the run at once (exit 3): ray.init
    itself retries an unreachable GCS for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", ray://…: left to Ray
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise WorkersUnavailable(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}. Is "
                                 "`ray start --head` running there (its GCS port, 6379 by default)?") from None
