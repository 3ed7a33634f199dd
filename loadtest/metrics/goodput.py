"""Goodput: what makes one request good (DistServe's measure). Pure.

A request is *good* when it completed and each of its figures named in the rule is within its
limit: ``ttft`` (from the intended send time), ``tpot`` (per chunk), ``tpot_token`` (per
output token, with a tokenizer) and ``e2e``. A figure the request does not have (the TPOT of a
one-chunk answer) is not held against it. ``goodput.share`` = good / offered requests of the
measured window's cohort; ``goodput.per_s`` = good answers that ended inside the window / its
length (like ``throughput.requests_per_s``, of which it is the good part).
"""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.metrics.record import RequestRecord, tpot_ns

__all__ = ["GOODPUT_KEYS", "GoodputRule"]

#: the rule's keys, in the order they are shown
GOODPUT_KEYS: tuple[str, ...] = ("ttft_ms", "tpot_ms", "tpot_token_ms", "e2e_ms")


@dataclass(frozen=True, slots=True)
class GoodputRule:
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    tpot_token_ms: float | None = None
    e2e_ms: float | None = None

    def to_dict(self) -> dict[str, float]:
        return {k: v for k in GOODPUT_KEYS if (v := getattr(self, k)) is not None}

    def good(self, rec: RequestRecord) -> bool:
        """Did ``rec`` (any outcome) meet the rule? Only a completed answer can."""
        if rec.outcome != "ok":
            return False
        start = rec.t_intended or rec.t_send
        if self.ttft_ms is not None and rec.t_first and (rec.t_first - start) > self.ttft_ms * 1e6:
            return False
        if self.e2e_ms is not None and (rec.t_stop - start) > self.e2e_ms * 1e6:
            return False
        if self.tpot_ms is not None:
            tpot = tpot_ns(rec.chunks, rec.t_first, rec.t_last)
            if tpot is not None and tpot > self.tpot_ms * 1e6:
                return False
        if self.tpot_token_ms is not None:
            tpot_token = rec.tpot_token_ns()
            if tpot_token is not None and tpot_token > self.tpot_token_ms * 1e6:
                return False
        return True
