"""Conversations of a run (issue 20), counted by how they ended. Pure.

The cohort is the conversations whose intended start lies inside the measured window (as for
requests). Each ends ``completed`` (every turn answered), ``abandoned`` (the user stopped
reading an answer), ``failed`` (a turn failed, or its connection was lost) or ``unfinished``
(the run ended first) or ``dropped`` (open loop: its start found the queue full):
``started = completed + abandoned + failed + unfinished + dropped``. The rate
``per_s`` counts conversations completed inside the window, whatever their cohort, like every
rate.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["OUTCOMES", "ConversationTally"]

OUTCOMES: tuple[str, ...] = ("completed", "abandoned", "failed", "unfinished", "dropped")


class ConversationTally:
    __slots__ = ("by_outcome", "completed_in_window", "turns")

    def __init__(self) -> None:
        self.by_outcome: Counter[str] = Counter(dict.fromkeys(OUTCOMES, 0))
        self.completed_in_window = 0
        #: the cohort's conversations by the turns they ran
        self.turns: Counter[int] = Counter()

    def count(self, outcome: str, *, measured: bool, in_window: bool, turns: int) -> bool:
        """Count one ended conversation; True when it completed (its duration is a sample)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown conversation outcome {outcome!r}")
        completed = outcome == "completed"
        if completed and in_window:
            self.completed_in_window += 1
        if measured:
            self.by_outcome[outcome] += 1
            self.turns[turns] += 1
        return completed

    def counts(self) -> dict[str, int]:
        """As the collector's ``conv_*`` counters (loadtest.metrics.figures.COUNTS)."""
        out = {f"conv_{k}": v for k, v in self.by_outcome.items()}
        out["conv_started"] = sum(self.by_outcome.values())
        out["conv_completed_in_window"] = self.completed_in_window
        out["conv_turns"] = sum(t * n for t, n in self.turns.items())
        return out
