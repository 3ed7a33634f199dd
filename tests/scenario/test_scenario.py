"""Scenario files: loading, defaults, overrides, every kind of mistake, dump, fingerprint, fuzz."""

from __future__ import annotations

import random
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadtest.errors import EXIT_BAD_INPUT, BadInput, ScenarioError
from loadtest.mock.faults import FaultModel
from loadtest.mock.latency import Dist, MockModel
from loadtest.scenario import (
    GenStep,
    Overrides,
    PingStep,
    Scenario,
    SetModelStep,
    ThinkStep,
    dump_scenario,
    fingerprint,
    format_duration,
    load_scenario,
    parse_duration,
    resolve_api_key,
)

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
SHIPPED = ["smoke.yaml", "chat-mix.yaml"]  # the starters of `loadtest new`: tests/cli/test_new.py


def write(tmp_path: Path, text: str, name: str = "sc.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, **kwargs: Any) -> Scenario:
    return load_scenario(write(tmp_path, text), **kwargs)


def error_of(tmp_path: Path, text: str, **kwargs: Any) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_text(tmp_path, text, **kwargs)
    return info.value


# --------------------------------------------------------------------------- shipped scenarios


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_loads_and_round_trips(name: str, tmp_path: Path) -> None:
    sc = load_scenario(SCENARIOS / name)
    assert sc.name == name.removesuffix(".yaml")
    dumped = write(tmp_path, dump_scenario(sc), "as-run.yaml")
    again = load_scenario(dumped)
    assert again == sc
    assert fingerprint(again) == fingerprint(sc)
    assert dump_scenario(again) == dump_scenario(sc)


def test_smoke_is_what_it_says() -> None:
    sc = load_scenario(SCENARIOS / "smoke.yaml")
    assert sc.target.is_mock
    assert sc.load.mode == "closed" and sc.load.concurrency == 10
    assert (sc.load.duration_s, sc.load.warmup_s) == (15.0, 2.0)
    assert [type(s) for s in sc.session.steps] == [PingStep, GenStep, ThinkStep]
    # the default mock (100 ms TTFT, 20 chunks 10 ms apart) passes with margin
    assert sc.slo["ttft_p99_ms"] >= 3 * 100
    assert sc.slo["e2e_p99_ms"] >= 3 * (100 + 19 * 10)
    assert sc.mock.model == MockModel()


def test_chat_mix_has_mixed_prompts_tools_and_web_search() -> None:
    sc = load_scenario(SCENARIOS / "chat-mix.yaml")
    first = sc.session.gen_steps[0]
    lengths = sorted(len(p) for p in first.prompts)
    assert len(first.prompts) >= 9 and lengths[0] < 40 and lengths[-1] > 300
    assert first.tools and first.tools_share == pytest.approx(0.3)
    assert first.enable_web_search and first.web_search_share == pytest.approx(0.2)
    assert sc.mock.ttft_ms.kind == "lognormal"
    assert 25 <= sc.load.duration_s <= 35
    assert any(isinstance(s, ThinkStep) and s.max_s > s.min_s for s in sc.session.steps)


# --------------------------------------------------------------------------- defaults


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n", "{}\n", "---\n"])
def test_an_empty_file_is_refused(tmp_path: Path, text: str) -> None:
    """Issue 10: an empty file ran 20 s of defaults against the mock; it is a mistake."""
    with pytest.raises(ScenarioError, match="empty scenario"):
        load_text(tmp_path, text)


def test_a_file_with_one_setting_is_a_scenario_of_defaults(tmp_path: Path) -> None:
    sc = load_text(tmp_path, "# only a name\nname: sc\n")
    assert sc.name == "sc"
    assert sc.target.url == "mock" and sc.target.api_key_env == "LOADTEST_API_KEY"
    assert sc.target.model is None and sc.target.insecure is False
    assert sc.mock.model == MockModel()
    assert sc.mock.faults == FaultModel() and not sc.mock.faults.active
    assert sc.mock_seed is None  # a fresh seed per run (issue 13), not load.seed
    load = sc.load
    assert (load.mode, load.concurrency, load.rate_per_s, load.arrival) == ("closed", 10, None, "poisson")
    assert (load.duration_s, load.warmup_s, load.seed, load.requests) == (20.0, 0.0, 1, None)
    assert (load.max_connections, load.max_queue, load.connections, load.stages) == (100, 10000, None, ())
    assert sc.session.steps == (GenStep.model_validate({"prompt": "Explain artificial intelligence"}),)
    assert (sc.timeouts.connect_s, sc.timeouts.first_token_s, sc.timeouts.stream_s) == (10.0, 30.0, 120.0)
    assert sc.slo == {"ttft_p99_ms": 1000.0, "error_rate": 0.01, "session_error_rate": 0.01}
    assert sc.out is None


def test_null_sections_are_defaults_and_an_empty_slo_keeps_only_the_error_rates(tmp_path: Path) -> None:
    sc = load_text(tmp_path, "target:\nload:\nslo:\n")
    assert sc == load_text(tmp_path, "load: {}")
    # every request or step the target did not serve counts against the run (issue 10): the two
    # error rates always apply, with their default limits unless the scenario sets its own
    always = {"error_rate": 0.01, "session_error_rate": 0.01}
    assert load_text(tmp_path, "slo: {}").slo == always
    assert load_text(tmp_path, "slo: {e2e_p99_ms: 900, ttft_p99_ms: null}").slo == {"e2e_p99_ms": 900.0, **always}
    assert load_text(tmp_path, "slo: {session_error_rate: 0.5}").slo == {"error_rate": 0.01, "session_error_rate": 0.5}


def test_steps_are_typed(tmp_path: Path) -> None:
    sc = load_text(
        tmp_path,
        """
        session:
          steps:
            - ping
            - gen: {prompts: [a, b, c], pick: cycle, temperature: 0.2, extra: {conversationId: c1}}
            - think: 500ms
            - think: {min: 200ms, max: 2s}
            - set_model: gpt-x
        """,
    )
    ping, gen, think, ranged, model = sc.session.steps
    assert isinstance(ping, PingStep)
    assert isinstance(gen, GenStep) and gen.prompts == ("a", "b", "c")
    assert isinstance(think, ThinkStep) and (think.min_s, think.max_s) == (0.5, 0.5)
    assert isinstance(ranged, ThinkStep) and (ranged.min_s, ranged.max_s) == (0.2, 2.0)
    assert model == SetModelStep.model_validate({"model": "gpt-x"})
    rng = random.Random(3)
    assert [gen.pick_prompt(n, rng) for n in range(4)] == ["a", "b", "c", "a"]
    assert gen.gen_data("b") == {"prompt": "b", "temperature": 0.2, "conversationId": "c1"}
    assert all(0.2 <= ranged.sample_s(rng) <= 2.0 for _ in range(100))


def test_gen_data_carries_tools_and_web_search_only_when_asked(tmp_path: Path) -> None:
    sc = load_text(
        tmp_path,
        """
        session:
          steps:
            - gen:
                prompt: hi
                pick: random
                enableWebSearch: true
                webSearch: {enabled: true, mode: force}
                tools: [{type: function, function: {name: f, parameters: {type: object}}}]
                tools_share: 0.3
                web_search_share: 0.2
        """,
    )
    gen = sc.session.gen_steps[0]
    full = gen.gen_data("hi")
    assert full["tools"][0]["function"]["name"] == "f"
    assert full["enableWebSearch"] is True and full["webSearch"] == {"enabled": True, "mode": "force"}
    assert gen.gen_data("hi", tools=False, web_search=False) == {"prompt": "hi"}
    full["tools"].clear()  # a copy: the frozen config is untouched
    assert gen.tools is not None and len(gen.tools) == 1


def test_mock_section_builds_the_mock_model(tmp_path: Path) -> None:
    sc = load_text(
        tmp_path,
        """
        mock:
          ttft_ms: {dist: lognormal, median: 100, p99: 400}
          gap_ms: {dist: uniform, low: 5, high: 15}
          chunks: 30
          capacity: 4
          gap_slowdown: 0.01
          faults: {error_instead: 0.05, stall: {at_s: 3, ms: 500}}
          seed: 9
        """,
    )
    assert sc.mock.model == MockModel(
        ttft_ms=Dist(kind="lognormal", a=100, b=400),
        gap_ms=Dist(kind="uniform", a=5, b=15),
        chunks=Dist(a=30),
        capacity=4,
        gap_slowdown=0.01,
    )
    assert sc.mock.faults.rates == (("error_instead", 0.05),)
    assert sc.mock.faults.stalls == ((3.0, 0.5),)
    assert sc.mock_seed == 9


def test_stages_default_the_duration_to_their_sum(tmp_path: Path) -> None:
    text = """
        load:
          mode: open
          stages: [{duration: 10s, target: 5}, {duration: 1m, target: 20}]
          warmup: 30s
        """
    assert load_text(tmp_path, text).load.duration_s == 70.0
    assert load_text(tmp_path, text + "  duration: 40s\n").load.duration_s == 40.0


def test_prompts_file_is_read_relative_to_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "prompts.jsonl").write_text('{"prompt": "one"}\n\n{"prompt": "two", "size": "s"}\n')
    sc = load_text(tmp_path, "session: {steps: [{gen: {prompts_file: p/prompts.jsonl}}]}")
    assert sc.session.gen_steps[0].prompts == ("one", "two")


