"""TLS settings for ``wss://`` targets: verify by default, a private CA, or (loudly) none."""

from __future__ import annotations

import ssl

from loadtest.errors import BadInput

__all__ = ["ssl_context_for"]


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
