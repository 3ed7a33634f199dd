"""A virtual user's script (closed loop), and the run-wide context users share.

A user holds one persistent connection: connect → auth → optional set-model, then its
steps in order, again and again, until the run stops it. A failed request is recorded
and the run goes on; a broken connection is replaced after a capped, jittered backoff
(:func:`loadtest.schedule.backoff.backoff`), counted as a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from loadtest.clock import Clock, RealClock
from loadtest.engine.connection import DEFAULT_MAX_FRAME_BYTES, Connection, ConnectTimings
from loadtest.engine.conversation import Conversation
from loadtest.engine.tokenstage import TokenStage
from loadtest.errors import ConnectionFailure
from loadtest.metrics.collector import Collector, RequestRecord
from loadtest.protocol import GenRequest, encode_gen
from loadtest.schedule.backoff import backoff

__all__ = ["CONNECT_CONCURRENCY", "GenFactory", "Ramp", "RunContext", "gen_factories", "run_user"]

#: handshakes in flight at once (see RunContext.open_connection)
CONNECT_CONCURRENCY = 256


class GenFactory:
    """Builds the ``gen`` frames of one gen step: prompt choice and optional fields, seeded, and
    the request's tags (``step``, ``web_search``, ``tools`` from what the frame carries, then the
    step's own), computed once per combination: a request only picks one."""

    def __init__(self, step: Any, step_tag: str = "gen1") -> None:
        self.step = step
        self.prompts: tuple[str, ...] = tuple(step.prompts)
        self._cycle = itertools.count()
        own = {"step": step_tag, **step.tags}
        self._tags = {(web, tools): tuple(f"{k}={v}" for k, v in sorted(
            {**own, "web_search": "true" if web else "false", "tools": "true" if tools else "false"}.items()))
            for web in (False, True) for tools in (False, True)}
        self._carries_web = bool(step.carries_web_search)

    def build(self, rng: random.Random, prompt: str | None = None, *, context: str = "",
              extra: dict[str, Any] | None = None) -> tuple[str, str, tuple[str, ...]]:
        """(encoded frame, the prompt as sent, the request's tags). ``context`` goes before the
        prompt (a conversation's history, sent by the client); ``extra`` adds gen fields (a
        conversation's id)."""
        s = self.step
        if prompt is None:
            if s.pick == "random":
                prompt = rng.choice(self.prompts)
            else:
                prompt = self.prompts[next(self._cycle) % len(self.prompts)]
        prompt = context + prompt
        tools = s.tools if s.tools and (s.tools_share >= 1 or rng.random() < s.tools_share) else None
        web = s.web_search_share >= 1 or rng.random() < s.web_search_share
        req = GenRequest(
            prompt=prompt,
            temperature=s.temperature,
            enable_web_search=s.enable_web_search if web else None,
            web_search=s.web_search if web else None,
            tools=list(tools) if tools else None,
            extra={**(s.extra or {}), **(extra or {})},
        )
        return encode_gen(req), prompt, self._tags[(web and self._carries_web, bool(tools))]


def gen_factories(steps: Sequence[Any]) -> dict[int, GenFactory]:
    """A :class:`GenFactory` for each gen step of ``steps``, by ``id(step)``, each with its
    ``step`` tag (its name, else ``gen1``, ``gen2``, … by position)."""
    from loadtest.scenario import GenStep

    gens = [s for s in steps if isinstance(s, GenStep)]
    return {id(g): GenFactory(g, g.name or f"gen{i}") for i, g in enumerate(gens, 1)}


