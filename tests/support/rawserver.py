"""rawserver: an independent, deliberately misbehaving chat-proxy server for judging the harness.

Why it exists
-------------
The embedded mock (``loadtest.mock``) shares the harness's code: its codec, its aiohttp stack,
its ideas of what a stream looks like. A bug in that shared code can make the harness and the
mock agree with each other and both be wrong. This server shares nothing with the code under
test: it is written on raw asyncio sockets with a hand-written RFC 6455 implementation (HTTP
upgrade, masked client frames, unmasked server frames with 7/16/64-bit lengths, close and ping),
and imports nothing from ``loadtest`` nor aiohttp. It logs what it *really* did, one JSON line per
event with wall and monotonic nanosecond times, so a test can hold the harness's figures
(summary.json, requests.csv) against the server's own record.

Run it as a separate process::

    python tests/rawserver.py --port 0 --log events.jsonl --behaviour normal \
        --options '{"ttft_ms": 50, "gap_ms": 10, "chunks": 8}'

The first stdout line is ``ws://127.0.0.1:PORT/v2/chat``. SIGTERM/SIGINT end it cleanly; SIGKILL
loses nothing already logged (every line is flushed as written).

Protocol spoken: ``auth-connect-complete`` after the upgrade; ``pong`` for ``ping``;
``set-model-complete`` for ``set-model``; for ``gen``: ``conv-message`` (a unique
``conversationId`` per gen), then ``message`` chunks ``{"output": "tokN ", "stop": false}`` and
finally ``{"output": "", "stop": true}``. Sends are scheduled against absolute deadlines from the
moment the ``gen`` was read (chunk i at ``ttft_ms + i * gap_ms``), never by accumulated sleeps.

Behaviours (``--behaviour``; options in one JSON object ``--options``, defaults in ``DEFAULTS``):

- ``normal``: ttft_ms, gap_ms, chunks, exactly.
- ``error_then_late``: after ``error_after`` chunks an ``error`` ("upstream hiccup"), then after
  ``late_ms`` the remaining chunks and a ``stop`` at once. Only on every ``every``-th gen
  (counted across the server, 1-based); other gens are normal.
- ``error_ends``: an ``error`` after ``error_after`` chunks (0: instead of any), nothing after.
- ``die_at_s``: normal, then ``die_at_s`` seconds after start every connection is aborted
  (transport.abort, no close frame) and the listening socket is closed (connects refused).
- ``huge_frame``: chunk number ``at_chunk`` is one text frame of ``huge_mb`` MiB (a valid
  ``message`` whose output is huge); at most ``max_times`` such frames in the server's life.
- ``invalid_utf8``: chunk number ``at_chunk`` is a TEXT frame whose payload is not UTF-8.
- ``never_auth``: completes the upgrade and never sends ``auth-connect-complete``.
- ``slow_stream``: normal with long-stream defaults (ttft 100 ms, 30 chunks 100 ms apart).
- ``classes`` (issue 19: request classes and tokens): the first chunk at ``ttft_ms``, plus
  ``web_search_delay_ms`` when the gen carries web search (``enableWebSearch: true``, or a
  ``webSearch`` object whose ``enabled`` is not false, unless ``enableWebSearch`` is false), plus
  ``tools_delay_ms`` when it carries a non-empty ``tools`` list; then one chunk every ``gap_ms``.
  ``chunks`` + (gen_n mod ``chunks_spread``) chunks of ``words_per_chunk`` words each, drawn from
  ``words`` (each at least 3 letters) and followed by a space. With ``split_words``, every chunk
  boundary after the second chunk is moved 2 characters into the next word, so a word spans two
  chunks (tokenizing chunk by chunk miscounts, inference-perf #566) while the first chunk holds
  exactly ``words_per_chunk`` words and every later chunk starts ``words_per_chunk`` of them.
- ``conversations`` (issue 20: conversations kept server-side): the gen field ``id_field``
  (default ``conversationId``) continues a conversation. A gen without it starts a new one (a
  fresh ``conversationId``, global across connections, turn 1); a gen naming a known id is that
  conversation's next turn (the server counts turns per conversation); a gen naming an unknown
  id is refused with an ``error`` ("unknown conversation ID"). ``conv-message`` names the
  conversation's id and a ``messageId`` unique per gen (``m<gen_n>``). The first chunk is sent
  ``ttft_ms + (turn - 1) * turn_delay_ms`` after the gen was read, then one every ``gap_ms``,
  ``chunks`` chunks whose texts are ``"a<gen_n>b<i> "``. A stall (``stall_at_s`` seconds after
  the first gen the server read, for ``stall_ms``; ``stall_at_s`` null: none) holds every
  stream's next frame and every new gen until it ends; a stream held by it keeps its spacing
  (its later deadlines move by the time held).

Log lines (``--log``), each with ``t_wall_ns`` (time.time_ns) and ``t_mono_ns``
(time.monotonic_ns) and, where it applies, ``conn`` (connection id, 1-based) and ``gen``
(per-connection gen index, 1-based) and ``gen_n`` (server-wide gen number):

- ``{"ev": "listening", "port"}``, ``{"ev": "accept", "conn", "peer"}``,
  ``{"ev": "upgrade", "conn", "path", "traceparent"}`` (the header, or null)
- ``{"ev": "recv", "conn", "kind"}`` for every client frame other than ``gen``
  (kind: ``ping``, ``set-model``, ``ws-ping``, ``close``, ``other``)
- ``{"ev": "gen_received", "conn", "gen", "gen_n", "conversation_id", "message_id", "web_search",
  "tools", "prompt"}``: what the gen frame carried (web search and tools as ``classes`` reads them)
- ``{"ev": "frame_sent", "conn", "kind", "bytes", ...}``: kind is ``auth``, ``pong``,
  ``set-model``, ``conv``, ``chunk`` (with ``chunk``, 1-based), ``huge``, ``invalid_utf8``,
  ``error``, ``stop``, ``ws-pong``, ``close``; gen frames also carry ``gen``, ``gen_n`` and
  ``conversation_id``. ``frame_skipped`` (same fields) when the connection was already gone.
- ``{"ev": "closed", "conn", "reason"}``: ``client_close`` (with ``code``), ``eof``, ``reset``,
  ``aborted`` (by ``die_at_s``), ``protocol`` (bad client frame), ``shutdown``.
- ``{"ev": "died"}`` (die_at_s), ``{"ev": "shutdown"}``.
- ``classes`` also: ``text`` on each ``chunk`` line, and one ``{"ev": "gen_done", "conn", "gen",
  "gen_n", "conversation_id", "message_id", "web_search", "tools", "ttft_ms" (intended: base plus
  delays), "web_search_delay_ms", "tools_delay_ms", "gap_ms", "chunks", "t_read_mono_ns",
  "t_first_mono_ns", "t_stop_mono_ns" (null when not sent), "texts" (every chunk sent, in order)}``
  per gen when its answer ended or its connection went away.
- ``conversations`` also (its ``gen_received`` carries ``carried_id`` (the id the gen named,
  null when none), ``conversation_id`` (null when refused), ``turn``, ``message_id``,
  ``prompt_chars`` and ``overlap`` (true when the conversation's previous turn was still
  streaming)): ``{"ev": "stall", "start_mono_ns", "end_mono_ns"}`` when the stall is placed;
  ``{"ev": "refused", "conn", "gen_n", "carried_id", "prompt_chars"}`` for an unknown id; one
  ``{"ev": "turn", "conn", "gen", "gen_n", "conversation_id", "message_id", "turn",
  "carried_id", "prompt_chars", "ttft_ms" (intended), "chunks" (intended), "chunks_sent",
  "answer" (the text sent), "held_ms" (by the stall), "t_read_mono_ns", "t_read_wall_ns",
  "t_start_mono_ns" (after a stall's hold), "t_first_mono_ns", "t_stop_mono_ns" (null when not
  sent), "ended" (``stop``, or ``gone``: the connection went away first)}`` per answered gen when
  it ended; and ``{"ev": "abandoned", "conn", "conversation_id", "message_id", "turn",
  "chunks_sent", "reason"}`` when a stream's connection went away before its stop (``reason``
  as in ``closed``: ``client_close`` when the client closed it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import signal
import struct
import time
import uuid
from typing import Any, TextIO

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_CLIENT_FRAME = 16 * 1024 * 1024

DEFAULTS: dict[str, dict[str, Any]] = {
    "normal": {"ttft_ms": 50, "gap_ms": 10, "chunks": 10},
    "error_then_late": {"ttft_ms": 50, "gap_ms": 10, "chunks": 10, "error_after": 2,
                        "late_ms": 200, "every": 1},
    "error_ends": {"ttft_ms": 50, "gap_ms": 10, "chunks": 10, "error_after": 2},
    "die_at_s": {"ttft_ms": 50, "gap_ms": 10, "chunks": 10, "die_at_s": 3.0},
    "huge_frame": {"ttft_ms": 50, "gap_ms": 10, "chunks": 10, "huge_mb": 20, "at_chunk": 2,
                   "max_times": 3},
    "invalid_utf8": {"ttft_ms": 50, "gap_ms": 10, "chunks": 10, "at_chunk": 2},
    "never_auth": {},
    "slow_stream": {"ttft_ms": 100, "gap_ms": 100, "chunks": 30},
    "classes": {"ttft_ms": 40, "gap_ms": 10, "chunks": 6, "chunks_spread": 4, "words_per_chunk": 3,
                "split_words": True, "web_search_delay_ms": 150, "tools_delay_ms": 60,
                "words": ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
                          "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
                          "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey",
                          "xray", "yankee", "zulu"]},
    "conversations": {"ttft_ms": 40, "gap_ms": 5, "chunks": 10, "turn_delay_ms": 40, "stall_at_s": None,
                      "stall_ms": 0, "id_field": "conversationId"},
}

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def now() -> tuple[int, int]:
    return time.time_ns(), time.monotonic_ns()


def carries_web_search(data: dict[str, Any]) -> bool:
    """Web search as PROTOCOL.md lists it: ``enableWebSearch: true``, or a ``webSearch`` object
    not switched off (``enabled: false``) when ``enableWebSearch`` does not say false."""
    flag = data.get("enableWebSearch")
    if flag is True:
        return True
    ws = data.get("webSearch")
    return flag is not False and isinstance(ws, dict) and ws.get("enabled") is not False


def carries_tools(data: dict[str, Any]) -> bool:
    tools = data.get("tools")
    return isinstance(tools, list) and len(tools) > 0


def answer_chunks(gen_n: int, chunks: int, per_chunk: int, words: list[str], split: bool) -> list[str]:
    """The texts of one ``classes`` answer: ``chunks`` chunks of ``per_chunk`` words, each word
    followed by a space; with ``split``, the boundaries after chunk 2, 3, ... are moved 2
    characters into the next word (so its first 2 letters end the earlier chunk)."""
    n = chunks * per_chunk
    picked = [words[(gen_n * 5 + k) % len(words)] for k in range(n)]
    pieces = [" ".join(picked[i * per_chunk:(i + 1) * per_chunk]) + " " for i in range(chunks)]
    if not split or chunks < 3:
        return pieces
    text = "".join(pieces)
    bounds, at = [], 0
    for piece in pieces[:-1]:
        at += len(piece)
        bounds.append(at)
    bounds = bounds[:1] + [b + 2 for b in bounds[1:]]
    return [text[a:b] for a, b in zip([0, *bounds], [*bounds, len(text)], strict=True)]


class Log:
    """JSON lines, one per event, flushed as written."""

    def __init__(self, f: TextIO) -> None:
        self.f = f

    def __call__(self, ev: str, *, at: tuple[int, int] | None = None, **fields: Any) -> None:
        """``at``: (wall, mono) ns read when the event happened; default now."""
        wall, mono = at or now()
        rec = {"ev": ev, "t_wall_ns": wall, "t_mono_ns": mono, **fields}
        self.f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.f.flush()


# --- RFC 6455 framing -------------------------------------------------------------------------

def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final server frame; 7-, 16- or 64-bit payload length."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


class FrameError(Exception):
    pass


async def read_frame(reader: asyncio.StreamReader) -> tuple[bool, int, bytes]:
    """(fin, opcode, unmasked payload) of one client frame; client frames must be masked."""
    b0, b1 = await reader.readexactly(2)
    fin, opcode = bool(b0 & 0x80), b0 & 0x0F
    if b0 & 0x70:
        raise FrameError("reserved bits set")
    masked, n = bool(b1 & 0x80), b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    if not masked:
        raise FrameError("client frame not masked")
    if n > MAX_CLIENT_FRAME:
        raise FrameError(f"client frame of {n} bytes")
    key = await reader.readexactly(4)
    data = await reader.readexactly(n)
    if n:
        # XOR with the repeated 4-byte key, as one big integer (fast for any length)
        mask = (key * (n // 4 + 1))[:n]
        data = (int.from_bytes(data, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    return fin, opcode, data


async def read_upgrade(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    if method != "GET":
        raise FrameError(f"method {method}")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return path, headers


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


# --- the server -------------------------------------------------------------------------------

def event(name: str, data: dict[str, Any] | None = None) -> bytes:
    msg: dict[str, Any] = {"event": name}
    if data is not None:
        msg["data"] = data
    return json.dumps(msg, separators=(",", ":")).encode("utf-8")


async def sleep_until(deadline_ns: int) -> None:
    """Sleep until an absolute monotonic deadline (ns)."""
    delay = (deadline_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)


class Conn:
    def __init__(self, cid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.cid = cid
        self.reader = reader
        self.writer = writer
        self.gens = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.gone = False
        self.close_reason: str | None = None
        self.ended_by: str | None = None  # why the connection ended (as ``closed`` logs it)


class RawServer:
    def __init__(self, behaviour: str, options: dict[str, Any], log: Log) -> None:
        if behaviour not in DEFAULTS:
            raise SystemExit(f"unknown behaviour {behaviour!r}; one of {sorted(DEFAULTS)}")
        unknown = set(options) - set(DEFAULTS[behaviour])
        if unknown:
            raise SystemExit(f"unknown options for {behaviour}: {sorted(unknown)}")
        short = [w for w in options.get("words", []) if len(w) < 3 or not w.isalpha()]
        if short:
            raise SystemExit(f"classes: words are letters only, at least 3 of them: {short}")
        self.behaviour = behaviour
        self.opt = {**DEFAULTS[behaviour], **options}
        self.log = log
        self.conns: dict[int, Conn] = {}
        self.next_cid = 0
        self.gen_n = 0
        self.huge_sent = 0
        self.server: asyncio.Server | None = None
        self.t_start_ns = time.monotonic_ns()
        self._huge: bytes | None = None
        # conversations: id -> {"turns": turns so far, "streaming": a turn's answer not ended}
        self.convs: dict[str, dict[str, Any]] = {}
        self.stall: tuple[int, int] | None = None  # (start, end) monotonic ns, once placed

    async def start(self, port: int) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", port)
        port = self.server.sockets[0].getsockname()[1]
        self.t_start_ns = time.monotonic_ns()
        self.log("listening", port=port, behaviour=self.behaviour, options=self.opt)
        if self.behaviour == "die_at_s":
            asyncio.get_running_loop().call_later(float(self.opt["die_at_s"]), self.die)
        return port

    def die(self) -> None:
        """The target died: stop listening and abort every connection (no close frame)."""
        assert self.server is not None
        self.server.close()
        self.log("died", open_connections=len(self.conns))
        for conn in list(self.conns.values()):
            conn.close_reason = "aborted"
            conn.gone = True
            for task in conn.tasks:
                task.cancel()
            conn.writer.transport.abort()

    # --- sending, each frame logged as really written

    def send(self, conn: Conn, kind: str, opcode: int, payload: bytes, **fields: Any) -> tuple[int, int] | None:
        """Write one frame; the (wall, mono) ns at which it was written, None when the connection
        was already gone (then nothing was written)."""
        if conn.gone or conn.writer.is_closing():
            self.log("frame_skipped", conn=conn.cid, kind=kind, bytes=len(payload), **fields)
            return None
        frame = encode_frame(opcode, payload)
        at = now()  # read before the write: the client cannot see the frame earlier than this
        conn.writer.write(frame)
        self.log("frame_sent", at=at, conn=conn.cid, kind=kind, bytes=len(payload), **fields)
        return at

    # --- one connection

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.next_cid += 1
        conn = Conn(self.next_cid, reader, writer)
        self.conns[conn.cid] = conn
        peer = writer.get_extra_info("peername")
        self.log("accept", conn=conn.cid, peer=f"{peer[0]}:{peer[1]}" if peer else None)
        reason, extra = "eof", dict[str, Any]()
        try:
            path, headers = await read_upgrade(reader)
            key = headers.get("sec-websocket-key")
            if not key or headers.get("upgrade", "").lower() != "websocket":
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                reason = "bad_upgrade"
                return
            writer.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n").encode("ascii"))
            self.log("upgrade", conn=conn.cid, path=path.split("?", 1)[0], traceparent=headers.get("traceparent"))
            if self.behaviour != "never_auth":
                self.send(conn, "auth", OP_TEXT, event("auth-connect-complete", {"status": "ok"}))
            reason, extra = await self.read_loop(conn)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError) as exc:
            reason = "eof" if isinstance(exc, asyncio.IncompleteReadError) else "reset"
        except FrameError as exc:
            reason, extra = "protocol", {"detail": str(exc)}
        except asyncio.CancelledError:
            reason = "shutdown"
        finally:
            conn.gone = True
            conn.ended_by = conn.close_reason or reason
            for task in conn.tasks:
                task.cancel()
            self.conns.pop(conn.cid, None)
            self.log("closed", conn=conn.cid, reason=conn.close_reason or reason, **extra)
            with contextlib.suppress(Exception):
                writer.close()

    async def read_loop(self, conn: Conn) -> tuple[str, dict[str, Any]]:
        buf, buf_op = b"", None
        while True:
            fin, opcode, payload = await read_frame(conn.reader)
            at = now()  # read after the frame: the client sent it before this
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                self.log("recv", conn=conn.cid, kind="close", code=code)
                self.send(conn, "close", OP_CLOSE, payload[:2])
                return "client_close", {"code": code}
            if opcode == OP_PING:
                self.log("recv", conn=conn.cid, kind="ws-ping")
                self.send(conn, "ws-pong", OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                continue
            if opcode == OP_CONT:
                if buf_op is None:
                    raise FrameError("continuation without a first frame")
                buf += payload
            else:
                buf, buf_op = payload, opcode
            if not fin:
                continue
            data, op = buf, buf_op
            buf, buf_op = b"", None
            if op != OP_TEXT:
                self.log("recv", conn=conn.cid, kind="other", opcode=op)
                continue
            self.on_text(conn, data, at)

    def on_text(self, conn: Conn, data: bytes, at: tuple[int, int]) -> None:
        try:
            msg = json.loads(data.decode("utf-8"))
            name = msg.get("event")
        except (ValueError, AttributeError):
            self.log("recv", conn=conn.cid, kind="other")
            return
        if name == "ping":
            self.log("recv", conn=conn.cid, kind="ping")
            self.send(conn, "pong", OP_TEXT, event("pong", {}))
        elif name == "set-model":
            self.log("recv", conn=conn.cid, kind="set-model")
            self.send(conn, "set-model", OP_TEXT, event("set-model-complete", {}))
        elif name == "gen" and self.behaviour == "conversations":
            self.on_conversation_gen(conn, msg.get("data"), at)
        elif name == "gen":
            conn.gens += 1
            self.gen_n += 1
            conv_id = f"c{conn.cid}-g{conn.gens}-{uuid.uuid4().hex[:8]}"
            raw = msg.get("data")
            fields: dict[str, Any] = raw if isinstance(raw, dict) else {}
            web, tools = carries_web_search(fields), carries_tools(fields)
            self.log("gen_received", at=at, conn=conn.cid, gen=conn.gens, gen_n=self.gen_n,
                     conversation_id=conv_id, message_id=f"m-{conv_id}", web_search=web, tools=tools,
                     prompt=fields.get("prompt"))
            coro = (self.generate_classes(conn, conn.gens, self.gen_n, conv_id, at[1], web=web, tools=tools)
                    if self.behaviour == "classes" else self.generate(conn, conn.gens, self.gen_n, conv_id, at[1]))
            task = asyncio.get_running_loop().create_task(coro)
            conn.tasks.add(task)
            task.add_done_callback(conn.tasks.discard)
        else:
            self.log("recv", conn=conn.cid, kind="other", event=name)

    # --- one answer

    def huge_payload(self) -> bytes:
        if self._huge is None:
            size = int(float(self.opt["huge_mb"]) * 1024 * 1024)
            self._huge = event("message", {"output": "x" * size, "stop": False})
        return self._huge

    async def generate(self, conn: Conn, gen: int, gen_n: int, conv_id: str, t0: int) -> None:
        o, b = self.opt, self.behaviour
        ids: dict[str, Any] = {"gen": gen, "gen_n": gen_n, "conversation_id": conv_id}
        if not self.send(conn, "conv", OP_TEXT,
                         event("conv-message", {"conversationId": conv_id, "messageId": f"m-{conv_id}"}),
                         **ids):
            return
        chunks, ttft_ns, gap_ns = int(o["chunks"]), int(o["ttft_ms"] * 1e6), int(o["gap_ms"] * 1e6)
        error_at = None  # send the error instead of chunk number error_at (1-based)
        if b == "error_ends" or (b == "error_then_late" and gen_n % int(o["every"]) == 0):
            error_at = int(o["error_after"]) + 1
        for i in range(1, chunks + 1):
            await sleep_until(t0 + ttft_ns + (i - 1) * gap_ns)
            if i == error_at:
                self.send(conn, "error", OP_TEXT, event("error", {"error": "upstream hiccup"}), **ids)
                if b == "error_ends":
                    return
                # a proxy that reports a hiccup but then flushes what it had buffered
                await sleep_until(time.monotonic_ns() + int(o["late_ms"] * 1e6))
                for j in range(i, chunks + 1):
                    if not self.send(conn, "chunk", OP_TEXT,
                                     event("message", {"output": f"tok{j} ", "stop": False}),
                                     chunk=j, late=True, **ids):
                        return
                break
            if b == "huge_frame" and i == int(o["at_chunk"]) and self.huge_sent < int(o["max_times"]):
                self.huge_sent += 1
                ok = self.send(conn, "huge", OP_TEXT, self.huge_payload(), chunk=i, **ids)
                with contextlib.suppress(ConnectionError):
                    await conn.writer.drain()
                self.log("huge_drained", conn=conn.cid, **ids)
            elif b == "invalid_utf8" and i == int(o["at_chunk"]):
                bad = b'{"event":"message","data":{"output":"bad \xff\xfe\xc3( ","stop":false}}'
                ok = self.send(conn, "invalid_utf8", OP_TEXT, bad, chunk=i, **ids)
            else:
                ok = self.send(conn, "chunk", OP_TEXT,
                               event("message", {"output": f"tok{i} ", "stop": False}), chunk=i, **ids)
            if not ok:
                return
        else:
            await sleep_until(t0 + ttft_ns + chunks * gap_ns)
        self.send(conn, "stop", OP_TEXT, event("message", {"output": "", "stop": True}),
                  chunks=chunks, **ids)

    async def generate_classes(self, conn: Conn, gen: int, gen_n: int, conv_id: str, t0: int, *,
                               web: bool, tools: bool) -> None:
        """One ``classes`` answer: delays by what the gen carried, chunks of several words, each
        sent at its absolute deadline from the moment the gen was read; ``gen_done`` says what
        was really sent, and when."""
        o = self.opt
        ids: dict[str, Any] = {"gen": gen, "gen_n": gen_n, "conversation_id": conv_id}
        message_id = f"m-{conv_id}"
        web_ms = float(o["web_search_delay_ms"]) if web else 0.0
        tools_ms = float(o["tools_delay_ms"]) if tools else 0.0
        ttft_ms = float(o["ttft_ms"]) + web_ms + tools_ms
        spread = int(o["chunks_spread"])
        chunks = int(o["chunks"]) + (gen_n % spread if spread > 1 else 0)
        texts = answer_chunks(gen_n, chunks, int(o["words_per_chunk"]), list(o["words"]), bool(o["split_words"]))
        ttft_ns, gap_ns = round(ttft_ms * 1e6), round(float(o["gap_ms"]) * 1e6)
        sent: list[str] = []
        t_first: int | None = None
        t_stop: int | None = None
        try:
            if not self.send(conn, "conv", OP_TEXT,
                             event("conv-message", {"conversationId": conv_id, "messageId": message_id}),
                             **ids):
                return
            for i, text in enumerate(texts, 1):
                await sleep_until(t0 + ttft_ns + (i - 1) * gap_ns)
                at = self.send(conn, "chunk", OP_TEXT, event("message", {"output": text, "stop": False}),
                               chunk=i, text=text, **ids)
                if at is None:
                    return
                sent.append(text)
                t_first = at[1] if t_first is None else t_first
            await sleep_until(t0 + ttft_ns + len(texts) * gap_ns)
            at = self.send(conn, "stop", OP_TEXT, event("message", {"output": "", "stop": True}),
                           chunks=len(texts), **ids)
            t_stop = None if at is None else at[1]
        finally:
            self.log("gen_done", conn=conn.cid, **ids, message_id=message_id, web_search=web, tools=tools,
                     ttft_ms=ttft_ms, web_search_delay_ms=web_ms, tools_delay_ms=tools_ms,
                     gap_ms=float(o["gap_ms"]), chunks=len(texts), t_read_mono_ns=t0,
                     t_first_mono_ns=t_first, t_stop_mono_ns=t_stop, texts=sent)

    # --- conversations

    def on_conversation_gen(self, conn: Conn, raw: Any, at: tuple[int, int]) -> None:
        """A gen of the ``conversations`` behaviour: a new conversation, the next turn of a known
        one, or refused (an unknown id)."""
        o = self.opt
        conn.gens += 1
        self.gen_n += 1
        fields: dict[str, Any] = raw if isinstance(raw, dict) else {}
        carried = fields.get(str(o["id_field"]))
        prompt = fields.get("prompt")
        prompt_chars = len(prompt) if isinstance(prompt, str) else None
        if self.stall is None and o["stall_at_s"] is not None:
            start = at[1] + round(float(o["stall_at_s"]) * 1e9)
            self.stall = (start, start + round(float(o["stall_ms"]) * 1e6))
            self.log("stall", start_mono_ns=self.stall[0], end_mono_ns=self.stall[1])
        ids: dict[str, Any] = {"gen": conn.gens, "gen_n": self.gen_n}
        if carried is not None and (not isinstance(carried, str) or carried not in self.convs):
            self.log("gen_received", at=at, conn=conn.cid, **ids, carried_id=carried, conversation_id=None,
                     turn=None, message_id=None, prompt=prompt, prompt_chars=prompt_chars, overlap=False)
            self.log("refused", conn=conn.cid, gen_n=self.gen_n, carried_id=carried, prompt_chars=prompt_chars)
            self.send(conn, "error", OP_TEXT, event("error", {"error": f"unknown conversation {carried}"}), **ids)
            return
        if carried is None:
            conv_id = f"conv{len(self.convs) + 1}-{uuid.uuid4().hex[:8]}"
            conv = self.convs[conv_id] = {"turns": 0, "streaming": False}
        else:
            conv_id, conv = carried, self.convs[carried]
        conv["turns"] += 1
        overlap = bool(conv["streaming"])
        conv["streaming"] = True
        turn = conv["turns"]
        message_id = f"m{self.gen_n}"
        self.log("gen_received", at=at, conn=conn.cid, **ids, carried_id=carried, conversation_id=conv_id,
                 turn=turn, message_id=message_id, prompt=prompt, prompt_chars=prompt_chars, overlap=overlap)
        task = asyncio.get_running_loop().create_task(
            self.generate_turn(conn, {**ids, "conversation_id": conv_id, "message_id": message_id, "turn": turn},
                               conv, carried=carried, prompt_chars=prompt_chars, at=at))
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)

    async def hold(self) -> int:
        """Inside the stall: wait for its end. Returns the ns held (0 outside it)."""
        if self.stall is None:
            return 0
        t = time.monotonic_ns()
        if not self.stall[0] <= t < self.stall[1]:
            return 0
        await sleep_until(self.stall[1])
        return time.monotonic_ns() - t

    async def generate_turn(self, conn: Conn, ids: dict[str, Any], conv: dict[str, Any], *, carried: Any,
                            prompt_chars: int | None, at: tuple[int, int]) -> None:
        """One turn's answer: each frame at its absolute deadline from the read (moved on by what a
        stall held); ``turn`` says what was really sent and when, ``abandoned`` when the client
        went away mid-stream."""
        o = self.opt
        turn, gen_n = ids["turn"], ids["gen_n"]
        ttft_ms = float(o["ttft_ms"]) + (turn - 1) * float(o["turn_delay_ms"])
        chunks = int(o["chunks"])
        ttft_ns, gap_ns = round(ttft_ms * 1e6), round(float(o["gap_ms"]) * 1e6)
        t0 = t_start = at[1]
        held = 0
        sent: list[str] = []
        t_first: int | None = None
        t_stop: int | None = None
        ended = "gone"
        try:
            h = await self.hold()  # a gen read during the stall is taken up when it ends
            held += h
            t0 += h
            t_start = t0
            if not self.send(conn, "conv", OP_TEXT,
                             event("conv-message", {"conversationId": ids["conversation_id"],
                                                    "messageId": ids["message_id"]}), **ids):
                return
            for i in range(1, chunks + 1):
                await sleep_until(t0 + ttft_ns + (i - 1) * gap_ns)
                h = await self.hold()
                held += h
                t0 += h
                text = f"a{gen_n}b{i} "
                sent_at = self.send(conn, "chunk", OP_TEXT, event("message", {"output": text, "stop": False}),
                                    chunk=i, **ids)
                if sent_at is None:
                    return
                sent.append(text)
                t_first = sent_at[1] if t_first is None else t_first
            await sleep_until(t0 + ttft_ns + chunks * gap_ns)
            h = await self.hold()
            held += h
            sent_at = self.send(conn, "stop", OP_TEXT, event("message", {"output": "", "stop": True}),
                                chunks=chunks, **ids)
            if sent_at is not None:
                t_stop, ended = sent_at[1], "stop"
        finally:
            conv["streaming"] = False
            self.log("turn", conn=conn.cid, **ids, carried_id=carried, prompt_chars=prompt_chars, ttft_ms=ttft_ms,
                     chunks=chunks, chunks_sent=len(sent), answer="".join(sent), held_ms=held / 1e6,
                     t_read_mono_ns=at[1], t_read_wall_ns=at[0], t_start_mono_ns=t_start,
                     t_first_mono_ns=t_first, t_stop_mono_ns=t_stop, ended=ended)
            if ended == "gone":
                self.log("abandoned", conn=conn.cid, conversation_id=ids["conversation_id"],
                         message_id=ids["message_id"], turn=turn, chunks_sent=len(sent),
                         reason=conn.ended_by or "closing")

    async def shutdown(self) -> None:
        if self.server is not None:
            self.server.close()
        for conn in list(self.conns.values()):
            for task in conn.tasks:
                task.cancel()
            conn.writer.transport.abort()
        self.log("shutdown")


async def amain(args: argparse.Namespace) -> None:
    options = json.loads(args.options) if args.options else {}
    with open(args.log, "a", encoding="utf-8") as f:
        srv = RawServer(args.behaviour, options, Log(f))
        port = await srv.start(args.port)
        print(f"ws://127.0.0.1:{port}/v2/chat", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await srv.shutdown()
        await asyncio.sleep(0.05)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--log", required=True, help="JSON-lines event log (appended)")
    p.add_argument("--behaviour", default="normal", choices=sorted(DEFAULTS))
    p.add_argument("--options", default="{}", help="behaviour options as one JSON object")
    args = p.parse_args(argv)
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