def test_trace_is_resolved_relative_to_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text('{"t": 0}\n')
    sc = load_text(tmp_path, "load: {mode: open, trace: t.jsonl}")
    assert sc.load.trace == str((tmp_path / "t.jsonl").resolve())


# --------------------------------------------------------------------------- overrides


def test_overrides_replace_file_values(tmp_path: Path) -> None:
    path = write(tmp_path, "load: {concurrency: 3, duration: 30s, warmup: 5s, seed: 4}\n")
    ov = Overrides(
        target_url="ws://127.0.0.1:9/v2/chat",
        api_key="secret-key",
        duration_s=12.5,
        concurrency=7,
        requests=100,
        seed=42,
        out="runs/x",
    )
    sc = load_scenario(path, overrides=ov)
    assert sc.target.url == "ws://127.0.0.1:9/v2/chat"
    assert (sc.load.duration_s, sc.load.concurrency, sc.load.requests, sc.load.seed) == (12.5, 7, 100, 42)
    assert sc.out == "runs/x" and sc.mock_seed is None  # --seed is the load's, not the mock's
    text = dump_scenario(sc)
    assert "secret-key" not in text and "duration: 12.5s" in text
    assert load_scenario(write(tmp_path, text, "as-run.yaml")) == sc


def test_rate_override_on_an_open_scenario(tmp_path: Path) -> None:
    sc = load_text(tmp_path, "load: {mode: open, rate: 5}", overrides=Overrides(rate_per_s=12.0))
    assert sc.load.rate_per_s == 12.0


