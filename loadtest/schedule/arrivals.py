"""Seeded schedules of intended send offsets for open-loop load. Pure: no I/O, no clock.

A schedule is a sequence of :class:`Arrival` s, each with ``offset_s``, the time after the run
start at which a request is *meant* to be sent. The scheduler sleeps until
``start + offset_s``; latencies are measured from that intended time (wrk2's model), so a
stalled server cannot hide behind a stalled generator.

Rate profiles (k6's ``constant-arrival-rate`` / ``ramping-arrival-rate``)
------------------------------------------------------------------------
:class:`RateProfile` is either a constant ``rate_per_s`` for ``duration_s``, or a list of
:class:`Stage` s: each stage ramps *linearly* from the previous stage's target (the first one
from ``start``, default 0 as in k6) to its own ``target`` over its ``duration_s``. A stage of
duration 0 is a step. The same profile drives the closed-loop user count
(:meth:`RateProfile.value_at`).

Arrival kinds (GuideLLM / aiperf arrival models)
------------------------------------------------
``constant``  evenly spaced: arrival *n* is where the expected count reaches *n*, so at a
              constant rate it is exactly ``n / rate`` (the first one at 0).
``poisson``   exponential inter-arrival times (coefficient of variation 1).
``gamma``     gamma inter-arrival times with shape ``burstiness``: CV = 1/sqrt(burstiness);
              1 is Poisson, below 1 burstier, above 1 more regular.

Non-constant rates use time rescaling: a unit-rate process is generated in "expected count"
space (the integral of the rate) and each point is mapped through
:meth:`RateProfile.inverse_cumulative`, so ramps work for every kind and the *n*-th arrival is
computed from the profile, never by adding up previous offsets.

Trace replay format (JSON Lines)
--------------------------------
One arrival per line, in time order::

    # comments and blank lines are ignored
    {"t": 0.0, "prompt": "Explain artificial intelligence"}
    {"t": 0.125, "prompt_chars": 300}
    {"t_ms": 250}

- ``t``: offset in seconds from the run start, or ``t_ms`` in milliseconds (exactly one of
  them). A finite number >= 0, never smaller than the previous line's (a trace is a recording:
  an out-of-order line is refused, not sorted).
- ``prompt`` (optional): the prompt text to send.
- ``prompt_chars`` (optional): an integer >= 0, the prompt length to synthesize when no
  ``prompt`` is given; if both are given they must agree.
- ``null`` counts as absent for ``prompt`` and ``prompt_chars``; any other key is an error.
- Conversations (issue 20): ``conversation`` (a name) and ``turn`` (1, 2, … in order) make a
  line a turn of a conversation. Turn 1 is an arrival (it needs ``t``); a later turn gives
  either ``t`` (sent at that offset) or ``think`` (seconds after the previous answer ended),
  the same for every later turn of one conversation, and comes after its previous turn.
- Limits (issue 10: a huge ``prompt_chars`` ended in MemoryError): a prompt, given or
  synthesized, holds at most ``MAX_PROMPT_CHARS`` characters, and a trace at most
  ``MAX_TRACE_ARRIVALS`` arrivals.

Every error names the file and line: ``trace.jsonl:7: unknown key 'ts' ...``.
Replay speed is a factor: ``speed=2`` plays the trace twice as fast.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, get_args

from loadtest.errors import BadInput
from loadtest.schedule.profile import RateProfile, Stage
from loadtest.schedule.traceturns import TraceConversations, TraceTurn

__all__ = [
    "ARRIVAL_KINDS",
    "MAX_PROMPT_CHARS",
    "MAX_TRACE_ARRIVALS",
    "Arrival",
    "ArrivalKind",
    "RateProfile",
    "Stage",
    "paced_starts",
    "parse_trace",
    "schedule",
    "trace_prompt",
    "trace_schedule",
]

#: the arrival kinds: what ``schedule(kind=...)`` accepts and the scenario's ``load.arrival``
#: is typed with (defined here only)
ArrivalKind = Literal["constant", "poisson", "gamma"]
ARRIVAL_KINDS: tuple[str, ...] = get_args(ArrivalKind)

_TRACE_KEYS = ("t", "t_ms", "prompt", "prompt_chars", "conversation", "turn", "think")
#: the longest prompt a trace line may give or ask for (about 250k tokens)
MAX_PROMPT_CHARS = 1_000_000
#: the most arrivals one trace may hold (an hour at ~1,400/s); each is kept in memory
MAX_TRACE_ARRIVALS = 5_000_000


@dataclass(frozen=True, slots=True)
class Arrival:
    """One intended send: ``offset_s`` after the run start; ``index`` counts from 0."""

    index: int
    offset_s: float
    prompt: str | None = None
    prompt_chars: int | None = None
    #: a trace conversation's later turns (loadtest.schedule.traceturns), in order
    followups: tuple[TraceTurn, ...] = ()



def schedule(kind: str, profile: RateProfile, *, seed: int, burstiness: float = 1.0) -> Iterator[Arrival]:
    """Arrivals of ``kind`` following ``profile``, in time order, until the profile ends.

    Arguments are checked at once (:class:`BadInput`), before the first arrival is drawn. The
    same ``seed`` gives the same offsets. Offsets lie in ``[0, duration_s)``.
    """
    if kind not in ARRIVAL_KINDS:
        raise BadInput(f"unknown arrival kind {kind!r}: use one of {', '.join(ARRIVAL_KINDS)}")
    if isinstance(burstiness, bool) or not isinstance(burstiness, int | float):
        raise BadInput(f"burstiness must be a number, got {burstiness!r}")
    if not (math.isfinite(burstiness) and burstiness > 0):
        raise BadInput(f"burstiness must be a finite number > 0 (1 = Poisson), got {burstiness!r}")
    if kind != "gamma" and burstiness != 1.0:
        raise BadInput(f"burstiness applies only to kind 'gamma', not {kind!r}")
    if kind == "constant":
        return _constant(profile)
    return _renewal(profile, random.Random(seed), float(burstiness) if kind == "gamma" else None)


def _constant(profile: RateProfile) -> Iterator[Arrival]:
    n = 0
    total = profile.total
    while n < total:
        t = profile.inverse_cumulative(float(n))
        if t is None:  # pragma: no cover - n < total guarantees a value
            return
        yield Arrival(n, t)
        n += 1


def _renewal(profile: RateProfile, rng: random.Random, shape: float | None) -> Iterator[Arrival]:
    # Unit-mean gaps in expected-count space: Exp(1), or Gamma(k, scale 1/k) whose
    # CV is 1/sqrt(k). The first arrival comes one gap after 0.
    total = profile.total
    x = 0.0
    n = 0
    while True:
        x += rng.expovariate(1.0) if shape is None else rng.gammavariate(shape, 1.0 / shape)
        if x >= total:
            return
        t = profile.inverse_cumulative(x)
        if t is None:  # pragma: no cover - x < total guarantees a value
            return
        yield Arrival(n, t)
        n += 1


def parse_trace(lines: Iterable[str], *, source: str = "trace") -> list[Arrival]:
    """Parse a JSONL trace (format in the module docstring) into arrivals, indexed from 0.

    Raises :class:`BadInput` ``"{source}:{line}: ..."`` on the first bad line, and
    ``"{source}: ..."`` if the trace holds no arrival at all.
    """
    arrivals: list[Arrival] = []
    prev_t = 0.0
    prev_line = 0
    conversations = TraceConversations()
    for line_no, raw in enumerate(lines, 1):
        line = raw.strip().lstrip("\ufeff")
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{line_no}"
        try:
            obj: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{where}: not valid JSON ({exc.msg}, column {exc.colno})") from exc
        except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4,300 digits
            raise BadInput(f"{where}: not usable JSON ({str(exc)[:80]})") from None
        if not isinstance(obj, dict):
            raise BadInput(f'{where}: expected a JSON object like {{"t": 0.5}}, got {type(obj).__name__}')
        for key in obj:
            if key not in _TRACE_KEYS:
                raise BadInput(f"{where}: unknown key {key!r} (allowed: {', '.join(_TRACE_KEYS)})")
        if conversations.is_later_turn(obj, where):
            conversations.add_later_turn(obj, where, *_prompt_of(obj, where), offset=_later_offset(obj, where))
            continue
        t = _trace_offset(obj, where)
        if t < prev_t:
            raise BadInput(
                f"{where}: t={t:g}s is before t={prev_t:g}s on line {prev_line}; "
                "a trace must be in time order"
            )
        prompt, chars = _prompt_of(obj, where)
        if len(arrivals) >= MAX_TRACE_ARRIVALS:
            raise BadInput(f"{where}: the trace holds more than {MAX_TRACE_ARRIVALS:,} arrivals; "
                           "split it into several runs")
        conversations.first_turn(obj, where, len(arrivals), t)
        arrivals.append(Arrival(len(arrivals), t, prompt, chars))
        prev_t, prev_line = t, line_no
    if not arrivals:
        raise BadInput(f"{source}: the trace holds no arrivals")
    return conversations.attach(arrivals)


def trace_prompt(prompt: str | None, prompt_chars: int | None) -> str | None:
    """What a trace line asks to send: its ``prompt``, else a synthesized prompt of
    ``prompt_chars`` characters, else None (the scenario's gen step picks one)."""
    if prompt is not None or prompt_chars is None:
        return prompt
    base = "Explain artificial intelligence in plain words. "
    return (base * (prompt_chars // len(base) + 1))[:prompt_chars]


def _prompt_of(obj: dict[str, Any], where: str) -> tuple[str | None, int | None]:
    """A trace line's ``prompt`` and ``prompt_chars``, checked."""
    prompt = obj.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise BadInput(f"{where}: prompt must be a string, got {type(prompt).__name__}")
    if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
        raise BadInput(f"{where}: the prompt has {len(prompt):,} characters; at most "
                       f"{MAX_PROMPT_CHARS:,} are supported")
    chars = obj.get("prompt_chars")
    if chars is not None:
        if isinstance(chars, bool) or not isinstance(chars, int) or chars < 0:
            raise BadInput(f"{where}: prompt_chars must be an integer >= 0, got {str(chars)[:40]}")
        if chars > MAX_PROMPT_CHARS:
            shown = f"{chars:,}" if chars < 10**15 else f"a {len(str(chars))}-digit number"
            raise BadInput(f"{where}: prompt_chars={shown} is too large; at most "
                           f"{MAX_PROMPT_CHARS:,} characters are supported")
        if prompt is not None and chars != len(prompt):
            raise BadInput(
                f"{where}: prompt_chars={chars} but the prompt has {len(prompt)} characters; "
                "give one of them, or make them agree"
            )
    return prompt, chars


def _later_offset(obj: dict[str, Any], where: str) -> float | None:
    """A later turn's ``t``/``t_ms`` (None: it gives ``think`` instead)."""
    if "t" not in obj and "t_ms" not in obj:
        return None
    return _trace_offset(obj, where)


def _trace_offset(obj: dict[str, Any], where: str) -> float:
    if "t" in obj and "t_ms" in obj:
        raise BadInput(f'{where}: give "t" (seconds) or "t_ms" (milliseconds), not both')
    if "t" not in obj and "t_ms" not in obj:
        raise BadInput(f'{where}: missing "t" (seconds) or "t_ms" (milliseconds)')
    key = "t" if "t" in obj else "t_ms"
    value = obj[key]
    unit = "seconds" if key == "t" else "milliseconds"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadInput(f"{where}: {key} must be a finite number of {unit}, got {value!r}")
    if value < 0:
        raise BadInput(f"{where}: {key} must be >= 0, got {value!r}")
    return float(value) if key == "t" else value / 1000.0


def trace_schedule(arrivals: list[Arrival], *, speed: float = 1.0) -> Iterator[Arrival]:
    """Replay ``arrivals`` with offsets divided by ``speed`` (2 = twice as fast).

    Checked at once: ``speed`` finite and > 0, offsets >= 0 and in time order (:class:`BadInput`).
    """
    if isinstance(speed, bool) or not isinstance(speed, int | float):
        raise BadInput(f"speed must be a number, got {speed!r}")
    if not (math.isfinite(speed) and speed > 0):
        raise BadInput(f"speed must be a finite number > 0 (2 = twice as fast), got {speed!r}")
    prev = 0.0
    for a in arrivals:
        if not (math.isfinite(a.offset_s) and a.offset_s >= prev):
            raise BadInput(f"trace arrival {a.index}: offset {a.offset_s!r} is negative or out of order")
        prev = a.offset_s
    return (dataclasses.replace(a, offset_s=a.offset_s / speed, followups=tuple(
        dataclasses.replace(f, offset_s=None if f.offset_s is None else f.offset_s / speed,
                            think_s=None if f.think_s is None else f.think_s / speed) for f in a.followups))
        for a in arrivals)


def paced_starts(pace_s: float, n: int, *, phase_s: float = 0.0) -> float:
    """The ``n``-th intended start (from 0) of a paced closed-loop user: ``phase_s + n * pace_s``.

    Computed from the schedule, not by adding ``pace_s`` to the previous start, so a user
    that runs late catches up instead of drifting.
    """
    if not (math.isfinite(pace_s) and pace_s >= 0):
        raise BadInput(f"pace must be a finite number of seconds >= 0, got {pace_s!r}")
    if n < 0:
        raise ValueError(f"paced_starts needs n >= 0, got {n}")
    return phase_s + n * pace_s
