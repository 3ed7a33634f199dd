"""Conversations and abandoned answers in the collector (issue 20). Pure: no loop, no sockets."""

from __future__ import annotations

import json

from loadtest.metrics.collector import Collector, RequestRecord
from loadtest.metrics.figures import Figures
from loadtest.slo import error_rate

S = 1_000_000_000
MS = 1_000_000
T0 = 10 * S


def _answer(rid: int, start_ms: int, outcome: str, chunks: int = 4) -> RequestRecord:
    t = T0 + start_ms * MS
    r = RequestRecord(request_id=rid, user=0, t_intended=t, t_send=t, turn=2, conversation="u0-1")
    r.t_first = t + 50 * MS
    r.gaps_ns = [10 * MS] * (chunks - 1)
    r.chunks, r.texts, r.chars = chunks, ["ab "] * chunks, 3 * chunks
    r.t_last = r.t_first + sum(r.gaps_ns)
    r.outcome = outcome
    r.t_stop = r.t_last if outcome == "ok" else 0
    r.tags = ("turn=2",)
    return r


def _feed(c: Collector, recs: list[RequestRecord]) -> None:
    for r in recs:
        r.phase = c.phase_of(r.t_intended)
        c.on_sent(r)
        c.on_request(r, r.t_stop or r.t_last)


def test_an_abandoned_answer_is_offered_not_an_error_and_keeps_its_ttft_not_its_e2e() -> None:
    c = Collector(t0_ns=T0, warmup_s=1, duration_s=5)
    _feed(c, [_answer(1, 1_500, "ok"), _answer(2, 1_600, "abandoned", chunks=2), _answer(3, 1_700, "ok")])
    c.close_intervals(T0 + 6 * S, final=True)
    f = c.export()
    assert (f.completed, f.abandoned, f.failed) == (2, 1, 0)
    totals = f.metrics.totals
    assert totals["ttft"].count == 3 and totals["e2e"].count == 2 and totals["tpot"].count == 2
    assert totals["itl"].count == 3 + 1 + 3  # the abandoned answer's one gap is real
    requests = {"completed": f.completed, "failed": f.failed, "dropped": 0, "cancelled": 0, "abandoned": f.abandoned}
    assert error_rate(requests) == 0.0
    assert error_rate({**requests, "failed": 1}) == 1 / 4  # offered counts the abandoned answer
    assert f.tags["turn=2"].counts["abandoned"] == 1 and f.tags["turn=2"].offered == 3
    assert f.chunks == 4 + 2 + 4  # what arrived before the user stopped reading still arrived


def test_conversations_are_counted_by_their_start_and_merge_exactly() -> None:
    def worker(convs: list[tuple[str, int, int, int]]) -> Figures:
        c = Collector(t0_ns=T0, warmup_s=1, duration_s=5)
        for outcome, start_ms, end_ms, turns in convs:
            c.on_conversation(outcome, start_ns=T0 + start_ms * MS, end_ns=T0 + end_ms * MS, turns=turns)
        c.close_intervals(T0 + 7 * S, final=True)
        return Figures.from_plain(json.loads(json.dumps(c.export().to_plain())))

    a = worker([("completed", 500, 1_500, 3),     # started in the warmup: not the cohort's, ended inside
                ("completed", 1_200, 2_400, 4),   # 1.2 s long
                ("abandoned", 2_000, 2_300, 2)])
    b = worker([("failed", 3_000, 3_100, 1), ("completed", 4_000, 6_500, 2),  # ends after the window
                ("unfinished", 4_500, 6_000, 1), ("dropped", 4_900, 4_900, 0)])
    m = Figures.merge([a, b], warmup_s=1, window_end_s=5)
    counts = {k: m.counts[f"conv_{k}"] for k in ("started", "completed", "abandoned", "failed", "unfinished",
                                                  "dropped")}
    assert counts == {"started": 6, "completed": 2, "abandoned": 1, "failed": 1, "unfinished": 1, "dropped": 1}
    assert m.counts["conv_completed_in_window"] == 2  # the warmup one and the 1.2 s one ended inside
    assert m.turns_per_conversation == {4: 1, 2: 2, 1: 2, 0: 1}
    duration = m.metrics.totals["conversation"]
    assert duration.count == 2  # the cohort's completed ones
    assert abs(duration.summary_ms()["max"] - 2_500) < 3 and abs(duration.summary_ms()["p50"] - 1_200) < 2
