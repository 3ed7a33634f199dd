"""Scenario validation of request classes (issue 19): tags, slo.by_tag, goodput, the tokenizer.

Every mistake is refused before anything connects, with the file, the line and the key
(exit 2); a per-tag SLO on a tag this scenario can never produce is such a mistake.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from loadtest.errors import EXIT_BAD_INPUT, ScenarioError
from loadtest.scenario import load_scenario

_GENS = """\
session:
  steps:
    - gen: {name: ask, prompt: hi, enableWebSearch: true, web_search_share: 0.3, tags: {tier: free}}
    - gen: {prompt: again}
"""


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "sc.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return load_scenario(path)


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        _load(tmp_path, text)
    assert info.value.exit_code == EXIT_BAD_INPUT
    return str(info.value)


def test_the_tag_space_is_what_the_steps_can_send(tmp_path: Path) -> None:
    sc = _load(tmp_path, _GENS)
    assert sc.session.step_names() == ("ask", "gen2")  # type: ignore[attr-defined]
    assert sc.session.tag_space() == {  # type: ignore[attr-defined]
        "step": {"ask", "gen2"}, "web_search": {"true", "false"}, "tools": {"false"}, "tier": {"free"}}
    # every request carries tools=false; tier=free only the ask step's
    assert sc.session.whole_run_tags() == {"tools=false"}  # type: ignore[attr-defined]
    one = _load(tmp_path, "session:\n  steps:\n    - gen: {prompt: hi, tags: {tier: free}}\n")
    assert one.session.whole_run_tags() == {"step=gen1", "web_search=false", "tools=false", "tier=free"}  # type: ignore[attr-defined]


def test_per_tag_slos_and_goodput_load(tmp_path: Path) -> None:
    sc = _load(tmp_path, _GENS + """\
slo:
  ttft_p99_ms: 800
  by_tag: {"web_search=true": {ttft_p99_ms: 3000}, "step=gen2": {error_rate: 0.05, min_goodput: 0.9}}
  goodput: {ttft_ms: 500, e2e_ms: 8000}
  min_goodput: 0.95
""")
    slo = sc.slo  # type: ignore[attr-defined]
    assert dict(slo)["ttft_p99_ms"] == 800 and slo["min_goodput"] == 0.95
    assert slo.by_tag == {"web_search=true": {"ttft_p99_ms": 3000.0},
                          "step=gen2": {"error_rate": 0.05, "min_goodput": 0.9}}
    assert slo.goodput.to_dict() == {"ttft_ms": 500.0, "e2e_ms": 8000.0}
    assert slo.to_plain()["by_tag"]["web_search=true"] == {"ttft_p99_ms": 3000.0}


MISTAKES = [
    # a tag key no request of this scenario carries
    (_GENS + 'slo:\n  by_tag: {"region=eu": {ttft_p99_ms: 1}}\n', ":6: slo.by_tag.region=eu", ["region", "tag keys"]),
    # a value the key cannot take: tools was never given to any step
    (_GENS + 'slo:\n  by_tag: {"tools=true": {ttft_p99_ms: 1}}\n', ":6: slo.by_tag.tools=true", ["tools takes false"]),
    # web search at share 0 can never be sent
    ('session:\n  steps:\n    - gen: {prompt: hi, enableWebSearch: true, web_search_share: 0}\n'
     'slo:\n  by_tag: {"web_search=true": {ttft_p99_ms: 1}}\n', ":5: slo.by_tag.web_search=true", ["web_search takes false"]),
    (_GENS + 'slo:\n  by_tag: {"step=ask": {session_error_rate: 0.1}}\n', ":6: slo.by_tag.step=ask.session_error_rate",
     ["no tag"]),
    (_GENS + 'slo:\n  by_tag: {"step=ask": {ttft_p42: 1}}\n', ":6: slo.by_tag.step=ask.ttft_p42", ["unknown SLO"]),
    (_GENS + 'slo:\n  by_tag: {"ask": {ttft_p99_ms: 1}}\n', ":6: slo.by_tag.ask", ['"key=value"']),
    (_GENS + "slo:\n  min_goodput: 1.5\n  goodput: {ttft_ms: 1}\n", ":6: slo.min_goodput", ["between 0 and 1"]),
    (_GENS + "slo:\n  min_goodput: 0.9\n", ":6: slo.min_goodput", ["needs slo.goodput"]),
    (_GENS + "slo:\n  goodput: {}\n", ":6: slo.goodput", ["at least one limit"]),
    (_GENS + "slo:\n  goodput: {ttft: 5}\n", ":6: slo.goodput.ttft", ["ttft"]),
    (_GENS + "slo:\n  goodput: {ttft_ms: -1}\n", ":6: slo.goodput.ttft_ms", [">= 0"]),
    (_GENS + "slo:\n  goodput: {tpot_token_ms: 5}\n", ":6: slo.goodput.tpot_token_ms", ["tokenizer"]),
    ("session:\n  steps:\n    - gen: {prompt: hi, tags: {tier: [a, b]}}\n", ":3: session.steps[0].gen.tags.tier",
     ["string, number or boolean"]),
    ("session:\n  steps:\n    - gen: {prompt: hi, tags: {tier: {x: 1}}}\n", ":3: session.steps[0].gen.tags.tier",
     ["string, number or boolean"]),
    ("session:\n  steps:\n    - gen: {prompt: hi, tags: {step: x}}\n", ":3: session.steps[0].gen.tags.step",
     ["sets itself"]),
    ("session:\n  steps:\n    - gen: {prompt: hi, tags: {tier: 'a;b'}}\n", ":3: session.steps[0].gen.tags.tier",
     ["without ';'"]),
    ("session:\n  steps:\n    - gen: {name: a, prompt: hi}\n    - gen: {name: a, prompt: ho}\n",
     ":4: session.steps[1].gen.name", ["two gen steps are named 'a'"]),
]


@pytest.mark.parametrize(("text", "where", "words"), MISTAKES, ids=[m[1] for m in MISTAKES])
def test_class_mistakes_name_the_file_line_and_key(tmp_path: Path, text: str, where: str, words: list[str]) -> None:
    message = _error(tmp_path, text)
    assert f"sc.yaml{where}" in message, message
    for word in words:
        assert word in message, message


def test_numbers_and_booleans_are_tag_values_as_written(tmp_path: Path) -> None:
    sc = _load(tmp_path, "session:\n  steps:\n    - gen: {prompt: hi, tags: {tier: 2, paid: true, w: 0.5}}\n")
    assert sc.session.gen_steps[0].tags == {"tier": "2", "paid": "true", "w": "0.5"}  # type: ignore[attr-defined]


def test_a_missing_tokenizer_file_is_named(tmp_path: Path) -> None:
    message = _error(tmp_path, "target: {url: mock, tokenizer: nowhere/tokenizer.json}\n")
    assert "tokenizer" in message and "nowhere" in message
