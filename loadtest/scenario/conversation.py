"""The ``session.conversation`` block (issue 20): a chat user's conversation. Internal to
:mod:`loadtest.scenario`. No I/O.

A conversation is ``turns`` passes through ``session.steps``; each ``gen`` in it is a turn,
numbered from 1. ``history`` says how a turn carries what came before: ``server`` (every turn
after the first names the conversation's id from its latest ``conv-message``, in the gen field
``id_field``), ``client`` (no id; each prompt carries the conversation so far) or ``none``
(independent turns). ``abandon`` is the share of answers the user stops reading mid-stream.
"""

from __future__ import annotations

import random
from typing import Any, Literal

from pydantic import Field, StrictFloat, StrictInt, StrictStr, field_validator, model_validator

from loadtest.scenario.fields import FieldProblem, Model, short

__all__ = ["MAX_TURNS", "ConversationConfig", "Turns"]

#: more turns than this in one conversation is a typo, not a chat
MAX_TURNS = 10_000


class Turns(Model):
    """``turns: 4`` or ``turns: {min: 2, max: 8}`` (drawn per conversation, uniform, seeded)."""

    min: StrictInt = Field(ge=1, le=MAX_TURNS)
    max: StrictInt = Field(ge=1, le=MAX_TURNS)

    @model_validator(mode="after")
    def _order(self) -> Turns:
        if self.max < self.min:
            raise FieldProblem(("max",), f"max ({self.max}) is below min ({self.min})")
        return self


class ConversationConfig(Model):
    turns: Turns = Field(default_factory=lambda: Turns(min=1, max=1))
    history: Literal["server", "client", "none"] = "server"
    abandon: StrictFloat = Field(0.0, ge=0.0, lt=1.0)
    #: the gen field that carries the conversation's id (history: server)
    id_field: StrictStr = Field("conversationId", min_length=1, max_length=64)

    @field_validator("turns", mode="before")
    @classmethod
    def _turns(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"turns is a number of turns or {{min, max}}, got {short(value)}")
        if isinstance(value, int):
            if not 1 <= value <= MAX_TURNS:
                raise ValueError(f"turns must be 1 to {MAX_TURNS:,}, got {value}")
            return {"min": value, "max": value}
        return value

    @field_validator("abandon", mode="before")
    @classmethod
    def _abandon(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    def draw_turns(self, rng: random.Random) -> int:
        """This conversation's passes through the steps (seeded)."""
        t = self.turns
        return t.min if t.min == t.max else rng.randint(t.min, t.max)
