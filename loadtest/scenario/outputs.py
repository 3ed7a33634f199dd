"""The scenario's ``outputs`` section: where a run's live metrics go while it runs, and the
target's own metrics endpoints it scrapes. Pure: only the shapes are checked here; a port that
cannot be bound is found by the run, before anything connects.

::

    outputs:
      prometheus: "127.0.0.1:9464"   # serve /metrics here while the run lasts
      prometheus_linger: 5s          # ... and this long after it, for a last scrape
      otlp: "http://127.0.0.1:4318/v1/metrics"   # push OTLP/HTTP every otlp_interval
      otlp_interval: 5s
      scrape: ["http://127.0.0.1:9100/metrics"]  # the target's own metrics, every second
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pydantic import Field, StrictStr, field_validator

from loadtest.scenario.fields import Duration, Model, PositiveDuration, short

__all__ = ["OutputsConfig", "check_http_url", "parse_host_port"]

#: at most this many --scrape endpoints (each is scraped once a second from one thread)
MAX_SCRAPE = 16


def parse_host_port(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``[::1]:9464`` for IPv6) → ``(host, port)``; ValueError saying what is wrong."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port:
        raise ValueError(f"must be HOST:PORT (e.g. 127.0.0.1:9464), got {short(text)}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{short(host)} in brackets is not an IPv6 address") from None
    elif ":" in host or any(c.isspace() for c in host):
        raise ValueError(f"must be HOST:PORT (an IPv6 host in brackets: [::1]:9464), got {short(text)}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"the port must be a number from 1 to 65535, got {short(port)}")
    return host, int(port)


def check_http_url(url: str) -> str:
    """``url`` if it is an ``http://`` or ``https://`` URL with a host; ValueError otherwise."""
    try:
        parts = urlsplit(url.strip())
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        raise ValueError(f"is not a valid URL: {short(url)}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"must be an http:// or https:// URL (scheme {parts.scheme or 'missing'!r}): {short(url)}")
    if not parts.hostname or not port_ok or any(c.isspace() for c in url.strip()):
        raise ValueError(f"must name a host: http://HOST[:PORT]/PATH, got {short(url)}")
    return url.strip()


class OutputsConfig(Model):
    """Live outputs of a run (all off by default)."""

    prometheus: StrictStr | None = Field(None, min_length=1)
    prometheus_linger_s: Duration = Field(5.0, alias="prometheus_linger", le=3600)
    otlp: StrictStr | None = Field(None, min_length=1)
    otlp_interval_s: PositiveDuration = Field(5.0, alias="otlp_interval", le=3600)
    scrape: list[StrictStr] = Field(default_factory=list, max_length=MAX_SCRAPE)

    @field_validator("prometheus")
    @classmethod
    def _host_port(cls, text: str | None) -> str | None:
        if text is not None:
            parse_host_port(text)
        return text

    @field_validator("otlp")
    @classmethod
    def _otlp(cls, url: str | None) -> str | None:
        return None if url is None else check_http_url(url)

    @field_validator("scrape")
    @classmethod
    def _scrape(cls, urls: list[str]) -> list[str]:
        return [check_http_url(u) for u in urls]

    @property
    def prometheus_address(self) -> tuple[str, int] | None:
        return None if self.prometheus is None else parse_host_port(self.prometheus)

    @property
    def any(self) -> bool:
        return bool(self.prometheus or self.otlp or self.scrape)
