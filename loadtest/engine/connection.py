"""One WebSocket to the proxy: connect, auth, set-model, ping, one stream at a time.

aiohttp errors are mapped once, here, to :mod:`loadtest.errors` categories
(``raise ... from exc``), most specific first, and every message is redacted: the API
key travels in the URL and aiohttp likes to quote URLs in its exceptions.

Timing rule (DESIGN.md): the clock (``time.perf_counter_ns()`` in a run) is read as soon as ``receive()``
hands us a frame, before JSON decoding; never ``loop.time()`` (uvloop caches it per
loop iteration at 1 ms resolution).
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
from dataclasses import dataclass
from typing import Any, NoReturn

import aiohttp
from yarl import URL

from loadtest.clock import Clock, RealClock
from loadtest.errors import (
    AuthFailed,
    AuthTimeout,
    ConnectFailed,
    ConnectionFailure,
    Disconnected,
    RemoteProtocolError,
    RequestTimeout,
    ServerError,
    redact,
)
from loadtest.metrics.collector import RequestRecord
from loadtest.protocol import (
    CHUNK,
    DONE,
    FAILED,
    FIRST_TOKEN,
    AuthComplete,
    ClientStream,
    ErrorEvent,
    Pong,
    SetModelComplete,
    decode_server_frame,
    encode_ping,
    encode_set_model,
)

__all__ = ["DEFAULT_MAX_FRAME_BYTES", "ConnectTimings", "Connection", "RequestRecord", "make_session", "target_url",
           "traceparent"]

# Close codes a server uses to say "your key is no good" (4401 is the mock's; 4403 is common).
_AUTH_CLOSE_CODES = frozenset({4001, 4003, 4401, 4403, 1008})
_REAL = RealClock()
#: a frame larger than this (bytes) is a protocol error (scenario: target.max_frame_bytes)
DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024
# aiohttp's reader errors that mean the server broke the WebSocket protocol (RFC 6455 7.4.1)
_PEER_VIOLATIONS: dict[int, str] = {
    aiohttp.WSCloseCode.INVALID_TEXT: "invalid UTF-8 in a text frame",
    aiohttp.WSCloseCode.MESSAGE_TOO_BIG: "frame larger than the cap (target.max_frame_bytes)",
    aiohttp.WSCloseCode.PROTOCOL_ERROR: "WebSocket protocol violation",
}


def _observed(rec: RequestRecord, answer: ClientStream) -> None:
    """Copy what the stream observed into the request's record (once per request)."""
    rec.t_conv, rec.t_first, rec.t_last, rec.t_stop = answer.t_conv, answer.t_first, answer.t_last, answer.t_stop
    rec.chunks, rec.chars, rec.unknown_events = answer.chunks, answer.chars, answer.unknown_events
    rec.gaps_ns, rec.texts = answer.gaps_ns, answer.texts
    rec.conversation_id, rec.message_id = answer.conversation_id, answer.message_id


def target_url(url: str, api_key: str | None) -> str:
    """The URL to connect to, with the key as the ``apikey`` query parameter."""
    if not api_key:
        return url
    return str(URL(url).update_query(apikey=api_key))


def make_session(*, ssl_context: ssl.SSLContext | bool | None = None) -> aiohttp.ClientSession:
    """One ClientSession for every connection of a run; no connection cap below the users."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ssl=ssl_context if ssl_context is not None else True,
                                     force_close=False, enable_cleanup_closed=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))


def traceparent() -> tuple[str, str]:
    """A fresh W3C trace context for one connection: ``(trace_id, traceparent header)``, sampled,
    so a proxy's traces of the upgrade can be joined with requests.csv's rows."""
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


@dataclass(slots=True)
class ConnectTimings:
    """Nanosecond durations of a connection's setup (0 = not applicable)."""

    connect_ns: int = 0
    auth_ns: int = 0
    set_model_ns: int = 0


