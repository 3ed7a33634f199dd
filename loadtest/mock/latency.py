"""The mock proxy's latency and capacity model: pure, seeded, no I/O, no clock.

A stream's life in the mock (:mod:`loadtest.mock.server` only executes this plan):

1. It waits for one of ``capacity`` generation slots (FIFO). Unlimited if ``None``.
2. ``ttft + prefill_ms_per_kchar * prompt_chars / 1000 + turn_ms * earlier_turns`` after
   taking the slot, the first chunk is sent (prefill: a longer prompt, and a conversation with
   more turns before this one, take longer to read before the first token; turn k of a
   conversation has k - 1 earlier turns, :mod:`loadtest.mock.conversations`).
3. Each later chunk follows after ``gap * (1 + gap_slowdown * (active - 1))``, where
   ``active`` is the number of streams holding a slot at that moment. This is the
   continuous-batching effect: every extra stream in the batch slows each step a little.
4. After the last of ``chunks`` non-empty chunks an empty ``message`` with ``stop: true``
   ends the stream, and the slot is freed.

So with more concurrent streams than slots, TTFT grows by whole service times, and a
load sweep finds a knee. :meth:`MockModel.expected_ttft_ms` states the closed-loop
prediction that the capacity test checks the real server against.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

from loadtest.errors import BadInput

__all__ = ["Dist", "MockModel", "parse_dist"]

# z-score of the 99th percentile of the standard normal (for lognormal median/p99).
_Z99 = NormalDist().inv_cdf(0.99)


@dataclass(frozen=True, slots=True, kw_only=True)
class Dist:
    """A non-negative random quantity: a constant or a distribution.

    ``kind``: ``const`` (``a`` = value), ``uniform`` (``a``..``b``), ``normal`` (mean ``a``,
    sd ``b``), ``lognormal`` (median ``a``, p99 ``b``). Samples are clamped at 0.
    """

    kind: Literal["const", "uniform", "normal", "lognormal"] = "const"
    a: float = 0.0
    b: float = 0.0

    def sample(self, rng: random.Random) -> float:
        if self.kind == "const":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        if self.kind == "normal":
            return max(0.0, rng.gauss(self.a, self.b))
        # lognormal: median = exp(mu), p99 = exp(mu + z99 * sigma)
        mu = math.log(self.a)
        sigma = (math.log(self.b) - mu) / _Z99
        return rng.lognormvariate(mu, sigma)

    @property
    def mean(self) -> float:
        if self.kind == "const":
            return self.a
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        if self.kind == "normal":
            return self.a  # ignoring the clamp at 0, which callers keep negligible
        mu = math.log(self.a)
        sigma = (math.log(self.b) - mu) / _Z99
        return math.exp(mu + sigma * sigma / 2)

    def quantile(self, p: float) -> float:
        """The value below which a share ``p`` (0 < p < 1) of samples falls (before the clamp)."""
        if self.kind == "const":
            return self.a
        if self.kind == "uniform":
            return self.a + p * (self.b - self.a)
        z = NormalDist().inv_cdf(p)
        if self.kind == "normal":
            return max(0.0, self.a + z * self.b)
        mu = math.log(self.a)
        sigma = (math.log(self.b) - mu) / _Z99
        return math.exp(mu + z * sigma)

    def to_spec(self) -> float | dict[str, Any]:
        """The scenario-file form this came from (inverse of :func:`parse_dist`)."""
        if self.kind == "const":
            return self.a
        if self.kind == "uniform":
            return {"dist": "uniform", "low": self.a, "high": self.b}
        if self.kind == "normal":
            return {"dist": "normal", "mean": self.a, "sd": self.b}
        return {"dist": "lognormal", "median": self.a, "p99": self.b}


_DIST_KEYS = {
    "uniform": ("low", "high"),
    "normal": ("mean", "sd"),
    "lognormal": ("median", "p99"),
}


def parse_dist(spec: Any, *, name: str = "value") -> Dist:
    """Parse a number or ``{dist: uniform|normal|lognormal, ...}``; BadInput if impossible."""
    if isinstance(spec, Dist):
        return spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        if not math.isfinite(spec) or spec < 0:
            raise BadInput(f"{name} must be a finite number >= 0, got {spec!r}")
        return Dist(kind="const", a=float(spec))
    if not isinstance(spec, dict):
        raise BadInput(f"{name} must be a number or a {{dist: ...}} mapping, got {spec!r}")
    kind = spec.get("dist")
    if kind not in _DIST_KEYS:
        raise BadInput(f"{name}.dist must be one of uniform, normal, lognormal; got {kind!r}")
    k1, k2 = _DIST_KEYS[kind]
    unknown = set(spec) - {"dist", k1, k2}
    if unknown:
        raise BadInput(f"{name} has unknown key(s) {sorted(unknown)}; {kind} takes {k1}, {k2}")
    vals = []
    for k in (k1, k2):
        v = spec.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise BadInput(f"{name}.{k} must be a finite number >= 0, got {v!r}")
        vals.append(float(v))
    a, b = vals
    if kind == "uniform" and b < a:
        raise BadInput(f"{name}: high ({b}) must be >= low ({a})")
    if kind == "lognormal" and not (0 < a < b):
        raise BadInput(f"{name}: lognormal needs 0 < median < p99, got median={a}, p99={b}")
    return Dist(kind=kind, a=a, b=b)


@dataclass(frozen=True, slots=True, kw_only=True)
class MockModel:
    """Latency and capacity of the mock. Times in milliseconds."""

    ttft_ms: Dist = Dist(a=100.0)
    gap_ms: Dist = Dist(a=10.0)
    chunks: Dist = Dist(a=20.0)
    capacity: int | None = None
    #: fractional slowdown of every chunk gap per extra active stream; None = 0.005 when
    #: a capacity is set (batching), else 0 (an idealised server).
    gap_slowdown: float | None = None
    #: extra TTFT per 1,000 prompt characters (prefill); 0 = prompt length does not matter
    prefill_ms_per_kchar: float = 0.0
    #: words in each chunk (a chunk is not a token: with more than one word it holds several)
    words_per_chunk: int = 1
    #: extra TTFT per earlier turn of the conversation (turn k pays (k - 1) * turn_ms): the
    #: context a server prefills grows turn by turn (issue 20); 0 = turns do not matter
    turn_ms: float = 0.0

    @property
    def slowdown(self) -> float:
        if self.gap_slowdown is not None:
            return self.gap_slowdown
        return 0.005 if self.capacity else 0.0

    def gap_factor(self, active: int) -> float:
        """Multiplier of the base gap when ``active`` streams hold slots."""
        return 1.0 + self.slowdown * max(0, active - 1)

    def plan(self, rng: random.Random, prompt_chars: int = 0, earlier_turns: int = 0) -> tuple[float, int, float]:
        """Draw one stream's (ttft_ms, chunks, base_gap_ms). ``chunks`` >= 1. ``earlier_turns``:
        turns of its conversation before this one (0 for a new conversation or a lone gen)."""
        ttft = (self.ttft_ms.sample(rng) + self.prefill_ms_per_kchar * prompt_chars / 1000
                + self.turn_ms * earlier_turns)
        n = max(1, round(self.chunks.sample(rng)))
        gap = self.gap_ms.sample(rng)
        return ttft, n, gap

    def service_ms(self, active: int, *, earlier_turns: float = 0.0) -> float:
        """Mean time a stream holds its slot when ``active`` streams generate; a turn after
        ``earlier_turns`` turns of its conversation (a mean, for a mix) holds it longer by
        their prefill. The prompt's own prefill is not in it."""
        return self.ttft_ms.mean + self.turn_ms * earlier_turns + (max(1.0, round(self.chunks.mean)) - 1) * (
            self.gap_ms.mean * self.gap_factor(active)
        )

    def expected_ttft_ms(self, users: int, *, client_overhead_ms: float = 0.0) -> float:
        """Mean TTFT that ``users`` closed-loop users (no think time) see in steady state.

        With ``users`` > ``capacity`` = K, all K slots stay busy, so the server completes
        K / S streams per ms (S = service time at K active). Little's law gives each user's
        cycle ``users * S / K``; a cycle is queue wait + S, so TTFT = (users/K - 1) * S + ttft.
        ``client_overhead_ms`` is the client's own gap between a stop and its next ``gen``
        (it lengthens every cycle, so it shortens the queue by as much per cycle).
        """
        if users < 1:
            raise ValueError("users must be >= 1")
        k = self.capacity
        if k is None or users <= k:
            return self.ttft_ms.mean
        s = self.service_ms(k)
        # with client overhead o the cycle is wait + S + o = users * S / K
        wait = users * s / k - s - client_overhead_ms
        return max(0.0, wait) + self.ttft_ms.mean

    def predicted_ttft_ms(self, users: int, p: float) -> float:
        """The ``p``-th quantile (0 < p < 1, e.g. 0.99) of TTFT that ``users`` closed-loop users
        (no think time) see in steady state: the truth a capacity test can state.

        With users = q·K + r (K = ``capacity``, 0 ≤ r < K) and equal service times S, the slots
        work in lock-step rounds: every request waits q−1 whole rounds, and a share r/K of
        them one more, so the mean wait is (users/K − 1)·S, as :meth:`expected_ttft_ms` says.
        For p above 1 − r/K the quantile is q·S + ttft, else (q−1)·S + ttft. Exact for constant times; with distributions the
        ttft quantile is added to the wait (an approximation that errs high).
        """
        if users < 1:
            raise ValueError("users must be >= 1")
        if not 0 < p < 1:
            raise ValueError("p must be in (0, 1)")
        k = self.capacity
        base = self.ttft_ms.quantile(p)
        if k is None or users <= k:
            return base
        s = self.service_ms(k)
        q, r = divmod(users, k)
        rounds = q if r and p > 1 - r / k else q - 1
        return rounds * s + base
