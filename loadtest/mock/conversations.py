"""The conversations the mock keeps (issue 20): pure, no I/O, no clock.

A chat proxy names a conversation and an answer in every ``conv-message``; a later ``gen`` whose
data carries ``conversationId`` continues that conversation, from any connection, and the proxy
prefills the conversation so far before the first token. The mock keeps what that needs and no
more: per conversation id, how many turns it has had (the latency model charges
``turn_ms`` per earlier turn; :meth:`~loadtest.mock.latency.MockModel.plan`).

Ids are global to the store (one store per mock process, shared by all its connections, as a real
proxy's are) and never reused within it. The store is bounded: at most :data:`MAX_CONVERSATIONS`;
past that the conversation used least recently is forgotten (a later turn on it gets the
unknown-id error), so a long soak cannot grow the mock's memory without bound. An entry is an id
and a count (~200 bytes), so the bound holds the store near 20 MB.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

__all__ = ["CONVERSATION_FIELD", "MAX_CONVERSATIONS", "Conversations", "Turn", "UnknownConversation"]

#: the ``gen`` data field that names the conversation to continue
CONVERSATION_FIELD: Final = "conversationId"
#: conversations a mock remembers at most (the least recently continued is forgotten first)
MAX_CONVERSATIONS: Final = 100_000


class UnknownConversation(LookupError):
    """A ``gen`` named a conversation this store does not know (never started here, or
    forgotten), or named it with something that is not a string. ``str()`` is the text of the
    ``error`` event that answers it."""


@dataclass(frozen=True, slots=True)
class Turn:
    """One accepted turn: the ids its ``conv-message`` carries and its number (1 = the first)."""

    conversation_id: str
    message_id: str
    number: int


class Conversations:
    """Conversation id → turns so far, bounded (least recently used forgotten first).

    Check a ``gen`` with :meth:`earlier_turns` (it raises for an unknown id, and changes
    nothing), then record the turn with :meth:`add_turn` once it is accepted. The caller must not
    let other turns run between the two (the mock calls both with no ``await`` between them).
    """

    __slots__ = ("_conversations", "_next_conversation", "_next_message", "forgotten", "limit")

    def __init__(self, limit: int = MAX_CONVERSATIONS) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self._conversations: OrderedDict[str, int] = OrderedDict()
        self._next_conversation = 1
        self._next_message = 1
        #: conversations dropped to keep the bound
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self._conversations)

    def __contains__(self, conversation_id: object) -> bool:
        return conversation_id in self._conversations

    def earlier_turns(self, requested: object) -> int:
        """Turns the conversation a ``gen`` names has had before this one.

        ``requested`` is the ``gen``'s ``conversationId`` (None, or the field absent: a new
        conversation, 0 earlier turns). Raises :class:`UnknownConversation` if it is not a
        string or not a conversation this store knows.
        """
        if requested is None:
            return 0
        if not isinstance(requested, str):
            raise UnknownConversation(f"{CONVERSATION_FIELD} must be a string, got {requested!r}")
        turns = self._conversations.get(requested)
        if turns is None:
            raise UnknownConversation(f"unknown {CONVERSATION_FIELD} {requested!r}")
        return turns

    def add_turn(self, requested: object) -> Turn:
        """Record one more turn of the conversation ``requested`` names (None: start a new one)
        and name its answer with a fresh message id. Raises :class:`UnknownConversation` as
        :meth:`earlier_turns` does, recording nothing."""
        turns = self.earlier_turns(requested) + 1
        if requested is None:
            conversation_id = f"c-{self._next_conversation}"
            self._next_conversation += 1
            if len(self._conversations) >= self.limit:
                self._conversations.popitem(last=False)
                self.forgotten += 1
        else:
            assert isinstance(requested, str)  # earlier_turns refused anything else
            conversation_id = requested
        self._conversations[conversation_id] = turns
        self._conversations.move_to_end(conversation_id)
        message_id = f"m-{self._next_message}"
        self._next_message += 1
        return Turn(conversation_id, message_id, turns)
