"""Conversations in a replayed trace (issue 20). Pure: no I/O, no clock.

A trace line with ``conversation`` (a name) and ``turn`` (1, 2, …) is a turn of that
conversation. Turn 1 is an arrival like any trace line (it needs ``t``, in time order with the
other arrivals). A later turn comes after its previous turn in the file and gives either ``t``
(sent at that offset from the run start) or ``think`` (seconds after the previous answer
ended), the same for every later turn of one conversation: a recording keeps its clock or
its pauses, never a mix. Every mistake names the file and line (exit 2).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, TypeVar

from loadtest.errors import BadInput

__all__ = ["TraceConversations", "TraceTurn"]

_A = TypeVar("_A")


@dataclass(frozen=True, slots=True)
class TraceTurn:
    """A later turn of a trace conversation: sent at ``offset_s`` from the run start, or
    ``think_s`` after the previous answer ended (exactly one of them)."""

    offset_s: float | None
    think_s: float | None
    prompt: str | None = None
    prompt_chars: int | None = None


class TraceConversations:
    """The conversations of one trace while it is parsed."""

    def __init__(self) -> None:
        self._arrival: dict[str, int] = {}  # name -> the index of its first turn's arrival
        self._next: dict[str, int] = {}  # name -> the turn expected next
        self._clock: dict[str, str] = {}  # name -> "t" or "think" (its later turns')
        self._last_t: dict[str, float] = {}  # name -> its latest turn's offset (t mode)
        self._turns: dict[int, list[TraceTurn]] = {}

    @staticmethod
    def _name_turn(obj: dict[str, Any], where: str) -> tuple[str, int] | None:
        name, turn = obj.get("conversation"), obj.get("turn")
        if name is None and turn is None:
            if obj.get("think") is not None:
                raise BadInput(f'{where}: "think" belongs to a later turn of a conversation '
                               '(give "conversation" and "turn")')
            return None
        if not isinstance(name, str) or not name:
            raise BadInput(f'{where}: a turn needs "conversation" (a name), got {str(name)[:40]!r}')
        if isinstance(turn, bool) or not isinstance(turn, int) or turn < 1:
            raise BadInput(f'{where}: "turn" must be an integer >= 1, got {str(turn)[:40]!r}')
        return name, turn

    def is_later_turn(self, obj: dict[str, Any], where: str) -> bool:
        """Is this line turn 2 or later of a conversation (checked: its number comes next)?"""
        named = self._name_turn(obj, where)
        if named is None:
            return False
        name, turn = named
        expected = self._next.get(name, 1)
        if turn != expected:
            what = "is not in the trace yet" if expected == 1 else f"has turn {expected} next"
            raise BadInput(f"{where}: turn {turn} of conversation {name!r} is out of order: the "
                           f"conversation {what} (turns come in order, each after the one before)")
        return turn > 1

    def first_turn(self, obj: dict[str, Any], where: str, index: int, offset_s: float) -> None:
        """The arrival ``index`` (at ``offset_s``) is turn 1 of its conversation, if it names one."""
        named = self._name_turn(obj, where)
        if named is None:
            return
        name, _ = named
        if obj.get("think") is not None:
            raise BadInput(f'{where}: turn 1 of {name!r} is an arrival: it gives "t", not "think"')
        self._arrival[name] = index
        self._next[name] = 2
        self._last_t[name] = offset_s

    def add_later_turn(self, obj: dict[str, Any], where: str, prompt: str | None, chars: int | None, *,
                       offset: float | None) -> None:
        name, turn = self._name_turn(obj, where) or ("", 0)
        think = obj.get("think")
        if (offset is None) == (think is None):
            raise BadInput(f'{where}: turn {turn} of {name!r} gives "t" (its offset) or "think" (seconds after '
                           "the previous answer), exactly one")
        clock = "t" if offset is not None else "think"
        if self._clock.setdefault(name, clock) != clock:
            raise BadInput(f"{where}: conversation {name!r} mixes \"t\" with \"think\" in its later turns; "
                           "give every later turn the same one")
        if think is not None and (isinstance(think, bool) or not isinstance(think, int | float)
                                  or not math.isfinite(think) or think < 0):
            raise BadInput(f"{where}: think must be a number of seconds >= 0, got {str(think)[:40]!r}")
        if offset is not None:
            if offset < self._last_t[name]:
                raise BadInput(f"{where}: turn {turn} of {name!r} at t={offset:g}s is before its previous turn "
                               f"(t={self._last_t[name]:g}s)")
            self._last_t[name] = offset
        self._next[name] = turn + 1
        self._turns.setdefault(self._arrival[name], []).append(
            TraceTurn(offset, None if think is None else float(think), prompt, chars))

    def attach(self, arrivals: list[_A]) -> list[_A]:
        """The arrivals, each first turn carrying its conversation's later turns."""
        for index, turns in self._turns.items():
            arrivals[index] = dataclasses.replace(arrivals[index], followups=tuple(turns))  # type: ignore[type-var]
        return arrivals