class Connection:
    """An authenticated WebSocket. Not safe for concurrent streams: one at a time."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, conn_id: int, secret: str | None,
                 clock: Clock | None = None) -> None:
        self.ws = ws
        self._now = (clock or _REAL).now_ns
        self.id = conn_id
        #: the W3C trace id sent in this connection's upgrade (``traceparent``): requests.csv's ``trace_id``
        self.trace_id = ""
        self._secret = secret
        self.broken = False
        #: broken by our own choice (not a transport failure): replace it without a backoff
        self.retired = False
        self.requests = 0

    # ------------------------------------------------------------------ setup

    @classmethod
    async def open(
        cls,
        session: aiohttp.ClientSession,
        url: str,
        *,
        conn_id: int,
        api_key: str | None,
        model: str | None,
        timeout_s: float,
        timings: ConnectTimings,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        clock: Clock | None = None,
    ) -> Connection:
        """Connect, wait for ``auth-connect-complete``, optionally set the model.

        Raises ConnectFailed, AuthFailed, Disconnected, RemoteProtocolError or
        RequestTimeout; fills ``timings`` as far as it got.

        Longer than most functions here on purpose: it is aiohttp's error mapping, one
        ``except`` clause per failure, most specific first, and it reads best in one place.
        """
        full = target_url(url, api_key)
        trace_id, parent = traceparent()
        now = (clock or _REAL).now_ns
        t0 = now()
        try:
            async with asyncio.timeout(timeout_s):
                # max_msg_size: aiohttp refuses a larger frame as it arrives (before buffering
                # it whole), so one hostile frame cannot take the generator's memory (issue 10)
                ws = await session.ws_connect(full, autoping=True, autoclose=False, headers={"traceparent": parent},
                                              max_msg_size=max_frame_bytes, compress=0, heartbeat=None)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                raise AuthFailed(f"upgrade refused with HTTP {exc.status} (key rejected)") from None
            raise ConnectFailed(f"upgrade refused with HTTP {exc.status}") from None
        except TimeoutError:
            raise ConnectFailed(f"connect timed out after {timeout_s:g} s") from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise ConnectFailed(redact(
                f"TLS certificate verification failed: {exc.certificate_error}. Trust the server's CA "
                "with --ca-file (or target.ca_file); --insecure skips verification (not for real tests)",
                api_key)) from None
        except aiohttp.ClientSSLError as exc:
            raise ConnectFailed(redact(f"TLS error: {exc.os_error if hasattr(exc, 'os_error') else exc}", api_key)) from None
        except aiohttp.ClientConnectorError as exc:
            raise ConnectFailed(redact(f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}", api_key)) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectFailed(redact(f"connect failed: {type(exc).__name__}: {exc}", api_key)) from None
        t1 = now()
        timings.connect_ns = t1 - t0
        conn = cls(ws, conn_id, api_key, clock)
        conn.trace_id = trace_id
        try:
            async with asyncio.timeout(timeout_s):
                ev, _ = await conn._next_event(during="auth")
                if isinstance(ev, ErrorEvent):
                    raise AuthFailed(conn._clean(f"server refused the key: {ev.error}"))
                if not isinstance(ev, AuthComplete):
                    raise AuthFailed(conn._clean(f"expected auth-connect-complete, got {type(ev).__name__}"))
                t2 = now()
                timings.auth_ns = t2 - t1
        except TimeoutError:
            await conn.close()
            raise AuthTimeout(f"no auth-connect-complete within {timeout_s:g} s") from None
        except ConnectionFailure:
            await conn.close()
            raise
        if model:
            try:
                timings.set_model_ns = await conn.set_model(model, timeout_s)
            except ConnectionFailure:
                await conn.close()
                raise
        return conn

    async def set_model(self, model: str, timeout_s: float) -> int:
        """Send ``set-model`` and wait for ``set-model-complete``; returns the time in ns."""
        t0 = self._now()
        try:
            async with asyncio.timeout(timeout_s):
                await self._send(encode_set_model(model), during="set-model")
                while True:
                    ev, t = await self._next_event(during="set-model")
                    if isinstance(ev, SetModelComplete):
                        return t - t0
                    if isinstance(ev, ErrorEvent):
                        self.retire()
                        raise ServerError(self._clean(f"set-model failed: {ev.error}"))
        except TimeoutError:
            self.broken = True
            raise RequestTimeout(f"no set-model-complete within {timeout_s:g} s") from None

    # ------------------------------------------------------------------ frames

    def _clean(self, text: str) -> str:
        return redact(text, self._secret)

    async def _next_event(self, *, during: str) -> tuple[Any, int]:
        """The next decoded server event and its arrival time (ns)."""
        try:
            msg = await self.ws.receive()
        except (aiohttp.ClientError, OSError) as exc:
            self.broken = True
            raise Disconnected(self._clean(f"connection lost during {during}: {type(exc).__name__}")) from None
        t = self._now()
        kind = msg.type
        if kind is aiohttp.WSMsgType.TEXT:
            return decode_server_frame(msg.data), t
        self._not_text(msg, during)

    def _not_text(self, msg: aiohttp.WSMessage, during: str) -> NoReturn:
        """Map a frame that is not TEXT (close, error, binary) to our error; always raises."""
        kind = msg.type
        self.broken = True
        if kind in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            code = self.ws.close_code if kind is not aiohttp.WSMsgType.CLOSE else msg.data
            reason = msg.extra if kind is aiohttp.WSMsgType.CLOSE and msg.extra else ""
            text = f"server closed the connection during {during} (code {code}{', ' + str(reason) if reason else ''})"
            if during == "auth" and code in _AUTH_CLOSE_CODES:
                raise AuthFailed(self._clean(text))
            raise Disconnected(self._clean(text))
        if kind is aiohttp.WSMsgType.ERROR:
            exc = msg.data
            if isinstance(exc, aiohttp.WebSocketError) and exc.code in _PEER_VIOLATIONS:
                # the peer sent what the WebSocket protocol forbids (invalid UTF-8 in a text
                # frame, a frame over the size cap, a bad frame): its fault, not a lost link
                raise RemoteProtocolError(self._clean(f"{_PEER_VIOLATIONS[exc.code]} during {during}: {exc}"))
            raise Disconnected(self._clean(f"connection lost during {during}: {exc!r}"))
        if kind is aiohttp.WSMsgType.BINARY:
            raise RemoteProtocolError(f"unexpected binary frame during {during}", frame=bytes(msg.data[:200]))
        raise Disconnected(self._clean(f"unexpected {kind.name} during {during}"))

    # ------------------------------------------------------------------ operations

    async def ping(self, timeout_s: float) -> int:
        """Send ``ping``, wait for ``pong``; returns the round trip in ns."""
        t0 = self._now()
        try:
            async with asyncio.timeout(timeout_s):
                await self._send(encode_ping(), during="ping")
                while True:
                    ev, t = await self._next_event(during="ping")
                    if isinstance(ev, Pong):
                        return t - t0
                    if isinstance(ev, ErrorEvent):
                        self.retire()
                        raise ServerError(self._clean(f"ping answered with error: {ev.error}"))
        except TimeoutError:
            self.broken = True
            raise RequestTimeout(f"no pong within {timeout_s:g} s") from None

    async def _send(self, text: str, *, during: str) -> None:
        try:
            await self.ws.send_str(text)
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:
            # aiohttp raises ConnectionResetError / ClientConnectionResetError on a closed socket
            self.broken = True
            raise Disconnected(self._clean(f"connection lost sending {during}: {type(exc).__name__}")) from None

    async def stream(self, frame: str, rec: RequestRecord, *, first_token_s: float, stream_s: float,
                     abandon_after: int = 0) -> bool:
        """Send one ``gen`` and read its answer to the end, filling ``rec``; True when the user
        stopped reading: the answer went on past ``abandon_after`` > 0 non-empty chunks (chunk
        k+1 arrived before the stop), and the socket was closed (the only way to stop a stream
        in this protocol; the connection is done).

        What each frame means is :class:`~loadtest.protocol.ClientStream`'s to say; this
        method only reads frames, stamps their arrival time (before decoding) and keeps the
        timeouts. Raises a ConnectionFailure on error; ``rec`` keeps what was measured
        before it. After any failure the connection is ``broken`` (after an ``error`` event,
        ``retired``): frames of the old stream may follow and must never be read as part of
        the next one.
        """
        self.requests += 1
        rec.connection = self.id
        rec.trace_id = self.trace_id
        now = self._now
        rec.t_send = now()
        loop = asyncio.get_running_loop()
        first_deadline = loop.time() + first_token_s
        stream_deadline = loop.time() + stream_s
        answer = ClientStream()
        try:
            async with asyncio.timeout_at(min(first_deadline, stream_deadline)) as cm:
                await self._send(frame, during="gen")
                # The hot path, once per chunk: receive, stamp, feed.
                receive = self.ws.receive
                feed = answer.feed
                text = aiohttp.WSMsgType.TEXT
                while True:
                    try:
                        msg = await receive()
                    except (aiohttp.ClientError, OSError) as exc:
                        self.broken = True
                        raise Disconnected(self._clean(f"connection lost during stream: {type(exc).__name__}")) from None
                    t = now()
                    if msg.type is not text:
                        self._not_text(msg, "stream")
                    code = feed(msg.data, t)
                    if code <= CHUNK:
                        # the user stops reading when an answer goes on past its k-th chunk:
                        # one that ends at k chunks was read to the end (its stop is next)
                        if abandon_after and answer.chunks > abandon_after:
                            break
                        continue
                    if code == FIRST_TOKEN:
                        cm.reschedule(stream_deadline)
                    elif code == DONE:
                        return False
                    elif code == FAILED:
                        # PROTOCOL.md does not say that nothing follows an `error`: a proxy may
                        # still flush the rest of the answer and a `stop`. Those frames must
                        # never be read as the next request's answer: the connection is
                        # retired (closed and replaced, counted as a reconnect).
                        self.retire()
                        raise ServerError(self._clean(answer.error))
        except TimeoutError:
            self.broken = True
            if answer.t_first:
                raise RequestTimeout(f"stream did not finish within {stream_s:g} s ({answer.chunks} chunks received)") from None
            raise RequestTimeout(f"no first token within {min(first_token_s, stream_s):g} s") from None
        except RemoteProtocolError:
            self.broken = True
            raise
        finally:
            _observed(rec, answer)
        await self.close()  # abandoned: what the server still sends is never read
        return True

    def retire(self) -> None:
        """Never hand this connection to another request: frames of a failed exchange may follow."""
        self.broken = True
        self.retired = True

    async def close(self) -> None:
        self.broken = True
        try:
            async with asyncio.timeout(2):
                await self.ws.close()
        except (TimeoutError, aiohttp.ClientError, OSError, RuntimeError):
            pass