@dataclass(kw_only=True)
class RunContext:
    """What every user and the scheduler share during one run."""

    session: aiohttp.ClientSession | None  # None only with ``connector``
    url: str
    api_key: str | None
    model: str | None
    connect_s: float
    first_token_s: float
    stream_s: float
    collector: Collector
    end_ns: int
    max_requests: int | None = None
    seed: int = 1
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    clock: Clock = field(default_factory=RealClock)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    connect_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONNECT_CONCURRENCY))
    active_sessions: int = 0
    connections_opened: int = 0
    in_flight: int = 0
    requests_issued: int = 0
    target_users: Callable[[], int] | None = None
    #: opens one connection (connect, auth, set-model) filling the timings; None: a WebSocket
    #: to ``url`` through ``session``. Tests plug a fake transport in here (like httpx's
    #: MockTransport), so users and the pool run in virtual time without sockets.
    connector: Callable[[int, ConnectTimings], Awaitable[Connection]] | None = None
    #: with a tokenizer: completed answers are counted there, off the loop, then reported
    tokens: TokenStage | None = None
    #: (this worker, of how many): request and connection ids are disjoint across workers
    shard: tuple[int, int] = (0, 1)
    _ids: itertools.count[int] = field(init=False)
    _conn_ids: itertools.count[int] = field(init=False)

    def __post_init__(self) -> None:
        index, workers = self.shard
        self._ids = itertools.count(index + 1, workers)
        self._conn_ids = itertools.count(index + 1, workers)

    def running(self) -> bool:
        return not self.stopping.is_set() and self.clock.now_ns() < self.end_ns

    def stop(self) -> None:
        """Stop starting work (a signal, the request cap, the end of the duration).

        A stop before the planned end also ends the measured window at this moment.
        """
        if not self.stopping.is_set():
            self.collector.end_window(self.clock.now_ns())
            self.stopping.set()

    def take_request(self) -> int | None:
        """A fresh request id, or None when the request cap is reached."""
        if self.max_requests is not None and self.requests_issued >= self.max_requests:
            self.stop()
            return None
        self.requests_issued += 1
        return next(self._ids)

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the run is stopping."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stopping.wait()

    async def sleep_until_ns(self, deadline_ns: int) -> None:
        """Sleep until the deadline, or until the run is stopping."""
        await self.clock.sleep_until(deadline_ns, self.stopping)

    async def open_connection(self, *, record: bool = True) -> Connection:
        """Connect, auth and set the model; the setup times go to the collector when ``record``."""
        timings = ConnectTimings()
        # At most CONNECT_CONCURRENCY handshakes at once: 10,000 users connecting in the
        # same instant overflow the server's accept queue (each overflow costs a 1-15 s SYN
        # retry) and starve every handshake of loop time. The wait for a slot is the
        # generator's, so `connect` is timed from when the handshake starts.
        async with self.connect_slots:
            if self.connector is not None:
                conn = await self.connector(next(self._conn_ids), timings)
            else:
                assert self.session is not None
                conn = await Connection.open(
                    self.session, self.url, conn_id=next(self._conn_ids), api_key=self.api_key,
                    model=self.model, timeout_s=self.connect_s, timings=timings,
                    max_frame_bytes=self.max_frame_bytes, clock=self.clock,
                )
        if not record:
            return conn
        self.connections_opened += 1
        self.collector.on_setup(connect_ns=timings.connect_ns, auth_ns=timings.auth_ns,
                                set_model_ns=timings.set_model_ns, at_ns=self.clock.now_ns())
        return conn

    async def session_step(self, step: Any, conn: Connection) -> None:
        """A ``ping`` or a ``set_model`` step on ``conn``, timed; a failure is a session error."""
        from loadtest.scenario import PingStep

        now = self.clock.now_ns
        try:
            if isinstance(step, PingStep):
                self.collector.on_ping(await conn.ping(self.first_token_s), now())
            else:
                await conn.set_model(step.model, self.connect_s)
                self.collector.on_step(now())
        except ConnectionFailure as exc:
            self.collector.on_failure(exc.category, str(exc), now())

    async def gen(self, conn: Connection, frame: str, rec: RequestRecord, *, abandon_after: int = 0) -> None:
        """Run one request on ``conn`` and report it, whatever happens (``abandon_after`` > 0:
        the user stops reading after that many chunks: outcome ``abandoned``)."""
        self.in_flight += 1
        try:
            abandoned = await conn.stream(frame, rec, first_token_s=self.first_token_s, stream_s=self.stream_s,
                                          abandon_after=abandon_after)
            rec.outcome = "abandoned" if abandoned else "ok"
        except ConnectionFailure as exc:
            rec.outcome = "failed"
            rec.error_category = exc.category
            rec.error_message = str(exc)
        except asyncio.CancelledError:
            rec.outcome = "cancelled"
            raise
        finally:
            self.in_flight -= 1
            if not rec.t_intended:
                rec.t_intended = rec.t_send
            if rec.t_send:
                self.collector.on_sent(rec)
            if self.tokens is not None and rec.outcome == "ok":
                self.tokens.submit(rec)
            else:
                self.collector.on_request(rec, self.clock.now_ns())


