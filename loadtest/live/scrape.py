"""The target's own Prometheus metrics, scraped during a run (``--scrape URL``, issue 21).

    scraper = TargetScraper(["http://proxy:9100/metrics"])
    scraper.start()                 # one scrape now ("before"), then one a second in a thread
    ...                             # the run
    scraper.stop()                  # the thread stopped, then one last scrape ("after")
    rows = scraper.rows(t0_epoch_ns)  # target_metrics.csv's rows, on the run's clock
    scraper.status()                # summary.json's ``live.scrape``

Each URL is scraped by its own daemon thread on a fixed schedule (``start + k * interval``: a
slow answer never shifts the later ones; a tick missed while a scrape was still running is
skipped, never made up in a burst), with :mod:`urllib.request` and a timeout. Threads, not
asyncio: the coordinator's loop may be the load generator's own, and a scrape must never
delay a send. Every sample is kept (histogram ``_bucket`` samples too, named as exposed) with
the wall-clock time ``time.time_ns()`` at which its answer arrived, up to
:data:`MAX_SAMPLES_PER_SCRAPE` a scrape and :data:`MAX_SAMPLES` in all (the cut ones are
counted; the "after" scrape is always kept, so the last value of a counter is its final one).

A scrape that fails (refused, timed out, a status other than 200, HTML, a body that is not
Prometheus text) is counted per URL with its last error, in one short line; it never raises and
never stops the run. A password in a URL (``user:password@host``) is sent as HTTP basic auth and
never shown: :attr:`TargetScraper.urls`, :meth:`status` and the error messages carry the URL
with ``***`` in its place (and ``apikey=``-style query values masked).
"""

from __future__ import annotations

import base64
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from loadtest.errors import redact

__all__ = ["MAX_BODY_BYTES", "MAX_SAMPLES", "MAX_SAMPLES_PER_SCRAPE", "TargetScraper", "display_url",
           "render_labels"]

#: samples kept from one scrape of one target; the rest are counted as cut
MAX_SAMPLES_PER_SCRAPE = 2_000
#: samples kept in all (8 bytes each, the metric and label names are shared): past it, only the
#: "after" scrape is kept, so an hours-long run against a huge exposition cannot eat the memory
MAX_SAMPLES = 10_000_000
#: a larger answer is a failed scrape (nobody exposes 16 MiB of metrics on purpose)
MAX_BODY_BYTES = 16 * 1024 * 1024
_MAX_ERROR_CHARS = 160
_ACCEPT = "text/plain;version=0.0.4;q=1.0, */*;q=0.1"
_SECRET_QUERY = re.compile(r"(?i)^(api[_-]?key|key|token|access[_-]?token|secret|password|passwd|pass|auth|"
                           r"authorization|sig|signature|x-amz-signature)$")


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect (``/metrics`` → ``/metrics/``), but never takes the credentials to
    another host."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


#: no proxy from the environment (a scrape goes where its URL says, as Prometheus's does)
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _SameHostRedirects())


def display_url(url: str) -> str:
    """``url`` with no secret: a password in it as ``***``, and the value of a query parameter
    that names a key, token, secret or signature as ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, sep, _ = userinfo.partition(":")
            netloc = f"{user}:***@{hostport}" if sep else f"{user}@{hostport}"
        query = parts.query
        if query:
            pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
            query = "&".join(f"{urllib.parse.quote(k, safe='[]')}="
                             + ("***" if _SECRET_QUERY.match(k) else urllib.parse.quote(v, safe="/:,[]"))
                             for k, v in pairs)  # fmt: skip
        return redact(urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, "")))
    except ValueError:
        return "<unparsable url>"


def render_labels(labels: dict[str, str]) -> str:
    """A label set as Prometheus writes it, sorted by name: ``{a="x",b="y"}`` ("" when none)."""
    if not labels:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _ScrapeFailed(Exception):
    """One scrape's failure, its message already short and free of secrets."""


@dataclass(frozen=True, slots=True)
class _Request:
    url: str  # without the user info
    shown: str  # display_url of the URL as given
    headers: dict[str, str]
    secret: str | None  # the password, for redacting error texts


def _request_of(url: str) -> _Request:
    parts = urllib.parse.urlsplit(url)
    headers = {"Accept": _ACCEPT, "User-Agent": "loadtest-scrape"}
    secret = None
    if "@" in parts.netloc:
        userinfo, _, hostport = parts.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        user, password = urllib.parse.unquote(user), urllib.parse.unquote(password)
        secret = password or None
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
        parts = parts._replace(netloc=hostport)
    return _Request(urllib.parse.urlunsplit(parts), display_url(url), headers, secret)


