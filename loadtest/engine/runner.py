"""Run a scenario to a result: the one entry point the CLI (and tests) call.

``run_scenario`` is synchronous: it starts the embedded mock in its own process when
the target is ``mock`` (so the mock does not share the generator's CPU), runs the load
on a uvloop event loop (loop factory, no global policy), installs SIGINT/SIGTERM
handlers (first signal: stop starting work and give in-flight streams a grace period;
second: stop at once), and returns a :class:`RunResult` even when interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvloop

from loadtest.arrivals import RateProfile, Stage
from loadtest.clock import Clock, RealClock
from loadtest.engine.connection import make_session, target_url
from loadtest.engine.openloop import OpenLoop, arrivals_for, frame_maker
from loadtest.engine.pool import Pool
from loadtest.engine.retry import backoff
from loadtest.engine.selfwatch import SelfWatch, fell_behind, saturation_reasons
from loadtest.engine.users import GenFactory, Ramp, RunContext, run_user
from loadtest.errors import AuthFailed, AuthTimeout, ConnectionFailure, TargetUnreachable, redact
from loadtest.metrics.collector import Collector, RequestRecord
from loadtest.mock.server import MockProcess, model_args

__all__ = ["Progress", "RunResult", "run_scenario"]

_NS = 1_000_000_000
GRACE_S = 10.0  # in-flight streams get this long to finish after the duration (or a signal)
_PROBE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Progress:
    elapsed_s: float
    total_s: float
    active_sessions: int
    in_flight: int
    completed: int
    failed: int
    errors: int
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    phase: str


@dataclass(kw_only=True)
class RunResult:
    scenario: Any
    collector: Collector
    target: str  # redacted
    started_at: str
    duration_s: float  # t0 to the end of the drain
    measure_s: float  # the measured window's length
    drain_s: float = 0.0  # from the end of the window until the last request ended (or the grace ran out)
    interrupted: bool = False
    cpu_percents: list[float] = field(default_factory=list)
    saturation: list[str] = field(default_factory=list)
    offered_rate: float | None = None
    achieved_rate: float | None = None
    insecure: bool = False


def _users_profile(sc: Any) -> RateProfile | None:
    stages = sc.load.stages
    if sc.load.mode != "closed" or not stages:
        return None
    return RateProfile(stages=[Stage(duration_s=s.duration_s, target=s.target) for s in stages], start=0.0)


def _shown(ctx: RunContext) -> str:
    """The URL as a user may see it: with ``apikey=***`` when a key is in use."""
    return redact(target_url(ctx.url, ctx.api_key), ctx.api_key)


async def _probe(ctx: RunContext) -> None:
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
    raise TargetUnreachable(
        f"cannot reach {_shown(ctx)} after {_PROBE_ATTEMPTS} attempts: {last}"
    )


def _wall_ms(epoch_ns: int) -> str:
    """ISO 8601 UTC with milliseconds: the wall-clock time of the run's t0."""
    dt = datetime.fromtimestamp(epoch_ns // 1_000_000 / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ns // 1_000_000 % 1000:03d}Z"


async def _run(
    sc: Any,
    *,
    url: str,
    api_key: str | None,
    ssl_context: ssl.SSLContext | bool | None,
    progress: Callable[[Progress], None] | None,
    request_sink: Callable[[RequestRecord, int], None] | None,
    insecure: bool,
    clock: Clock | None = None,
) -> RunResult:
    """The one-process run: probe, pool, load for the duration, drain, figures.

    Coordinator and worker in one function for now (see issue 11); the order matters:
    t0 (and ``started_at``, its wall-clock time) is taken after the probe and the pool's
    first connections, so set-up never eats into the measured window.
    """
    load = sc.load
    duration_s = float(load.duration_s)
    loop = asyncio.get_running_loop()
    hard_stop = asyncio.Event()
    signals_seen = 0

    clock = clock or RealClock()
    now = clock.now_ns
    session = make_session(ssl_context=ssl_context)
    t0 = now()
    collector = Collector(t0_ns=t0, warmup_s=float(load.warmup_s), duration_s=duration_s,
                          request_sink=request_sink)
    ctx = RunContext(
        session=session, url=url, api_key=api_key, model=sc.target.model,
        connect_s=sc.timeouts.connect_s, first_token_s=sc.timeouts.first_token_s,
        stream_s=sc.timeouts.stream_s, collector=collector, end_ns=t0 + round(duration_s * _NS),
        max_requests=load.requests, seed=load.seed, max_frame_bytes=sc.target.max_frame_bytes, clock=clock,
    )

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        ctx.stop()
        if signals_seen > 1:
            hard_stop.set()

    installed: dict[signal.Signals, Any] = {}  # signal -> the handler to put back after the run
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
            installed[sig] = previous

    watch = SelfWatch(collector.on_loop_lag)
    pool: Pool | None = None
    open_loop: OpenLoop | None = None
    t_done = t0
    started_at = ""
    try:
        if load.mode == "open":  # schedule and trace checked before any connection opens
            arrivals = arrivals_for(load)
            make_frame = frame_maker([GenFactory(s) for s in sc.session.steps if s.kind == "gen"],
                                     seed=load.seed)
        await _probe(ctx)
        if load.mode == "open":  # the initial connections open before the measured clock starts
            pool = Pool(ctx, max_connections=load.max_connections, max_queue=load.max_queue, seed=load.seed)
            await pool.start(load.connections or 1)
            open_loop = OpenLoop(ctx, pool, arrivals, make_frame)
        # the probe and the pool's set-up must not eat into the measured time: t0 is now
        t0 = now()
        started_at = _wall_ms(time.time_ns())
        collector.start(t0)
        ctx.end_ns = t0 + round(duration_s * _NS)
        if ctx.stopping.is_set():  # a signal during the probe: nothing of the window was run
            collector.end_window(t0)
        profile = _users_profile(sc)

        async with asyncio.TaskGroup() as tg:
            watch_task = tg.create_task(watch.run())
            workers: list[asyncio.Task[None]] = []
            if open_loop is not None:
                workers.append(tg.create_task(open_loop.run(tg, t0_ns=t0)))
            elif profile is None:
                workers.append(tg.create_task(_start_users(tg, ctx, sc, workers)))
            ticker = tg.create_task(_ticker(ctx, duration_s, progress, workers, tg, sc, profile))
            # wait for the end of the duration (or a stop), then drain what is in flight
            await ctx.sleep_until_ns(ctx.end_ns)
            ctx.stop()
            grace_end = now() + round(min(GRACE_S, sc.timeouts.stream_s) * _NS)
            while any(not w.done() for w in workers) and now() < grace_end:
                if hard_stop.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await hard_stop.wait()
            t_done = now()
            for w in workers:
                w.cancel()
            ticker.cancel()
            watch_task.cancel()
    finally:
        for sig, previous in installed.items():
            loop.remove_signal_handler(sig)
            if previous is not None:
                # remove_signal_handler leaves the default (KeyboardInterrupt / terminate):
                # the CLI's interrupt guard goes back in (loadtest.entry)
                signal.signal(sig, previous)
        if pool is not None:
            await pool.close()  # idempotent; run_open closed it unless the run failed before
        await session.close()

    gc.unfreeze()
    t_end = now()
    collector.close_intervals(t_end, final=True)
    lag = collector.metrics.totals["loop_lag"].summary_ms()
    cpu = [p for at, p in watch.cpu_samples if collector.in_window(at)]
    lag_p99 = lag["p99"]
    sched_p99 = collector.metrics.totals["schedule_lag"].summary_ms()["p99"]
    window_s = collector.window_s
    offered = achieved = None
    if collector.offered:
        offered = collector.offered / window_s if window_s else 0.0
        achieved = collector.sent_in_window / window_s if window_s else 0.0
    reasons = saturation_reasons(
        float(lag_p99) if lag_p99 is not None else None, cpu,
        schedule_lag_p99_ms=float(sched_p99) if sched_p99 is not None else None,
    )
    behind = fell_behind(offered, achieved, window_s, queue_p99_ms=collector.metrics.totals["queue"].summary_ms()["p99"],
                         schedule_lag_p99_ms=sched_p99, max_connections=load.max_connections if open_loop else None)
    if behind:
        reasons.append(behind)
    return RunResult(
        scenario=sc, collector=collector, target=redact(target_url(url, api_key), api_key), started_at=started_at,
        duration_s=(t_end - t0) / _NS, measure_s=window_s,
        drain_s=max(0, t_done - collector.window_end_ns) / _NS if started_at else 0.0,
        interrupted=signals_seen > 0, cpu_percents=cpu,
        saturation=reasons, offered_rate=offered, achieved_rate=achieved, insecure=insecure,
    )


#: users started per batch; between batches the loop runs (signals, the ticker, connections)
_USER_BATCH = 500


async def _start_users(tg: asyncio.TaskGroup, ctx: RunContext, sc: Any, workers: list[asyncio.Task[None]]) -> None:
    """Start the closed loop's users in batches, so that a stop is honoured at once even
    while a very large number of users is being created."""
    steps = list(sc.session.steps)
    users = sc.load.concurrency
    for uid in range(users):
        if ctx.stopping.is_set():
            return
        workers.append(tg.create_task(run_user(ctx, uid, steps, pace_s=sc.load.pace_s, users=users)))
        if uid % _USER_BATCH == _USER_BATCH - 1:
            await asyncio.sleep(0)


async def _ticker(
    ctx: RunContext,
    duration_s: float,
    progress: Callable[[Progress], None] | None,
    workers: list[asyncio.Task[None]],
    tg: asyncio.TaskGroup,
    sc: Any,
    profile: RateProfile | None,
) -> None:
    """Every 100 ms: gauges and the user ramp; once a second: interval snapshots, progress."""
    c = ctx.collector
    ramp = None if profile is None else Ramp(ctx, tg, profile, list(sc.session.steps), pace_s=sc.load.pace_s,
                                             t0_ns=c.t0_ns)
    next_tick = c.t0_ns + _NS
    frozen_at = 0  # connections opened when the heap was last frozen
    while True:
        now = ctx.clock.now_ns()
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
            workers.extend(ramp.step(now))
        c.tick(now, active_sessions=ctx.active_sessions, in_flight=ctx.in_flight)
        if now >= next_tick:
            next_tick += _NS
            if progress is not None:
                progress(_progress(ctx, now, duration_s))
        await asyncio.sleep(0.1)


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


def run_scenario(
    sc: Any,
    *,
    api_key: str | None = None,
    ssl_context: ssl.SSLContext | bool | None = None,
    insecure: bool = False,
    progress: Callable[[Progress], None] | None = None,
    request_sink: Callable[[RequestRecord, int], None] | None = None,
) -> RunResult:
    """Run ``sc`` (a validated Scenario) to completion, interruption, or an error."""
    url = sc.target.url

    def go(target: str) -> RunResult:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_run(sc, url=target, api_key=api_key, ssl_context=ssl_context,
                                   progress=progress, request_sink=request_sink, insecure=insecure))

    if url != "mock":
        return go(url)
    m = sc.mock
    faults = m.faults.spec if m.faults.active else None
    with MockProcess(model_args(m.model, seed=sc.mock_seed, faults=faults)) as mock_url:
        return go(mock_url)
