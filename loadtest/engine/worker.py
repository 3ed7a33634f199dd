"""One worker: its shard of the load, on one event loop, into one collector.

A worker is given plain data (:class:`WorkerSpec`: the scenario, its shard, the target, a
common start time) and gives plain data back (:class:`WorkerReport`: its
:class:`~loadtest.metrics.figures.Figures` — interval snapshots of every histogram, every
counter, per-second rows — and its own health). It owns no signal and writes no run
directory: the coordinator (:mod:`loadtest.runner.coordinator`) does, for one worker in its own
process or many in others, and merges their reports exactly.

The order inside :meth:`Worker.run` matters: the reachability probe and the open-loop
pool's first connections come before t0, so set-up never eats into the measured window;
t0's wall-clock time is ``started_at``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from loadtest.clock import Clock, RealClock
from loadtest.engine.connection import make_session, target_url
from loadtest.engine.conversation import Conversation
from loadtest.engine.loop import loop_name
from loadtest.engine.openloop import OpenLoop, arrivals_for, frame_maker
from loadtest.engine.pool import Pool
from loadtest.engine.result import Progress, WorkerHealth
from loadtest.engine.selfwatch import LATE_MS, SelfWatch, fell_behind, saturation_reasons
from loadtest.engine.tls import Tls
from loadtest.engine.tokenstage import TokenStage
from loadtest.engine.users import Ramp, RunContext, gen_factories, run_user
from loadtest.errors import AuthFailed, AuthTimeout, ConnectionFailure, TargetUnreachable, redact
from loadtest.metrics.collector import Collector, RequestRecord
from loadtest.metrics.figures import Figures
from loadtest.metrics.tokens import TokenCounter
from loadtest.scenario.conversation import ConversationConfig
from loadtest.schedule.arrivals import Arrival, RateProfile, Stage
from loadtest.schedule.backoff import backoff

__all__ = ["GRACE_S", "Worker", "WorkerReport", "WorkerSpec", "share", "wall_ms"]

_NS = 1_000_000_000
_TOKENS_BEHIND_NS = _NS
GRACE_S = 10.0  # in-flight streams get this long to finish after the duration (or a stop)
_PROBE_ATTEMPTS = 3
#: users started per batch; between batches the loop runs (signals, the ticker, connections)
_USER_BATCH = 500


@dataclass(frozen=True, kw_only=True)
class WorkerSpec:
    """What a worker needs, as plain data (it crosses a process boundary as is)."""

    scenario: Any  # a validated Scenario
    url: str  # the target (the embedded mock's real URL, not "mock")
    api_key: str | None = field(default=None, repr=False)  # a secret
    tls: Tls = field(default_factory=Tls)  # each worker builds its own SSLContext (it does not pickle)
    index: int = 0  # this worker's number, 0 .. workers-1
    workers: int = 1
    #: target.tokenizer's text (read and checked by the coordinator), None: no token counts
    tokenizer_json: str | None = field(default=None, repr=False)


def share(total: int, index: int, workers: int) -> int:
    """Worker ``index``'s share of ``total`` (users, connections, a request cap): the shares
    differ by at most one and add up to ``total`` exactly."""
    return total // workers + (index < total % workers)


@dataclass(kw_only=True)
class WorkerReport:
    """What a worker measured, as plain data."""

    index: int
    figures: Figures
    started_at_epoch_ns: int  # t0's wall-clock time
    duration_s: float  # t0 to the end of the drain
    drain_s: float
    health: WorkerHealth
    cpu_percents: list[float] = field(default_factory=list)


def wall_ms(epoch_ns: int) -> str:
    """ISO 8601 UTC with milliseconds."""
    dt = datetime.fromtimestamp(epoch_ns // 1_000_000 / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ns // 1_000_000 % 1000:03d}Z"


def _users_profile(sc: Any) -> RateProfile | None:
    stages = sc.load.stages
    if sc.load.mode != "closed" or not stages:
        return None
    return RateProfile(stages=[Stage(duration_s=s.duration_s, target=s.target) for s in stages], start=0.0)


def _shown(ctx: RunContext) -> str:
    """The URL as a user may see it: with ``apikey=***`` when a key is in use."""
    return redact(target_url(ctx.url, ctx.api_key), ctx.api_key)


async def probe(ctx: RunContext) -> None:
    """Open one connection with bounded retries; TargetUnreachable if none succeeds.

    An auth failure is retried too: a proxy that refuses some handshakes (overload,
    a flaky auth backend) must not end the run on one unlucky draw; a key that is
    really wrong fails every attempt and ends it with the auth message.
    """
    delays = backoff(base_s=0.25, cap_s=2.0)
    last: ConnectionFailure | None = None
    for attempt in range(_PROBE_ATTEMPTS):
        try:
            conn = await ctx.open_connection(record=False)  # a check, not part of the load
        except ConnectionFailure as exc:
            last = exc
            if attempt + 1 < _PROBE_ATTEMPTS:
                await asyncio.sleep(next(delays))
            continue
        await conn.close()
        return
    if isinstance(last, AuthTimeout):
        raise TargetUnreachable(
            f"{_shown(ctx)} accepted the WebSocket but sent no auth-connect-complete ({_PROBE_ATTEMPTS} "
            f"attempts): {last}. An auth timeout, not a refused key: is this the chat proxy's URL?"
        )
    if isinstance(last, AuthFailed):
        raise TargetUnreachable(
            f"{_shown(ctx)} refused the API key ({_PROBE_ATTEMPTS} attempts): {last}. Check the key "
            "(--api-key, or the variable named by target.api_key_env)."
        )
    raise TargetUnreachable(f"cannot reach {_shown(ctx)} after {_PROBE_ATTEMPTS} attempts: {last}")


class Worker:
    """Runs one :class:`WorkerSpec` on the running event loop. ``stop()`` asks it to stop
    starting work and drain (a first Ctrl-C); ``abort()`` ends the drain at once (a second)."""

    def __init__(
        self,
        spec: WorkerSpec,
        *,
        clock: Clock | None = None,
        request_sink: Callable[[RequestRecord, int], None] | None = None,
        on_tick: Callable[[Figures, Progress], None] | None = None,
        ready: Callable[[], Awaitable[int | None]] | None = None,
    ) -> None:
        """``on_tick`` gets, every second, what is new in this worker's figures (for a
        coordinator in another process). ``ready`` is awaited once the worker is set up
        (probe, pool): it returns the common start (wall clock, ns since the epoch) that
        several workers' t0 share, or None to start at once."""
        self.spec = spec
        self.clock = clock or RealClock()
        self._sink = request_sink
        self._on_tick = on_tick
        self._ready = ready
        self._hard_stop = asyncio.Event()
        self._ctx: RunContext | None = None
        self._stop_early = False

    def stop(self) -> None:
        self._stop_early = True
        if self._ctx is not None:
            self._ctx.stop()

    def abort(self) -> None:
        self.stop()
        self._hard_stop.set()

    def _context(self, collector: Collector, session: Any) -> RunContext:
        sc = self.spec.scenario
        load = sc.load
        index, workers = self.spec.index, self.spec.workers
        return RunContext(
            session=session, url=self.spec.url, api_key=self.spec.api_key, model=sc.target.model,
            connect_s=sc.timeouts.connect_s, first_token_s=sc.timeouts.first_token_s,
            stream_s=sc.timeouts.stream_s, collector=collector,
            end_ns=collector.t0_ns + round(float(load.duration_s) * _NS),
            max_requests=None if load.requests is None else share(load.requests, index, workers),
            seed=load.seed, max_frame_bytes=sc.target.max_frame_bytes, clock=self.clock, shard=(index, workers),
        )

    async def _wait_for_start(self) -> None:
        """Several workers start their t0 together, at the coordinator's wall-clock instant."""
        at = None if self._ready is None else await self._ready()
        if at is not None:
            await self.clock.sleep_until(self.clock.now_ns() + max(0, at - self.clock.wall_ns()))

    def _conversations(self, ctx: RunContext) -> Callable[[Arrival], Conversation | None] | None:
        """Open loop with ``session.conversation``: each arrival starts a conversation (seeded by
        its index: the same schedule and seed give the same conversations on any worker). A
        replayed trace's conversations (arrivals with later turns) are replayed as recorded."""
        session = self.spec.scenario.session
        config = session.conversation
        if config is None and self.spec.scenario.load.trace is None:
            return None
        steps = list(session.steps)
        gens = gen_factories(steps)
        seed = self.spec.scenario.load.seed
        replayed = config or ConversationConfig.model_validate({})

        def start(a: Arrival) -> Conversation | None:
            if config is None and not a.followups:
                return None  # a lone gen, as ever
            rng = random.Random((seed * 1_000_003 + a.index) * 2_654_435_761 % 2**61)
            return Conversation(ctx, steps, gens, replayed, rng, key=f"a{a.index}", user=-1,
                                script=a.followups if a.followups else None)

        return start

    def _open_loop(self, ctx: RunContext) -> tuple[Pool, Any, Any]:
        """This worker's share of the open loop: every ``workers``-th arrival of the one global
        schedule (so the workers' arrivals together are exactly the schedule one process would
        send, for every arrival kind and for a trace), and its share of the pool's limits."""
        load = self.spec.scenario.load
        index, workers = self.spec.index, self.spec.workers
        arrivals = arrivals_for(load)
        if workers > 1:
            arrivals = (a for a in arrivals if a.index % workers == index)
        seed = load.seed if workers == 1 else load.seed * 1_000 + index  # one worker: as always
        make_frame = frame_maker(list(gen_factories(self.spec.scenario.session.steps).values()), seed=seed)
        pool = Pool(ctx, max_connections=max(1, share(load.max_connections, index, workers)),
                    max_queue=share(load.max_queue, index, workers), seed=seed)
        return pool, arrivals, make_frame

    async def run(self) -> WorkerReport:
        """Probe, open the pool, load for the duration, drain; returns what was measured.

        Raises TargetUnreachable (nothing measured) when the probe fails. Its length is the
        run's order of events, kept in one place on purpose (see the module docstring).
        """
        sc = self.spec.scenario
        load = sc.load
        duration_s = float(load.duration_s)
        now = self.clock.now_ns
        session = make_session(ssl_context=self.spec.tls.context(self.spec.url))
        collector = Collector(t0_ns=now(), warmup_s=float(load.warmup_s), duration_s=duration_s,
                              request_sink=self._sink, goodput=sc.slo.goodput,
                              mirror_tags=sc.session.whole_run_tags())
        ctx = self._ctx = self._context(collector, session)
        if self.spec.tokenizer_json is not None:
            counter = TokenCounter(self.spec.tokenizer_json, name=str(sc.target.tokenizer))
            ctx.tokens = TokenStage(counter, collector.on_request, self.clock)
        if self._stop_early:
            ctx.stop()
        watch = SelfWatch(collector.on_loop_lag, self.clock)
        pool: Pool | None = None
        open_loop: OpenLoop | None = None
        t0 = t_done = now()
        started_epoch = 0
        try:
            if load.mode == "open":  # schedule and trace checked before any connection opens
                pool, arrivals, make_frame = self._open_loop(ctx)
            await probe(ctx)
            if pool is not None:  # the initial connections open before the measured clock starts
                await pool.start(max(1, share(load.connections or 1, self.spec.index, self.spec.workers)))
                open_loop = OpenLoop(ctx, pool, arrivals, make_frame, self._conversations(ctx))
            # Why: a full (gen-2) collection walks every object alive, most of them the imported
            # libraries (pandas, pydantic, aiohttp…): 20-40 ms with the loop stopped, at a random
            # moment of the window (an `ab` round at 32 users saw a 33 ms stall and was refused as
            # saturated). Move what exists out of future collections (gc.freeze, ~0 ms; a
            # gc.collect first would cost 25-35 ms a run), so collections during the run walk only
            # the run's own objects. Unfrozen at the end, when garbage frozen here is collected.
            gc.freeze()
            await self._wait_for_start()
            t0 = now()
            started_epoch = self.clock.wall_ns()
            collector.start(t0)
            ctx.end_ns = t0 + round(duration_s * _NS)
            if ctx.stopping.is_set():  # stopped during the set-up: nothing of the window was run
                collector.end_window(t0)
            t_done = await self._load(ctx, open_loop, watch, t0)
        finally:
            if pool is not None:
                await pool.close()  # idempotent; OpenLoop closed it unless the run failed before
            await session.close()
            if ctx.tokens is not None:  # every completed answer counted before the figures are taken
                await ctx.tokens.drain()
                ctx.tokens.close()
        gc.unfreeze()
        t_end = now()
        collector.close_intervals(t_end, final=True)
        cpu = [p for at, p in watch.cpu_samples if collector.in_window(at)]
        figures = collector.export()
        fit = health(self.spec.index, figures, cpu, max_connections=pool.max_connections if pool else None)
        if ctx.tokens is not None:
            fit = dataclasses.replace(fit, tokenizer_cpu_s=round(ctx.tokens.cpu_s, 3))
        if ctx.tokens is not None and ctx.tokens.max_delay_ns > _TOKENS_BEHIND_NS:
            # answers waited over a second to be tokenized: the tokenizer, not the target, set the pace
            fit = dataclasses.replace(fit, saturation=(*fit.saturation, "token counting fell behind (an answer waited "
                                                       f"{ctx.tokens.max_delay_ns / _NS:.1f} s for the tokenizer)"))
        return WorkerReport(
            index=self.spec.index, figures=figures, started_at_epoch_ns=started_epoch,
            duration_s=(t_end - t0) / _NS, drain_s=max(0, t_done - collector.window_end_ns) / _NS,
            health=fit, cpu_percents=cpu,
        )

    async def _load(self, ctx: RunContext, open_loop: OpenLoop | None, watch: SelfWatch, t0: int) -> int:
        """The load itself, then the drain; returns when the drain ended (clock ns)."""
        sc = self.spec.scenario
        now = self.clock.now_ns
        profile = _users_profile(sc)
        async with asyncio.TaskGroup() as tg:
            watch_task = tg.create_task(watch.run())
            tasks: list[asyncio.Task[None]] = []
            if open_loop is not None:
                tasks.append(tg.create_task(open_loop.run(tg, t0_ns=t0)))
            elif profile is None:
                tasks.append(tg.create_task(_start_users(tg, ctx, sc, tasks)))
            ticker = tg.create_task(self._ticker(ctx, tasks, tg, profile))
            # wait for the end of the duration (or a stop), then drain what is in flight
            await ctx.sleep_until_ns(ctx.end_ns)
            ctx.stop()
            grace_end = now() + round(min(GRACE_S, sc.timeouts.stream_s) * _NS)
            while any(not t.done() for t in tasks) and now() < grace_end:
                # every 50 ms: are the streams in flight done? A second signal ends the drain
                if not await self.clock.sleep_until(min(grace_end, now() + 50_000_000), self._hard_stop):
                    break
            t_done = now()
            for t in tasks:
                t.cancel()
            ticker.cancel()
            watch_task.cancel()
        return t_done

    async def _ticker(self, ctx: RunContext, tasks: list[asyncio.Task[None]], tg: asyncio.TaskGroup,
                      profile: RateProfile | None) -> None:
        """Every 100 ms: gauges and the user ramp; once a second: interval snapshots, progress."""
        sc = self.spec.scenario
        c = ctx.collector
        ramp = None if profile is None else Ramp(ctx, tg, profile, list(sc.session.steps), pace_s=sc.load.pace_s,
                                                 t0_ns=c.t0_ns, conversation=sc.session.conversation)
        next_tick = c.t0_ns + _NS
        frozen_at = 0  # connections opened when the heap was last frozen
        while True:
            now = self.clock.now_ns()
            opened = ctx.connections_opened
            if opened >= 100 and opened >= frozen_at * 5 // 4:
                # Why: with thousands of sessions, every full (gen-2) collection walks all their
                # long-lived objects and stops the loop for up to ~1 s (bench_scale saw 13 such
                # pauses while opening 10,000 sessions). Each time the number of connections has
                # grown by a quarter, what exists is moved out of future collections (gc.freeze).
                # Geometric steps: a run that opens N connections (reconnects included) freezes
                # about log1.25(N/100) times, so cyclic garbage held back is bounded.
                # Unfrozen when the run ends.
                gc.freeze()
                frozen_at = opened
            if ramp is not None:
                tasks.extend(ramp.step(now))
            c.tick(now, active_sessions=ctx.active_sessions, in_flight=ctx.in_flight)
            if now >= next_tick:
                next_tick += _NS
                if self._on_tick is not None:
                    self._on_tick(c.take_partial(now), _progress(ctx, now, float(sc.load.duration_s)))
            await asyncio.sleep(0.1)


