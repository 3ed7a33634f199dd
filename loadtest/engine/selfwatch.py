"""The generator watches itself: event-loop lag and process CPU.

Loop lag is how late a timer fires: sleep until a deadline, then read the clock; the
overshoot is time the loop spent on other work before it could run us. A loop that is
late by more than a few ms delays every timestamp the harness takes, so a run with
high lag is *saturated*: its latencies describe the generator, not the target.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import psutil

from loadtest.clock import Clock, RealClock

__all__ = [
    "BEHIND_RATIO",
    "CPU_LIMIT_PERCENT",
    "LAG_LIMIT_MS",
    "SelfWatch",
    "StealMeter",
    "fell_behind",
    "saturation_reasons",
]

LAG_LIMIT_MS = 10.0
CPU_LIMIT_PERCENT = 90.0
LATE_MS = 1.0
#: an open-loop run that sent less than this share of what it offered inside the window fell behind
BEHIND_RATIO = 0.99
_PERIOD_S = 0.05


class SelfWatch:
    """Samples loop lag every 50 ms (into ``on_lag``) and CPU once a second."""

    def __init__(self, on_lag: Callable[[int, int], None], clock: Clock | None = None) -> None:
        self._on_lag = on_lag
        self._clock = clock or RealClock()
        self._proc = psutil.Process()
        self.cpu_samples: list[tuple[int, float]] = []  # (at_ns, percent of one core)
        self._last_cpu = (time.perf_counter(), time.process_time())

    async def run(self) -> None:
        period_ns = round(_PERIOD_S * 1e9)
        now_ns = self._clock.now_ns
        next_at = now_ns() + period_ns
        next_cpu = now_ns() + 1_000_000_000
        while True:
            # one timer, not the clock's sleep-until: the lag measured IS how late it fires
            await asyncio.sleep(max(0.0, (next_at - now_ns()) / 1e9))
            now = now_ns()
            # uvloop wakes timers up to 1 ms early (whole-ms truncation): no negative lag;
            # and a lag under 1 µs is 0 within the histogram's resolution, not out of range
            self._on_lag(max(1_000, now - next_at), now)
            next_at += period_ns
            if next_at < now:  # we fell behind by more than a period: re-anchor, do not burst
                next_at = now + period_ns
            if now >= next_cpu:
                self.sample_cpu(now)
                next_cpu += 1_000_000_000

    def sample_cpu(self, now_ns: int) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        dw = wall - self._last_cpu[0]
        if dw > 0:
            self.cpu_samples.append((now_ns, 100.0 * (cpu - self._last_cpu[1]) / dw))
        self._last_cpu = (wall, cpu)


def saturation_reasons(
    lag_p99_ms: float | None, cpu_percents: list[float], *, schedule_lag_p99_ms: float | None = None
) -> list[str]:
    """Why the generator should not be trusted for this run ([] = it kept up).

    Saturated: loop lag p99 > 10 ms; or CPU median > 90 % of a core *while the generator
    was also late* (loop lag p99 or open-loop schedule lag p99 above 1 ms). CPU alone is
    not evidence: the open-loop dispatcher polls the loop for the last half millisecond
    before each arrival (uvloop timers are whole milliseconds), which at 2,000 arrivals/s
    reads as ~100 % CPU on a generator that sends every request within 0.1 ms of its time.
    A busy loop that is never late distorts no timestamp.
    """
    reasons = []
    if lag_p99_ms is not None and lag_p99_ms > LAG_LIMIT_MS:
        reasons.append(f"event-loop lag p99 {lag_p99_ms:.1f} ms > {LAG_LIMIT_MS:g} ms")
    if cpu_percents:
        s = sorted(cpu_percents)
        median = s[len(s) // 2]
        late = [v for v in (lag_p99_ms, schedule_lag_p99_ms) if v is not None and v > LATE_MS]
        if median > CPU_LIMIT_PERCENT and late:
            reasons.append(
                f"generator CPU median {median:.0f}% > {CPU_LIMIT_PERCENT:g}% of a core, "
                f"and it ran late (lag p99 {max(late):.1f} ms)"
            )
    return reasons


def fell_behind(
    offered_per_s: float | None,
    achieved_per_s: float | None,
    window_s: float,
    *,
    queue_p99_ms: float | int | None = None,
    schedule_lag_p99_ms: float | int | None = None,
    max_connections: int | None = None,
) -> str | None:
    """The plain sentence for an open-loop run that did not send what it offered, else None.

    Both rates are events inside the measured window over its length: a generator that falls
    behind sends fewer requests in the window than the schedule offered (the rest go out in
    the drain, or never). Below 99 % of offered, and by at least 2 requests (so that one
    request still queued at the window's end in a short, slow run is not called a stall),
    the run does not measure the load it claims. The sentence says why when it can tell:
    the dispatcher ran late (schedule lag), or requests waited for a free connection
    (queue: the pool was at ``max_connections``).
    """
    if not offered_per_s or achieved_per_s is None:
        return None
    if achieved_per_s >= BEHIND_RATIO * offered_per_s or (offered_per_s - achieved_per_s) * window_s < 2:
        return None
    why = []
    if schedule_lag_p99_ms is not None and schedule_lag_p99_ms > LATE_MS:
        why.append(f"the dispatcher ran late, schedule lag p99 {schedule_lag_p99_ms:.1f} ms")
    if queue_p99_ms is not None and queue_p99_ms > LATE_MS:
        pool = f", pool limit max_connections {max_connections}" if max_connections else ""
        why.append(f"requests waited for a free connection, queue p99 {queue_p99_ms:.1f} ms{pool}")
    because = f" ({'; '.join(why)})" if why else ""
    return (f"offered {offered_per_s:,.0f}/s, sent {achieved_per_s:,.0f}/s in the window: "
            f"the generator fell behind{because}")


class StealMeter:
    """CPU time the hypervisor gave to other guests ("steal", /proc/stat), as a share of this
    host's CPU time between ``__init__`` and :meth:`percent`; None where there is no
    /proc/stat. On a shared VM it explains a saturated run that the load does not: a 2-core
    guest saw 37 ms of loop lag at 24 % CPU while steal was 20 % (BENCHMARKS.md)."""

    def __init__(self) -> None:
        self._start = _proc_stat_cpu()

    def percent(self) -> float | None:
        end = _proc_stat_cpu()
        if self._start is None or end is None:
            return None
        steal, total = end[0] - self._start[0], end[1] - self._start[1]
        return round(100.0 * steal / total, 1) if total > 0 else None


def _proc_stat_cpu() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs, or None."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    try:
        values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    except ValueError:
        return None
    return values[7], sum(values)