def test_rate_override_does_not_switch_a_closed_scenario_to_open(tmp_path: Path) -> None:
    err = error_of(tmp_path, "load: {concurrency: 3}", overrides=Overrides(rate_per_s=5.0))
    assert "load.rate (set by --rate)" in str(err) and "mode: open" in str(err)


def test_concurrency_override_on_an_open_scenario_is_refused(tmp_path: Path) -> None:
    err = error_of(tmp_path, "load: {mode: open, rate: 5}", overrides=Overrides(concurrency=5))
    assert "--concurrency" in str(err)


def test_duration_override_below_warmup_is_refused(tmp_path: Path) -> None:
    err = error_of(tmp_path, "load:\n  duration: 30s\n  warmup: 5s\n", overrides=Overrides(duration_s=4.0))
    assert ":3: load.warmup" in str(err) and "shorter than duration (4s)" in str(err)


def test_bad_override_values_name_the_flag(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: x\n", overrides=Overrides(concurrency=0))
    assert "load.concurrency (set by --concurrency)" in str(err)
    err = error_of(tmp_path, "name: x\n", overrides=Overrides(target_url="http://h/"))
    assert "target.url (set by --target)" in str(err)


def test_resolve_api_key_prefers_the_flag_then_the_named_variable(tmp_path: Path) -> None:
    sc = load_text(tmp_path, "target: {url: 'wss://h/v2/chat', api_key_env: MY_KEY}")
    assert resolve_api_key(sc, Overrides(api_key="flag"), {"MY_KEY": "env"}) == "flag"
    assert resolve_api_key(sc, None, {"MY_KEY": "env"}) == "env"
    assert resolve_api_key(sc, Overrides(), {"LOADTEST_API_KEY": "other"}) is None
    assert resolve_api_key(sc, None, {"MY_KEY": ""}) is None


# --------------------------------------------------------------------------- mistakes

MISTAKES = [
    # (file text, expected "LINE: key.path", expected words in the message)
    ("name: x\nlaod:\n  concurrency: 3\n", ":2: laod", ["unknown key 'laod'", "did you mean 'load'"]),
    ("load:\n  mode: closed\n  concurency: 5\n", ":3: load.concurency", ["did you mean 'concurrency'"]),
    ("target:\n  url: mock\n  api_key_evn: X\n", ":3: target.api_key_evn", ["did you mean 'api_key_env'"]),
    (
        "session:\n  steps:\n    - ping\n    - gen:\n        prompt: hi\n        temprature: 0.2\n",
        ":6: session.steps[1].gen.temprature",
        ["did you mean 'temperature'"],
    ),
    ("session:\n  steps:\n    - pnig\n", ":3: session.steps[0]", ["'pnig'", "did you mean 'ping'"]),
    ("session:\n  steps:\n    - gne: {prompt: x}\n", ":3: session.steps[0].gne", ["did you mean 'gen'"]),
    ("slo:\n  ttft_p99: 100\n", ":2: slo.ttft_p99", ["unknown SLO", "did you mean 'ttft_p99_ms'"]),
    ("load:\n  duration: 20 seconds\n", ":2: load.duration", ["'20 seconds'", '"500ms"', '"2m"', '"1h"']),
    ("load:\n  warmup: -1s\n", ":2: load.warmup", ["a duration is"]),
    ("timeouts:\n  connect: 0s\n", ":2: timeouts.connect", ["greater than 0"]),
    ("load:\n  mode: open\n  rate: -5\n", ":3: load.rate", ["greater than 0", "-5"]),
    ("load:\n  mode: open\n", ":1: load.rate", ["needs a rate"]),
    ("load:\n  concurrency: 0\n", ":2: load.concurrency", ["greater than or equal to 1"]),
    ("load:\n  concurrency: 2.5\n", ":2: load.concurrency", ["integer"]),
    ("load:\n  concurrency: '10'\n", ":2: load.concurrency", ["integer"]),
    ("load:\n  duration: 10s\n  warmup: 10s\n", ":3: load.warmup", ["shorter than duration"]),
    ("load:\n  rate: 5\n", ":2: load.rate", ["mode: open"]),
    ("load:\n  mode: sideways\n", ":2: load.mode", ["'closed'", "'open'"]),
    ("load:\n  stages:\n    - {duration: 5s}\n", ":3: load.stages[0].target", ["required"]),
    ("session:\n  steps:\n    - gen: {temperature: 0.2}\n", ":3: session.steps[0].gen", ["needs a prompt"]),
    ("session:\n  steps:\n    - gen:\n", ":3: session.steps[0].gen", ["needs a prompt"]),
    ("session:\n  steps:\n    - gen: {prompt: ''}\n", ":3: session.steps[0].gen.prompt", ["at least 1"]),
    (
        "session:\n  steps:\n    - gen: {prompt: a, prompts: [b]}\n",
        ":3: session.steps[0].gen.prompts",
        ["one of prompt"],
    ),
    (
        "session:\n  steps:\n    - gen:\n        prompt: a\n        temperature: 2.5\n",
        ":5: session.steps[0].gen.temperature",
        ["less than or equal to 2"],
    ),
    (
        "session:\n  steps:\n    - gen:\n        prompt: a\n        tools:\n          - {type: function, function: {}}\n",
        ":6: session.steps[0].gen.tools[0].function",
        ["name"],
    ),
    (
        "session:\n  steps:\n    - gen: {prompt: a, extra: {prompt: b}}\n",
        ":3: session.steps[0].gen.extra.prompt",
        ["own key"],
    ),
    (
        "session:\n  steps:\n    - think: {min: 2s, max: 1s}\n",
        ":3: session.steps[0].think.max",
        ["below min"],
    ),
    ("session:\n  steps: []\n", ":2: session.steps", ["at least one gen or ping"]),
    ("session:\n  steps:\n    - think: 1s\n", ":2: session.steps", ["at least one gen or ping"]),
    ("target:\n  url: http://example.com/v2/chat\n", ":2: target.url", ["ws://"]),
    ("target:\n  url: 'wss:///v2/chat'\n", ":2: target.url", ["host"]),
    ("name: has space\n", ":1: name", ["pattern"]),
    ("mock:\n  ttft_ms: {dist: lognormal, median: 400, p99: 100}\n", ":2: mock.ttft_ms", ["median < p99"]),
    ("mock:\n  gap_ms: {dist: gauss, mean: 1}\n", ":2: mock.gap_ms", ["uniform, normal, lognormal"]),
    ("mock:\n  chunks: -3\n", ":2: mock.chunks", [">= 0"]),
    ("mock:\n  faults: {no_stop: 2}\n", ":2: mock.faults", ["no_stop", "between 0 and 1"]),
    ("mock:\n  faults: {explode: 0.1}\n", ":2: mock.faults", ["explode"]),
    ("mock:\n  capacity: 0\n", ":2: mock.capacity", ["greater than or equal to 1"]),
    ("load: 5\n", ":1: load", ["must be a mapping"]),
    ("slo:\n  error_rate: 2\n", ":2: slo.error_rate", ["between 0 and 1"]),
    ("load:\n  connections: 200\n  mode: open\n  rate: 1\n", ":2: load.connections", ["max_connections"]),
    ("name: a\nname: b\n", ":2: name", ["duplicate key", "line 1"]),
]


@pytest.mark.parametrize(("text", "where", "words"), MISTAKES, ids=[m[1] for m in MISTAKES])
def test_mistakes_name_the_key_and_its_line(tmp_path: Path, text: str, where: str, words: list[str]) -> None:
    err = error_of(tmp_path, text)
    message = str(err)
    assert f"sc.yaml{where}" in message, message
    assert err.where is not None and err.where.endswith(where.split(" (")[0])
    for word in words:
        assert word in message, message
    assert err.exit_code == EXIT_BAD_INPUT


def test_an_api_key_in_the_url_is_refused_and_not_repeated(tmp_path: Path) -> None:
    err = error_of(tmp_path, "target:\n  url: wss://h.example/v2/chat?apikey=hunter2\n")
    assert ":2: target.url" in str(err) and "API key" in str(err)
    assert "hunter2" not in str(err)
    err = error_of(tmp_path, "name: x\n", overrides=Overrides(target_url="wss://h/v2/chat?APIKEY=hunter2"))
    assert "hunter2" not in str(err) and "--target" in str(err)


def test_broken_yaml_reports_the_yaml_position(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: x\nload:\n  concurrency: [1, 2\n  duration: 5s\n")
    assert "sc.yaml:4:" in str(err) and "not valid YAML" in str(err)
    err = error_of(tmp_path, "name: x\n  bad indent: 1\n")
    assert "sc.yaml:2:" in str(err)


def test_odd_yaml_ends_in_a_scenario_error(tmp_path: Path) -> None:
    assert "sc.yaml:2: not valid YAML: character U+0000" in str(error_of(tmp_path, "name: x\n\x00\n"))
    assert "nested too deeply" in str(error_of(tmp_path, "a: " + "[" * 5000 + "]" * 5000 + "\n"))
    assert "session.steps[1]" in str(error_of(tmp_path, "session: {steps: &s [ping, *s]}\n"))
    assert ":1: name" in str(error_of(tmp_path, "name: 2024-01-01\n"))
    assert "mock.ttft_ms" in str(error_of(tmp_path, "mock: {ttft_ms: {dist: [1]}}\n"))
    assert "gen.extra" in str(
        error_of(tmp_path, "session: {steps: [{gen: {prompt: x, extra: {a: .nan}}}]}\n")
    )
    # merge keys: the explicit key wins, as YAML says
    sc = load_text(tmp_path, "load:\n  <<: {concurrency: 3, seed: 5}\n  concurrency: 4\n")
    assert (sc.load.concurrency, sc.load.seed) == (4, 5)


def test_a_top_level_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    for text in ("- ping\n- gen\n", "just a string\n", "42\n"):
        assert "top level must be a mapping" in str(error_of(tmp_path, text))


def test_missing_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(tmp_path / "nope.yaml")
    err = error_of(tmp_path, "session:\n  steps:\n    - gen: {prompts_file: missing.jsonl}\n")
    assert ":3: session.steps[0].gen.prompts_file" in str(err) and "not found" in str(err)
    err = error_of(tmp_path, "load:\n  mode: open\n  trace: missing.jsonl\n")
    assert ":3: load.trace" in str(err)


def test_a_bad_prompts_file_line_is_named(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text('{"prompt": "ok"}\n{"prompt": 3}\n')
    err = error_of(tmp_path, "session: {steps: [{gen: {prompts_file: p.jsonl}}]}")
    assert f"{tmp_path / 'p.jsonl'}:2" in str(err)
    (tmp_path / "p.jsonl").write_text('{"prompt": "ok"}\nnot json\n')
    assert "p.jsonl:2" in str(error_of(tmp_path, "session: {steps: [{gen: {prompts_file: p.jsonl}}]}"))


def test_several_mistakes_are_all_listed(tmp_path: Path) -> None:
    err = error_of(tmp_path, "load:\n  concurrency: 0\ntimeouts:\n  stream: soon\n")
    assert ":2: load.concurrency" in str(err) and ":4: timeouts.stream" in str(err)


# --------------------------------------------------------------------------- durations

DURATIONS = [
    ("20s", 20.0),
    ("500ms", 0.5),
    ("2m", 120.0),
    ("1h", 3600.0),
    ("1.5s", 1.5),
    ("0.25", 0.25),
    (" 3 s ", 3.0),
    (".5s", 0.5),
    (7, 7.0),
    (0.1, 0.1),
    ("0s", 0.0),
]


@pytest.mark.parametrize(("text", "seconds"), DURATIONS)
def test_durations_parse(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["20 seconds", "1d", "-1s", "1e3s", "s", "", "5 m s", True, None, [1], "inf"])
def test_bad_durations_list_the_accepted_forms(bad: object) -> None:
    with pytest.raises(BadInput, match="500ms"):
        parse_duration(bad)


def test_bad_numeric_durations_are_refused() -> None:
    for bad in (-1, float("nan"), float("inf"), 10**400):
        with pytest.raises(BadInput):
            parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "0s"), (0.5, "500ms"), (1.5, "1.5s"), (20.0, "20s"), (90.0, "90s"), (120.0, "2m"), (3600.0, "1h")],
)
def test_durations_format_readably(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_formatted_durations_parse_back_exactly(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_ignores_target_key_and_output(tmp_path: Path) -> None:
    path = SCENARIOS / "smoke.yaml"
    base = load_scenario(path)
    other = load_scenario(
        path,
        overrides=Overrides(target_url="wss://elsewhere.example/v2/chat", api_key="k", out=str(tmp_path)),
    )
    assert base != other
    assert fingerprint(base) == fingerprint(other)
    assert len(fingerprint(base)) == 64 and int(fingerprint(base), 16) >= 0


def test_fingerprint_differs_across_workloads() -> None:
    path = SCENARIOS / "smoke.yaml"
    base = fingerprint(load_scenario(path))
    assert fingerprint(load_scenario(path, overrides=Overrides(concurrency=11))) != base
    assert fingerprint(load_scenario(SCENARIOS / "chat-mix.yaml")) != base


def test_fingerprint_leaves_out_the_seed_and_the_mock(tmp_path: Path) -> None:
    # issue 13: rounds of a gate use fresh seeds, and the embedded mock is the target
    path = SCENARIOS / "smoke.yaml"
    base = fingerprint(load_scenario(path))
    assert fingerprint(load_scenario(path, overrides=Overrides(seed=2))) == base
    slower = tmp_path / "slower.yaml"
    slower.write_text(path.read_text(encoding="utf-8").replace("ttft_ms: 100", "ttft_ms: 300"), encoding="utf-8")
    assert load_scenario(slower).mock.model != load_scenario(path).mock.model
    assert fingerprint(load_scenario(slower)) == base


# --------------------------------------------------------------------------- fuzz

_KEYS = [
    "name", "target", "mock", "load", "session", "timeouts", "slo", "url", "mode", "rate", "steps",
    "gen", "ping", "think", "prompt", "prompts", "duration", "warmup", "stages", "faults", "ttft_ms",
    "dist", "concurrency", "min", "max", "tools", "extra", "error_rate", "set_model", "target",
]  # fmt: skip

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["ping", "gen", "10s", "500ms", "mock", "open", "closed", "ws://h/x", "lognormal"])
)
_keys = st.sampled_from(_KEYS) | st.text(max_size=8) | st.integers(-3, 3)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=25,
)