def health(index: int, figures: Figures, cpu: list[float], *, max_connections: int | None) -> WorkerHealth:
    """Whether this worker's figures can be trusted: its own loop lag, CPU, schedule."""
    totals = figures.metrics.totals
    lag_p99 = totals["loop_lag"].summary_ms()["p99"]
    sched_p99 = totals["schedule_lag"].summary_ms()["p99"]
    reasons = saturation_reasons(
        float(lag_p99) if lag_p99 is not None else None, cpu,
        schedule_lag_p99_ms=float(sched_p99) if sched_p99 is not None else None,
    )
    window = figures.window_s
    behind = None
    if figures.offered and window:
        behind = fell_behind(figures.offered / window, figures.sent_in_window / window, window,
                             queue_p99_ms=totals["queue"].summary_ms()["p99"], schedule_lag_p99_ms=sched_p99,
                             max_connections=max_connections)
        if behind and sched_p99 is not None and sched_p99 > LATE_MS:
            # the dispatcher itself ran late: the generator is the bottleneck (saturated). Behind
            # only because every connection was busy (the target is slow): an overloaded target,
            # said as plainly, but not the generator's fault
            reasons.append(behind)
            behind = None
    s = sorted(cpu)
    return WorkerHealth(index=index, loop=loop_name(asyncio.get_running_loop()), cpu_percent=round(s[len(s) // 2], 1) if s else None,
                        loop_lag_p99_ms=None if lag_p99 is None else float(lag_p99), saturation=tuple(reasons),
                        behind=behind or "")


async def _start_users(tg: asyncio.TaskGroup, ctx: RunContext, sc: Any, tasks: list[asyncio.Task[None]]) -> None:
    """Start the closed loop's users in batches, so that a stop is honoured at once even
    while a very large number of users is being created."""
    steps = list(sc.session.steps)
    users = sc.load.concurrency
    index, workers = ctx.shard
    for n, uid in enumerate(range(index, users, workers)):  # this worker's users: uid ≡ index (mod workers)
        if ctx.stopping.is_set():
            return
        tasks.append(tg.create_task(run_user(ctx, uid, steps, pace_s=sc.load.pace_s, users=users,
                                             conversation=sc.session.conversation)))
        if n % _USER_BATCH == _USER_BATCH - 1:
            await asyncio.sleep(0)


def _progress(ctx: RunContext, now: int, duration_s: float) -> Progress:
    c = ctx.collector
    # rolling TTFT over the last 5 whole seconds
    from loadtest.metrics.recorder import Recorder

    r = Recorder()
    sec = (now - c.t0_ns) // _NS
    for s in range(max(0, sec - 5), sec + 1):
        row = c.seconds.get(s)
        if row is not None and row.ttft is not None:
            r.add(row.ttft)
    p50 = r.percentile_us(50) if r.count else None
    p99 = r.percentile_us(99) if r.count else None
    return Progress(
        elapsed_s=(now - c.t0_ns) / _NS, total_s=duration_s, active_sessions=ctx.active_sessions,
        in_flight=ctx.in_flight, completed=c.completed, failed=c.failed,
        errors=sum(c.errors.values()),
        ttft_p50_ms=None if p50 is None else p50 / 1000, ttft_p99_ms=None if p99 is None else p99 / 1000,
        phase="warmup" if now < c.window_start_ns else ("measure" if now < c.window_end_ns else "drain"),
    )