async def run_user(ctx: RunContext, uid: int, steps: list[Any], *, pace_s: float | None = None,
                   users: int = 1, conversation: Any = None) -> None:
    """One closed-loop virtual user; returns when the run stops it. With ``conversation`` (the
    scenario's ``session.conversation``) it holds conversations back to back."""
    user = _User(ctx, uid, steps, pace_s=pace_s, users=users)
    await (user.converse(conversation) if conversation is not None else user.run())


class _User:
    """A virtual user's state: its connection, seeded randomness and pacing slot."""

    def __init__(self, ctx: RunContext, uid: int, steps: list[Any], *, pace_s: float | None, users: int) -> None:
        self.ctx, self.uid, self.steps, self.pace_s = ctx, uid, steps, pace_s
        self.rng = random.Random(ctx.seed * 1_000_003 + uid)
        self.gens = gen_factories(steps)
        self.delays = backoff(rng=self.rng)
        self.conn: Connection | None = None
        self.paced_n = 0
        # pacing slots spread over the users, so that paced users do not start in lock-step
        self.phase_ns = round((pace_s or 0) * 1e9 * uid / max(1, users))
        self.now = ctx.clock.now_ns
        self.start_ns = self.now()

    def still_mine(self) -> bool:
        ctx = self.ctx
        return ctx.running() and (ctx.target_users is None or self.uid < ctx.target_users())

    async def run(self) -> None:
        ctx = self.ctx
        ctx.active_sessions += 1
        try:
            while self.still_mine():
                conn = await self._usable()
                if conn is None:
                    continue
                for step in self.steps:
                    if not self.still_mine() or conn.broken:
                        break
                    if not await self._step(step, conn):
                        break
                if conn.broken and not conn.retired:
                    await ctx.sleep(next(self.delays))  # a retired connection is replaced at once
        finally:
            ctx.active_sessions -= 1
            if self.conn is not None:
                await self.conn.close()

    async def converse(self, config: Any) -> None:
        """Conversations back to back (loadtest.engine.conversation), each on one connection; a
        conversation that failed or was abandoned leaves its connection behind, and the next
        one opens a new one. The think after a conversation's last answer is waited out."""
        ctx = self.ctx
        ctx.active_sessions += 1
        n = 0
        try:
            while self.still_mine():
                conn = await self._usable()
                if conn is None:
                    continue
                if not self.still_mine():  # the run ended while the connection was being opened
                    break
                n += 1
                conv = Conversation(ctx, self.steps, self.gens, config, self.rng,
                                    key=f"u{self.uid}-{n}", user=self.uid)
                await conv.run(conn)
                if conn.broken and not conn.retired and conv.outcome == "failed":
                    await ctx.sleep(next(self.delays))  # the target broke it: back off first
                if conv.cursor_ns > self.now():
                    await ctx.sleep_until_ns(conv.cursor_ns)
        finally:
            ctx.active_sessions -= 1
            if self.conn is not None:
                await self.conn.close()

    async def _usable(self) -> Connection | None:
        """The user's connection, replaced first when it is missing or broken (None: failed)."""
        conn = self.conn
        if conn is None or conn.broken:
            return await self._connect()
        return conn

    async def _connect(self) -> Connection | None:
        """Replace a broken connection (a reconnect) or open the first; None after a failure."""
        ctx = self.ctx
        if self.conn is not None:
            await self.conn.close()
            ctx.collector.on_reconnect()
            self.conn = None
        try:
            self.conn = await ctx.open_connection()
        except ConnectionFailure as exc:
            ctx.collector.on_failure(exc.category, str(exc), self.now())
            await ctx.sleep(next(self.delays))
            return None
        self.delays = backoff(rng=self.rng)
        return self.conn

    async def _step(self, step: Any, conn: Connection) -> bool:
        """Run one step; False when the user should stop going through its steps."""
        from loadtest.scenario import GenStep, PingStep, SetModelStep, ThinkStep

        ctx = self.ctx
        if isinstance(step, GenStep):
            return await self._gen(step, conn)
        if isinstance(step, ThinkStep):
            await ctx.sleep(step.sample_s(self.rng))
        elif isinstance(step, PingStep | SetModelStep):
            await ctx.session_step(step, conn)
        return True

    async def _gen(self, step: Any, conn: Connection) -> bool:
        ctx, now = self.ctx, self.now
        intended = queued = 0
        if self.pace_s:
            intended = self.start_ns + self.phase_ns + round(self.paced_n * self.pace_s * 1e9)
            self.paced_n += 1
            # a user still busy past its slot waited behind its own previous request:
            # queue time, not schedule lag
            queued = max(0, now() - intended)
            await ctx.sleep_until_ns(intended)
            if not self.still_mine():
                return False
        rid = ctx.take_request()
        if rid is None:
            return False
        frame, prompt, tags = self.gens[id(step)].build(self.rng)
        rec = RequestRecord(request_id=rid, user=self.uid, prompt_chars=len(prompt), prompt=prompt, tags=tags)
        if intended:
            rec.t_intended = intended
            rec.scheduled = True
            rec.queue_ns = queued
            ctx.collector.on_offered(intended)
        rec.phase = ctx.collector.phase_of(intended or now())
        await ctx.gen(conn, frame, rec)
        return True