def _outcome(path: Path) -> Scenario | ScenarioError:
    try:
        sc = load_scenario(path)
    except ScenarioError as err:
        assert "internal error" not in str(err), str(err)
        return err
    # whatever loads also dumps, and the dump loads back to the same scenario
    again = path.with_name("again.yaml")
    again.write_text(dump_scenario(sc), encoding="utf-8")
    assert load_scenario(again) == sc
    assert len(fingerprint(sc)) == 64
    return sc


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz")
    shutil.copy(SCENARIOS / "prompts.jsonl", path / "prompts.jsonl")
    return path


_fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_fuzz
@given(doc=st.dictionaries(st.sampled_from(_KEYS[:7]) | _keys, _values, max_size=6) | _values)
def test_fuzz_random_documents_end_in_a_scenario_or_a_scenario_error(fuzz_dir: Path, doc: Any) -> None:
    path = fuzz_dir / "doc.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    _outcome(path)


_tokens = st.sampled_from([*"ab: -[]{}\n\t'\"#&*!|>%@`,?0.5s\x00\x85\ufeff", "<<", "!!set", "gen", "load"])


@_fuzz
@given(text=st.lists(_tokens, max_size=40).map("".join))
def test_fuzz_random_text_ends_in_a_scenario_or_a_scenario_error(fuzz_dir: Path, text: str) -> None:
    path = fuzz_dir / "text.yaml"
    path.write_text(text, encoding="utf-8")
    _outcome(path)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        out.append((*prefix, key))
        out.extend(_paths(value, (*prefix, key)))
    return out


@_fuzz
@given(name=st.sampled_from(SHIPPED), data=st.data())
def test_fuzz_mutated_shipped_scenarios(fuzz_dir: Path, name: str, data: st.DataObject) -> None:
    doc = yaml.safe_load((SCENARIOS / name).read_text(encoding="utf-8"))
    for _ in range(data.draw(st.integers(1, 4))):
        paths = _paths(doc)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(_scalars)
    target = fuzz_dir / "mutated.yaml"
    target.write_text(yaml.safe_dump(doc), encoding="utf-8")
    _outcome(target)
