"""Synthetic request records for the pure tests of the collector and what folds its figures
(merging workers, the live view): one answer started ``start_ms`` after ``t0``, its first token
``ttft_ms`` later, then a chunk after each gap; failed ones carry a server error."""

from __future__ import annotations

from loadtest.metrics.collector import RequestRecord

MS = 1_000_000


def synthetic_request(rid: int, start_ms: int, ttft_ms: int, gaps_ms: list[int], outcome: str, *, t0: int,
                      tags: tuple[str, ...] = ()) -> RequestRecord:
    t_send = t0 + start_ms * MS
    r = RequestRecord(request_id=rid, user=rid % 7, t_intended=t_send, t_send=t_send, tags=tags)
    r.t_first = t_send + ttft_ms * MS
    r.gaps_ns = [g * MS for g in gaps_ms]
    r.chunks = 1 + len(gaps_ms)
    r.chunk_chars = [3] * r.chunks
    r.chars = 3 * r.chunks
    r.t_last = r.t_first + sum(r.gaps_ns)
    r.outcome = outcome
    if outcome == "ok":
        r.t_stop = r.t_last
    else:
        r.error_category, r.error_message = "server_error", f"boom {rid % 3}"
    return r