@dataclass(frozen=True, slots=True)
class _Scrape:
    """One successful scrape: when its answer arrived, which series (ids into the scraper's
    table of ``(metric, labels)``; the tuple is shared with the previous scrape's when equal) and
    their values."""

    t_ns: int
    keys: tuple[int, ...]
    values: array[float]


@dataclass
class _Target:
    index: int
    request: _Request
    ok: int = 0
    failed: int = 0
    last_error: str | None = None
    cut: int = 0
    scrapes: list[_Scrape] = field(default_factory=list)
    last_keys: tuple[int, ...] = ()


class TargetScraper:
    """Scrapes ``urls`` (already validated ``http(s)://`` URLs) every ``interval_s`` seconds
    from :meth:`start` to :meth:`stop`, each answer bounded by ``timeout_s``."""

    def __init__(self, urls: Sequence[str], *, interval_s: float = 1.0, timeout_s: float = 0.8) -> None:
        if interval_s <= 0 or timeout_s <= 0:
            raise ValueError("interval_s and timeout_s must be > 0")
        self.interval_s = float(interval_s)
        self.timeout_s = float(timeout_s)
        self._targets = [_Target(i, _request_of(u)) for i, u in enumerate(urls)]
        #: the URLs as shown (no password): the keys of :meth:`status`, made unique by
        #: `` [i]`` (the position) when two differ only in what is hidden
        self.urls: tuple[str, ...] = _unique([t.request.shown for t in self._targets])
        self._series: dict[tuple[str, str], int] = {}
        self._names: list[tuple[str, str]] = []
        self._kept = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = self._stopped = False

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """The "before" scrape of every URL (now, returning when it is done), then a daemon
        thread per URL scraping on a fixed schedule. A second call does nothing."""
        if self._started:
            return
        self._started = True
        self._scrape_all(final=False)
        origin = time.monotonic()
        for target in self._targets:
            thread = threading.Thread(target=self._loop, args=(target, origin), daemon=True,
                                      name=f"loadtest-scrape-{target.index}")  # fmt: skip
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the threads (a scrape in progress ends within its timeout), then the "after"
        scrape of every URL. Idempotent; does nothing before :meth:`start`."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._scrape_all(final=True)

    def _loop(self, target: _Target, origin: float) -> None:
        tick = 1
        while True:
            due = origin + tick * self.interval_s
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            self._scrape(target, final=False)
            # the next tick of the schedule still ahead: one missed while scraping is skipped
            tick = max(tick + 1, int((time.monotonic() - origin) / self.interval_s) + 1)

    def _scrape_all(self, *, final: bool) -> None:
        """Every URL once, at the same time (one thread each when there are several)."""
        if len(self._targets) == 1:
            self._scrape(self._targets[0], final=final)
            return
        threads = [threading.Thread(target=self._scrape, args=(t,), kwargs={"final": final}, daemon=True)
                   for t in self._targets]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # ---------------------------------------------------------------- one scrape

    def _scrape(self, target: _Target, *, final: bool) -> None:
        try:
            t_ns, text = self._fetch(target.request)
            samples = _parse(text)
        except _ScrapeFailed as exc:
            self._failed(target, str(exc))
            return
        except Exception as exc:  # never raise into the run, whatever the server or the parser did
            self._failed(target, _one_line(f"{type(exc).__name__}: {exc}", target.request.secret))
            return
        with self._lock:
            target.ok += 1
            room = MAX_SAMPLES_PER_SCRAPE if final else min(MAX_SAMPLES_PER_SCRAPE, MAX_SAMPLES - self._kept)
            kept = samples[: max(0, room)]
            target.cut += len(samples) - len(kept)
            keys = tuple(self._series_id(name, labels) for name, labels, _ in kept)
            if keys == target.last_keys:
                keys = target.last_keys  # the same series as last time: one tuple for both
            target.last_keys = keys
            target.scrapes.append(_Scrape(t_ns, keys, array("d", (v for _, _, v in kept))))
            self._kept += len(kept)

    def _series_id(self, name: str, labels: str) -> int:
        key = (name, labels)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = len(self._names)
            self._names.append(key)
        return found

    def _failed(self, target: _Target, message: str) -> None:
        with self._lock:
            target.failed += 1
            target.last_error = message

    def _fetch(self, req: _Request) -> tuple[int, str]:
        """The body of a 200 answer as text, and the wall-clock time it had fully arrived."""
        deadline = time.monotonic() + self.timeout_s
        request = urllib.request.Request(req.url, headers=req.headers, method="GET")
        try:
            with _OPENER.open(request, timeout=self.timeout_s) as resp:
                status = resp.status
                ctype = resp.headers.get("Content-Type", "") or ""
                chunks: list[bytes] = []
                size = 0
                while True:
                    chunk = resp.read1(65536)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        raise _ScrapeFailed(f"answer larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB")
                    if time.monotonic() > deadline:
                        raise _ScrapeFailed(f"timed out after {self.timeout_s:g} s (answer still arriving)")
                    chunks.append(chunk)
                t_ns = time.time_ns()
        except urllib.error.HTTPError as exc:
            exc.close()
            raise _ScrapeFailed(_one_line(f"HTTP {exc.code} {exc.reason}", req.secret)) from None
        except urllib.error.URLError as exc:
            raise _ScrapeFailed(_one_line(_reason(exc.reason, self.timeout_s), req.secret)) from None
        except TimeoutError:
            raise _ScrapeFailed(f"timed out after {self.timeout_s:g} s") from None
        except OSError as exc:
            raise _ScrapeFailed(_one_line(_reason(exc, self.timeout_s), req.secret)) from None
        if status != 200:
            raise _ScrapeFailed(f"HTTP {status}")
        body = b"".join(chunks)
        mime = ctype.split(";", 1)[0].strip().lower()
        if mime in ("text/html", "application/xhtml+xml") or body.lstrip()[:1] == b"<":
            raise _ScrapeFailed(f"answered HTML ({mime or 'no content type'}), not Prometheus text")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _ScrapeFailed("answered binary data, not Prometheus text (not UTF-8)") from None
        if "\x00" in text:
            raise _ScrapeFailed("answered binary data, not Prometheus text (NUL bytes)")
        return t_ns, text

    # ---------------------------------------------------------------- results

    def rows(self, t0_epoch_ns: int) -> list[dict[str, Any]]:
        """target_metrics.csv's rows, scrape by scrape in time order (target by target at
        the same time): ``t_s`` seconds since ``t0_epoch_ns`` (3 decimals; negative before
        it), ``target`` (the URL's position in ``urls``), ``metric`` (as exposed),
        ``labels`` (:func:`render_labels`) and ``value``."""
        with self._lock:
            scrapes = sorted(((s.t_ns, t.index, s) for t in self._targets for s in t.scrapes),
                             key=lambda e: (e[0], e[1]))  # fmt: skip
            names = list(self._names)
        out: list[dict[str, Any]] = []
        for t_ns, index, scrape in scrapes:
            t_s = round((t_ns - t0_epoch_ns) / 1e9, 3)
            for key, value in zip(scrape.keys, scrape.values, strict=True):
                metric, labels = names[key]
                out.append({"t_s": t_s, "target": index, "metric": metric, "labels": labels, "value": value})
        return out

    def status(self) -> dict[str, Any]:
        """summary.json's ``live.scrape``: per URL (as shown) the scrapes that answered, those
        that failed and the last failure's message; ``samples``, the rows :meth:`rows` gives;
        ``samples_cut``, per URL, those the caps left out."""
        with self._lock:
            shown = list(zip(self.urls, self._targets, strict=True))
            return {
                "urls": list(self.urls),
                "scrapes": {u: t.ok for u, t in shown},
                "failed": {u: t.failed for u, t in shown},
                "last_error": {u: t.last_error for u, t in shown},
                "samples": self._kept,
                "samples_cut": {u: t.cut for u, t in shown},
            }


def _unique(shown: list[str]) -> tuple[str, ...]:
    return tuple(u if u not in shown[:i] else f"{u} [{i}]" for i, u in enumerate(shown))


def _parse(text: str) -> list[tuple[str, str, float]]:
    """Every sample of a Prometheus text exposition as ``(name, labels, value)``."""
    try:
        return [(s.name, render_labels(s.labels), float(s.value))
                for family in text_string_to_metric_families(text) for s in family.samples]  # fmt: skip
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise _ScrapeFailed(_one_line(f"not Prometheus text: {exc}")) from None


def _reason(reason: object, timeout_s: float) -> str:
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return f"timed out after {timeout_s:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _one_line(text: str, secret: str | None = None) -> str:
    line = " ".join(redact(text, secret).split())
    return line if len(line) <= _MAX_ERROR_CHARS else line[: _MAX_ERROR_CHARS - 1] + "…"
