"""Open-loop dispatch: send each request at its scheduled time, whatever the target does.

One dispatcher task walks the seeded schedule of :mod:`loadtest.schedule.arrivals`. For arrival *n* it
sleeps until the absolute deadline ``t0 + offset_n`` (the offset comes from the schedule, never
from the previous sleep, so errors do not accumulate), reports it to
``collector.on_offered(t_intended)`` and hands it to the :class:`~loadtest.engine.pool.Pool`, which
runs it on a connection or queues or drops it. Latency is then measured from the intended time
(wrk2's coordinated-omission correction): a stalled target cannot slow the schedule down and
hide its stall, because the dispatcher never waits for a response.

Timer accuracy (aiperf's notes; DESIGN.md): uvloop (libuv) keeps timers in whole milliseconds
of a clock cached per loop iteration, so a sleep ends anywhere from ~1 ms early to ~1 ms late.
The dispatcher re-reads the clock after every wake-up and sleeps again for what is
left. uvloop rounds a remainder under 0.5 ms to a 0 ms timer (one loop iteration), so the last
half millisecond is spent polling the loop, which keeps reading the connections meanwhile.
Measured on the 2-core box (BENCHMARKS.md): at 300 arrivals/s that polling costs nothing
visible (~12 % of a core either way); at 2,000/s it keeps the generator's core busy (~100 %
against ~35 % with a 1 ms timer floor) and buys a schedule-lag p99 of ~0.1 ms instead of
~2.1 ms. Timing comes first, so the polling stays; the CPU figure then overstates the load.
The work for arrival *n+1* (its ``gen`` frame) is prepared *before* sleeping, so after the
wake-up only the record and the hand-over remain. A late dispatcher sends what is due at once
(no skipping: every arrival is offered), yielding to the loop every few sends so the
connections can write.

In open loop a ``session`` is one ``gen`` per arrival: the scenario's ``gen`` steps are used in
turn (arrival *n* uses gen step ``n mod k``); ``ping``, ``think`` and ``set_model`` steps do not
apply (the model is set on every connection by ``target.model``). A trace line's ``prompt``
replaces the step's prompt; its ``prompt_chars`` makes a prompt of that length.

End of the run: arrivals at or after ``duration`` are not sent. When the schedule ends (or the
``requests`` cap is reached) the requests already queued are still served, within the runner's
grace period; when the run is stopped early (a signal) they are reported as ``cancelled``.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from loadtest.clock import Clock
from loadtest.engine.conversation import Conversation
from loadtest.engine.pool import Pool
from loadtest.errors import BadInput
from loadtest.metrics.collector import Collector, RequestRecord
from loadtest.schedule.arrivals import (
    Arrival,
    RateProfile,
    Stage,
    parse_trace,
    schedule,
    trace_prompt,
    trace_schedule,
)

__all__ = ["FrameMaker", "OpenLoop", "SchedulerContext", "arrivals_for", "dispatch", "frame_maker"]

_NS = 1_000_000_000
_BURST = 32  # a late dispatcher yields to the loop after this many back-to-back sends

#: (arrival) -> (encoded gen frame, prompt length in chars)
FrameMaker = Callable[[Arrival], tuple[str, str, tuple[str, ...]]]


class SchedulerContext(Protocol):
    """What the dispatcher needs from the run (``loadtest.engine.users.RunContext`` provides it)."""

    collector: Collector
    stopping: asyncio.Event
    end_ns: int
    clock: Clock
    max_requests: int | None
    requests_issued: int

    def take_request(self) -> int | None: ...

    def stop(self) -> None: ...


def arrivals_for(load: Any) -> Iterator[Arrival]:
    """The arrivals of an open-loop ``LoadConfig``: a rate, stages, or a trace file.

    Reads the trace file (``load.trace`` is an absolute path once the scenario is loaded);
    raises :class:`BadInput` if it cannot be read or parsed.
    """
    if load.trace is not None:
        path = Path(load.trace)
        try:
            with path.open(encoding="utf-8") as f:
                arrivals = parse_trace(f, source=path.name)
        except OSError as exc:
            raise BadInput(f"cannot read trace {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise BadInput(f"trace {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        return trace_schedule(arrivals)
    if load.stages:
        profile = RateProfile(stages=[Stage(duration_s=s.duration_s, target=s.target) for s in load.stages])
    else:
        profile = RateProfile(rate_per_s=load.rate_per_s, duration_s=load.duration_s)
    burst = load.burstiness if load.arrival == "gamma" else 1.0
    return schedule(load.arrival, profile, seed=load.seed, burstiness=burst)


def frame_maker(factories: list[Any], *, seed: int) -> FrameMaker:
    """Frames for arrivals from ``factories`` (``session.GenFactory`` objects, used in turn)."""
    if not factories:
        raise BadInput("mode: open needs at least one gen step in session.steps")
    rng = random.Random(seed * 1_000_003 + 999_983)
    builds = [f.build for f in factories]
    k = len(builds)

    def make(a: Arrival) -> tuple[str, str, tuple[str, ...]]:
        return builds[a.index % k](rng, trace_prompt(a.prompt, a.prompt_chars))  # type: ignore[no-any-return]

    return make


class Cursor:
    """The schedule as the dispatcher walks it. The arrival in hand (taken from the schedule,
    not yet offered) is kept, so that a dispatcher cancelled at the end of the drain leaves no
    arrival unaccounted for (:meth:`OpenLoop.run`)."""

    def __init__(self, arrivals: Iterable[Arrival]) -> None:
        self._it = iter(arrivals)
        self.current: Arrival | None = None

    def __iter__(self) -> Cursor:
        return self

    def __next__(self) -> Arrival:
        self.current = next(self._it)
        return self.current


async def dispatch(
    ctx: SchedulerContext, pool: Pool, arrivals: Iterable[Arrival], make_frame: FrameMaker, *, t0_ns: int,
    conversations: Callable[[Arrival], Conversation | None] | None = None,
) -> str:
    """Offer every arrival at ``t0_ns + offset`` (with ``conversations``: each arrival starts a
    conversation, its first turn offered like any arrival, the rest on its connection).

    Returns why it ended: ``"end"`` (the schedule, or the duration), ``"cap"`` (the
    ``requests`` cap) or ``"stopped"`` (the run was stopped early).
    """
    c = ctx.collector
    now = ctx.clock.now_ns
    stopping = ctx.stopping
    end_ns = ctx.end_ns
    submit = pool.submit
    late_run = 0
    cap = ctx.max_requests
    cursor = arrivals if isinstance(arrivals, Cursor) else Cursor(arrivals)
    for a in cursor:
        deadline = t0_ns + round(a.offset_s * _NS)
        if deadline >= end_ns:
            return "end"  # what is queued is still served
        if cap is not None and ctx.requests_issued >= cap:
            ctx.stop()  # as a closed-loop run does: the window ends, the runner drains
            return "cap"
        conv = None if conversations is None else conversations(a)
        # prepared before the sleep: off the timed path
        frame, prompt, tags = (make_frame(a) if conv is None
                               else conv.first_frame(trace_prompt(a.prompt, a.prompt_chars)))
        if deadline > now():
            late_run = 0
            if not await ctx.clock.sleep_until(deadline, stopping):
                return "stopped"
        else:
            # late: send at once. The runner sets ``stopping`` at the end of the duration too;
            # only a stop before the end (signal, cap) cancels arrivals that were due in time
            if stopping.is_set() and now() < end_ns:
                return "stopped"
            late_run += 1
            if late_run >= _BURST:
                late_run = 0
                await asyncio.sleep(0)
        rid = ctx.take_request()
        if rid is None:
            return "cap"
        rec = RequestRecord(request_id=rid, user=-1, phase=c.phase_of(deadline), t_intended=deadline,
                            scheduled=True, prompt_chars=len(prompt), prompt=prompt, tags=tags)
        c.on_offered(deadline)
        if conv is None:
            submit(rec, frame)
        else:
            conv.begin(rec, deadline)
            submit(rec, frame, conv)
        cursor.current = None
    return "end"


class OpenLoop:
    """One open-loop run: dispatch, then serve what is queued and in flight, then close the pool.

    The measured window is the collector's (the duration, or up to an early stop); requests
    still queued when the schedule ends are served in the runner's drain.
    """

    def __init__(self, ctx: SchedulerContext, pool: Pool, arrivals: Iterable[Arrival],
                 make_frame: FrameMaker, conversations: Callable[[Arrival], Conversation | None] | None = None) -> None:
        self.ctx, self.pool, self.arrivals, self.make_frame = ctx, pool, arrivals, make_frame
        self.conversations = conversations

    async def run(self, tg: asyncio.TaskGroup, *, t0_ns: int) -> None:
        """Returns once every arrival is reported; if cancelled (the runner's grace period ran
        out, or a second signal), the pool is still closed and every unfinished request reported.
        """
        pool = self.pool
        pool.attach(tg)
        cursor = Cursor(self.arrivals)
        try:
            try:
                why = await dispatch(self.ctx, pool, cursor, self.make_frame, t0_ns=t0_ns,
                                     conversations=self.conversations)
            except asyncio.CancelledError:
                self._never_sent(cursor, t0_ns)
                raise
            if why == "stopped":
                pool.cancel_queued()
            await pool.drain()
        finally:
            await pool.close()

    def _never_sent(self, cursor: Cursor, t0_ns: int) -> None:
        """The drain ran out while the dispatcher was still behind: every arrival the schedule
        offered inside the window and that was never sent is reported ``cancelled``, so the
        offered rate is the schedule's, and offered = completed + failed + dropped + cancelled
        holds even for a generator that fell far behind."""
        ctx, c = self.ctx, self.ctx.collector
        end = min(ctx.end_ns, c.window_end_ns)
        now = ctx.clock.now_ns()
        pending = [cursor.current] if cursor.current is not None else []
        for a in itertools.chain(pending, cursor):
            deadline = t0_ns + round(a.offset_s * _NS)
            if deadline >= end:
                break
            rid = ctx.take_request()
            if rid is None:
                break
            conv = None if self.conversations is None else self.conversations(a)
            # its class, as it would have been sent
            _, prompt, tags = (self.make_frame(a) if conv is None
                               else conv.first_frame(trace_prompt(a.prompt, a.prompt_chars)))
            rec = RequestRecord(request_id=rid, user=-1, phase=c.phase_of(deadline), t_intended=deadline,
                                scheduled=True, outcome="cancelled", prompt=prompt, tags=tags,
                                error_message="never sent: the generator was still behind when the run ended")
            c.on_offered(deadline)
            if conv is not None:
                conv.begin(rec, deadline)
            c.on_request(rec, now)
            if conv is not None:
                conv.report(now, "unfinished")
