"""Conversations in a replayed trace (issue 20): turns in order, each conversation with one
clock (``t`` or ``think``), every mistake named by file and line. Pure."""

from __future__ import annotations

import pytest

from loadtest.errors import BadInput
from loadtest.schedule.arrivals import parse_trace, trace_schedule
from loadtest.schedule.traceturns import TraceTurn

GOOD = """\
{"t": 0.0, "conversation": "a", "turn": 1, "prompt": "hi"}
{"t": 0.1, "prompt_chars": 40}
{"conversation": "a", "turn": 2, "think": 2.5, "prompt": "more"}
{"t": 0.3, "conversation": "b", "turn": 1}
{"conversation": "b", "turn": 2, "t": 1.5, "prompt_chars": 100}
{"conversation": "a", "turn": 3, "think": 1}
"""


def test_later_turns_ride_on_their_conversations_first_arrival() -> None:
    arrivals = parse_trace(GOOD.splitlines(), source="t.jsonl")
    assert [(a.index, a.offset_s, a.prompt) for a in arrivals] == [(0, 0.0, "hi"), (1, 0.1, None), (2, 0.3, None)]
    assert arrivals[0].followups == (TraceTurn(None, 2.5, "more", None), TraceTurn(None, 1.0, None, None))
    assert arrivals[1].followups == ()
    assert arrivals[2].followups == (TraceTurn(1.5, None, None, 100),)
    fast = list(trace_schedule(arrivals, speed=2))
    assert fast[0].followups[0].think_s == 1.25 and fast[2].followups[0].offset_s == 0.75


@pytest.mark.parametrize(("lines", "where", "words"), [
    ('{"conversation": "a", "turn": 2, "think": 1}', "t.jsonl:1", ["turn 2 of conversation 'a' is out of order",
                                                                    "not in the trace yet"]),
    ('{"t": 0, "conversation": "a", "turn": 1}\n{"conversation": "a", "turn": 3, "think": 1}', "t.jsonl:2",
     ["has turn 2 next"]),
    ('{"t": 0, "conversation": "a", "turn": 1}\n{"conversation": "a", "turn": 2, "think": 1}\n'
     '{"conversation": "a", "turn": 3, "t": 4}', "t.jsonl:3", ['mixes "t" with "think"']),
    ('{"t": 0, "conversation": "a", "turn": 1, "think": 1}', "t.jsonl:1", ['gives "t", not "think"']),
    ('{"t": 0, "conversation": "a", "turn": 1}\n{"conversation": "a", "turn": 2}', "t.jsonl:2", ["exactly one"]),
    ('{"t": 0, "conversation": "a", "turn": 1}\n{"conversation": "a", "turn": 2, "think": -1}', "t.jsonl:2",
     ["think must be a number of seconds >= 0"]),
    ('{"t": 2, "conversation": "a", "turn": 1}\n{"conversation": "a", "turn": 2, "t": 1}', "t.jsonl:2",
     ["before its previous turn"]),
    ('{"t": 0, "turn": 1}', "t.jsonl:1", ['needs "conversation"']),
    ('{"t": 0, "conversation": "a", "turn": 0}', "t.jsonl:1", ['"turn" must be an integer >= 1']),
    ('{"t": 0, "think": 1}', "t.jsonl:1", ['"think" belongs to a later turn']),
])
def test_trace_conversation_mistakes_name_the_line(lines: str, where: str, words: list[str]) -> None:
    with pytest.raises(BadInput) as info:
        parse_trace(lines.splitlines(), source="t.jsonl")
    message = str(info.value)
    assert message.startswith(where + ":"), message
    for word in words:
        assert word in message, message