class Ramp:
    """Closed-loop users that follow a stage profile (k6's ramping VUs).

    Call :meth:`step` every ~100 ms: users ``0 .. want-1`` run (those of this worker's
    shard: ``uid % workers == index``), ``want`` being the profile's value now; a user above the profile ends at its next step (``ctx.target_users``). Pacing
    phases are spread over the profile's peak, so users keep their slots as the ramp moves.
    """

    def __init__(self, ctx: RunContext, tg: asyncio.TaskGroup, profile: Any, steps: list[Any], *,
                 pace_s: float | None, t0_ns: int, conversation: Any = None) -> None:
        self.ctx, self.tg, self.profile, self.steps, self.pace_s, self.t0_ns = ctx, tg, profile, steps, pace_s, t0_ns
        self.conversation = conversation
        self.peak = max(1, round(profile.peak))
        self.running: dict[int, asyncio.Task[None]] = {}
        ctx.target_users = self.want_now

    def want_now(self) -> int:
        return self.want_at(self.ctx.clock.now_ns())

    def want_at(self, now_ns: int) -> int:
        value: float = self.profile.value_at((now_ns - self.t0_ns) / 1e9)
        return round(value)

    def step(self, now_ns: int) -> list[asyncio.Task[None]]:
        """Start the users the profile wants now and that do not run; returns their tasks."""
        if not self.ctx.running():
            return []
        started = []
        index, workers = self.ctx.shard
        for uid in range(index, self.want_at(now_ns), workers):  # this worker's users: uid ≡ index
            task = self.running.get(uid)
            if task is None or task.done():
                task = self.tg.create_task(run_user(self.ctx, uid, self.steps, pace_s=self.pace_s, users=self.peak,
                                                    conversation=self.conversation))
                self.running[uid] = task
                started.append(task)
        return started
