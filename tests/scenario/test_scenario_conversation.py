"""The session.conversation block (issue 20): what it accepts, what it refuses (exit 2, with the
file, line and key), and the tags it makes possible (turn=N)."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path
from typing import Any

import pytest

from loadtest.errors import EXIT_BAD_INPUT, ScenarioError
from loadtest.scenario import load_scenario


def _load(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "sc.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return load_scenario(path)


def test_a_conversation_block_loads_with_its_defaults(tmp_path: Path) -> None:
    sc = _load(tmp_path, """
        session:
          conversation: {turns: {min: 2, max: 5}, abandon: 0.05}
          steps:
            - gen: {name: ask, prompt: hi}
            - think: {min: 1s, max: 2s}
            - gen: {name: more, prompt: go on}
        """)
    conv = sc.session.conversation
    assert (conv.turns.min, conv.turns.max, conv.history, conv.abandon, conv.id_field) == (
        2, 5, "server", 0.05, "conversationId")
    assert sc.session.max_turn() == 10  # 5 passes x 2 gens
    assert sc.session.tag_space()["turn"] == {str(n) for n in range(1, 11)}
    draws = {conv.draw_turns(random.Random(s)) for s in range(200)}
    assert draws == {2, 3, 4, 5}
    one = _load(tmp_path, "session:\n  conversation: {turns: 3, history: client}\n  steps: [{gen: {prompt: hi}}]\n")
    assert one.session.conversation.draw_turns(random.Random(1)) == 3
    assert "turn=1" not in one.session.whole_run_tags()  # three turns: turn is a class


MISTAKES = [
    ("session:\n  conversation: {turns: 0}\n", ":2: session.conversation.turns", ["1 to 10,000"]),
    ("session:\n  conversation: {turns: 10001}\n", ":2: session.conversation.turns", ["1 to 10,000"]),
    ("session:\n  conversation: {turns: {min: 5, max: 2}}\n", ":2: session.conversation.turns.max", ["below min"]),
    ("session:\n  conversation: {abandon: 1}\n", ":2: session.conversation.abandon", ["less than 1"]),
    ("session:\n  conversation: {abandon: -0.1}\n", ":2: session.conversation.abandon", ["greater than or equal"]),
    ("session:\n  conversation: {history: browser}\n", ":2: session.conversation.history", ["server", "client"]),
    ("session:\n  conversation: {turns: 2}\n  steps: [ping]\n", ":2: session.conversation", ["needs a gen step"]),
    ("session:\n  conversation: {turns: 2, tunrs: 3}\n", ":2: session.conversation.tunrs", ["turns"]),
    ("session:\n  conversation: {turns: 2}\n  steps: [{gen: {prompt: hi}}]\n"
     'slo:\n  by_tag: {"turn=3": {ttft_p99_ms: 10}}\n', ":5: slo.by_tag.turn=3", ["turn takes 1, 2"]),
]


@pytest.mark.parametrize(("text", "where", "words"), MISTAKES, ids=[m[1] + m[2][0] for m in MISTAKES])
def test_conversation_mistakes_name_the_file_line_and_key(tmp_path: Path, text: str, where: str,
                                                          words: list[str]) -> None:
    with pytest.raises(ScenarioError) as info:
        _load(tmp_path, text)
    message = str(info.value)
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert f"sc.yaml{where}" in message, message
    for word in words:
        assert word in message, message
