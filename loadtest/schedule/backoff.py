"""Reconnect timing as a pure generator: it yields delays, it never sleeps.

Capped exponential backoff with "full jitter" (AWS architecture blog, "Exponential
Backoff And Jitter"): the n-th delay is uniform in [0, min(cap, base * factor**n)], so a
fleet of users that lost their connections together does not reconnect in lock-step.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ["backoff"]


def backoff(
    *, base_s: float = 0.1, factor: float = 2.0, cap_s: float = 5.0, rng: random.Random | None = None
) -> Iterator[float]:
    """Yield successive delays in seconds; restart the generator after a success."""
    r = rng or random.Random()
    ceiling = base_s
    while True:
        yield r.uniform(base_s / 2, ceiling)
        ceiling = min(cap_s, ceiling * factor)
