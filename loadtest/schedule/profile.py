"""Load over time: a piecewise-linear rate (or user count), from k6-style stages. Pure.

:class:`RateProfile` gives the value at any time, its integral (the expected number of
arrivals so far) and the inverse of that integral, which the arrival schedules use to place
the *n*-th arrival of a time-varying rate (:mod:`loadtest.schedule.arrivals`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

from loadtest.errors import BadInput

__all__ = ["RateProfile", "Stage"]


@dataclass(frozen=True, kw_only=True)
class Stage:
    """Ramp linearly from the previous target to ``target`` over ``duration_s`` (k6 stage)."""

    duration_s: float
    target: float


@dataclass(frozen=True, slots=True)
class _Segment:
    # One stage of positive duration: value goes v0 -> v1 over [t0, t0 + d];
    # c0 is the cumulative integral at t0.
    t0: float
    d: float
    v0: float
    v1: float
    c0: float

    @property
    def slope(self) -> float:
        return (self.v1 - self.v0) / self.d

    @property
    def area(self) -> float:
        return (self.v0 + self.v1) / 2 * self.d


def _finite_nonneg(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadInput(f"{what} must be a finite number, got {value!r}")
    if value < 0:
        raise BadInput(f"{what} must be >= 0, got {value!r}")
    return float(value)


class RateProfile:
    """A piecewise-linear rate (or user count) over ``[0, duration_s]``.

    Build with ``RateProfile(rate_per_s=..., duration_s=...)`` for a constant rate, or
    ``RateProfile(stages=[...], start=0.0)`` for k6-style stages. Invalid values raise
    :class:`BadInput`. Instances are immutable.
    """

    __slots__ = ("_ends", "_segments", "_stage_starts", "_stages", "_start", "_total")

    def __init__(
        self,
        *,
        rate_per_s: float | None = None,
        duration_s: float | None = None,
        stages: Sequence[Stage] | None = None,
        start: float | None = None,
    ) -> None:
        if stages is not None:
            if rate_per_s is not None or duration_s is not None:
                raise BadInput("give either rate_per_s and duration_s, or stages, not both")
            if not stages:
                raise BadInput("a staged profile needs at least one stage")
            start_v = 0.0 if start is None else _finite_nonneg(start, "start")
            stage_t = tuple(stages)
        else:
            if rate_per_s is None or duration_s is None:
                raise BadInput("give rate_per_s and duration_s, or a list of stages")
            if start is not None:
                raise BadInput("start applies only to staged profiles")
            rate = _finite_nonneg(rate_per_s, "rate_per_s")
            if rate == 0:
                raise BadInput("rate_per_s must be > 0")
            start_v = rate
            stage_t = (Stage(duration_s=duration_s, target=rate),)

        segments: list[_Segment] = []
        t = c = 0.0
        prev = start_v
        for i, stage in enumerate(stage_t, 1):
            d = _finite_nonneg(stage.duration_s, f"stage {i} duration_s")
            v = _finite_nonneg(stage.target, f"stage {i} target")
            if d > 0:
                seg = _Segment(t0=t, d=d, v0=prev, v1=v, c0=c)
                segments.append(seg)
                t += d
                c += seg.area
            prev = v
        if not segments:
            raise BadInput("the profile's total duration must be > 0")
        if c == 0:
            raise BadInput("the profile is 0 throughout: give a rate or target above 0")
        self._start = start_v
        self._stages = stage_t
        self._segments = tuple(segments)
        self._stage_starts = tuple(s.t0 for s in segments)
        self._ends = tuple(s.c0 + s.area for s in segments)  # cumulative at each segment's end
        self._total = c

    @property
    def duration_s(self) -> float:
        return self._segments[-1].t0 + self._segments[-1].d

    @property
    def stages(self) -> tuple[Stage, ...]:
        return self._stages

    @property
    def start(self) -> float:
        return self._start

    @property
    def total(self) -> float:
        """Expected number of arrivals over the whole profile: ``cumulative(duration_s)``."""
        return self._total

    @property
    def peak(self) -> float:
        """The highest value the profile reaches."""
        return max(max(s.v0, s.v1) for s in self._segments)

    def __repr__(self) -> str:
        return f"RateProfile(stages={list(self._stages)!r}, start={self._start!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RateProfile):
            return NotImplemented
        return self._segments == other._segments

    def __hash__(self) -> int:
        return hash(self._segments)

    def _segment_at(self, t_s: float) -> _Segment:
        # Right-continuous: at a step (a zero-duration stage) the value after the step wins.
        i = bisect.bisect_right(self._stage_starts, t_s) - 1
        return self._segments[max(i, 0)]

    def value_at(self, t_s: float) -> float:
        """The rate (or user count) at ``t_s``, right-continuous at steps.

        Before 0 it is the value at 0; from ``duration_s`` on, the last stage's target.
        """
        if t_s >= self.duration_s:
            return float(self._stages[-1].target)
        if t_s <= 0:
            return self._segments[0].v0
        seg = self._segment_at(t_s)
        return seg.v0 + seg.slope * (t_s - seg.t0)

    def cumulative(self, t_s: float) -> float:
        """Integral of the rate over ``[0, t_s]``: the expected arrivals by ``t_s``."""
        if t_s <= 0:
            return 0.0
        if t_s >= self.duration_s:
            return self._total
        i = bisect.bisect_right(self._stage_starts, t_s) - 1
        seg = self._segments[i]
        dt = t_s - seg.t0
        # Clamped to the segment's own range: rounding must not carry a point past the
        # segment's end (or the total, where inverse_cumulative would answer None).
        return min(max(seg.c0 + seg.v0 * dt + seg.slope * dt * dt / 2, seg.c0), self._ends[i])

    def inverse_cumulative(self, x: float) -> float | None:
        """The latest ``t`` with ``cumulative(t) == x``; ``None`` if ``x > total``.

        "Latest" matters only across stretches of zero rate: an arrival due at their start is
        placed at their end, so the first arrival after a pause lands where the rate resumes
        (and a profile that starts with a pause starts its arrivals after it).
        Raises ``ValueError`` for ``x < 0``.
        """
        if not x >= 0:
            raise ValueError(f"inverse_cumulative needs x >= 0, got {x!r}")
        if x > self._total:
            return None
        # First segment whose end cumulative is above x (bisect_right skips flat segments
        # that end exactly at x); x == total falls back to the end.
        i = bisect.bisect_right(self._ends, x)
        if i >= len(self._segments):
            return self.duration_s
        seg = self._segments[i]
        r = x - seg.c0
        if r <= 0:
            return seg.t0
        a = seg.slope
        if a == 0:
            dt = r / seg.v0  # v0 > 0: a flat zero segment has area 0 and was skipped
        else:
            # Root of v0*dt + a*dt^2/2 = r, in the form without cancellation
            # (2r / (v0 + sqrt(v0^2 + 2ar)) rather than (-v0 + sqrt(...)) / a), with rates
            # scaled by the segment's peak so that squaring cannot underflow or overflow.
            s = max(seg.v0, seg.v1)
            u0, rs = seg.v0 / s, r / s
            disc = max(u0 * u0 + 2 * (a / s) * rs, 0.0)
            den = u0 + math.sqrt(disc)
            dt = 2 * rs / den if den > 0 else 0.0
        return seg.t0 + min(max(dt, 0.0), seg.d)


