"""TLS settings for ``wss://`` targets: verify by default, a private CA, or (loudly) none.

:class:`Tls` is the one value every run carries (in :class:`~loadtest.runner.options.RunOptions`
and in each :class:`~loadtest.engine.worker.WorkerSpec`): plain data, so it crosses to worker
processes and Ray actors as is, and each of them builds its own ``SSLContext`` from it (a
context does not pickle). Built once from the scenario's ``target`` and the flags
(:meth:`Tls.resolve`), so no command can pass one part of it and forget another.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from loadtest.errors import BadInput

__all__ = ["Tls", "ssl_context_for"]


@dataclass(frozen=True, kw_only=True)
class Tls:
    """How to verify a ``wss://`` target: the system CAs, plus ``ca_file``; none if ``insecure``."""

    ca_file: str | None = None
    insecure: bool = False

    @classmethod
    def resolve(cls, target: Any, *, ca_file: str | None = None, insecure: bool = False) -> Tls:
        """Flags over the scenario's ``target.ca_file`` / ``target.insecure``."""
        return cls(ca_file=ca_file or target.ca_file, insecure=bool(insecure or target.insecure))

    def context(self, url: str) -> ssl.SSLContext | bool | None:
        """The aiohttp ``ssl=`` value for ``url`` (:func:`ssl_context_for`)."""
        return ssl_context_for(url, ca_file=self.ca_file, insecure=self.insecure)

    def unverified(self, url: str) -> bool:
        """Whether a connection to ``url`` skips certificate verification."""
        return self.insecure and url.startswith("wss://")

    def check(self) -> None:
        """BadInput (exit 2) now, before anything connects, when ``ca_file`` cannot be loaded."""
        if self.ca_file and not self.insecure:
            ssl_context_for("wss://check", ca_file=self.ca_file)


def ssl_context_for(url: str, *, ca_file: str | None = None, insecure: bool = False) -> ssl.SSLContext | bool | None:
    """None for ws:// URLs; a verifying context (system CAs, plus ``ca_file``) for wss://;
    ``False`` (no verification) when ``insecure``."""
    if not url.startswith("wss://"):
        return None
    if insecure:
        return False
    ctx = ssl.create_default_context()
    if ca_file:
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise BadInput(f"--ca-file {ca_file}: cannot load CA certificates: {exc}") from None
    return ctx
