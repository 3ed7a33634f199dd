"""The session's steps (``ping``, ``gen``, ``think``, ``set_model``) and :class:`SessionConfig`.

A step is written ``- ping`` or as a mapping with one key (``- gen: {...}``, ``- think: 500ms``,
``- set_model: NAME``); each model unwraps its own shape and dumps back to it.

Internal to :mod:`loadtest.scenario`, which re-exports the public names. No I/O.
"""

from __future__ import annotations

import copy
import math
import random
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    Discriminator,
    Field,
    PlainValidator,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictFloat,
    StrictStr,
    Tag,
    field_validator,
    model_serializer,
    model_validator,
)

from loadtest.metrics.tags import AUTO_KEYS, render_value
from loadtest.scenario.conversation import ConversationConfig
from loadtest.scenario.fields import Duration, FieldProblem, Model, format_duration, json_value, short

__all__ = [
    "STEP_KINDS",
    "GenStep",
    "PingStep",
    "SessionConfig",
    "SetModelStep",
    "Step",
    "ThinkStep",
]

_DEFAULT_PROMPT = "Explain artificial intelligence"
_TAG_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_STEP_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: keys the harness sets itself (``turn`` once conversations exist)
RESERVED_TAG_KEYS: tuple[str, ...] = (*AUTO_KEYS, "turn")


def _check_tags(value: Any) -> dict[str, str]:
    """``tags: {key: value}`` → ``{key: "value"}`` (values rendered as tags show them)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FieldProblem((), f"tags must be a mapping of key: value, got {short(value)}")
    out: dict[str, str] = {}
    for key, v in value.items():
        if not isinstance(key, str) or not _TAG_KEY_RE.fullmatch(key):
            raise FieldProblem((key,), "a tag key is a name: letters, digits, _ . - (starting with a letter or _)")
        if key in RESERVED_TAG_KEYS:
            raise FieldProblem((key,), f"{key!r} is a tag the harness sets itself "
                               f"({', '.join(RESERVED_TAG_KEYS)}); use another key (the step's own name is `name:`)")
        if isinstance(v, float) and not math.isfinite(v):
            raise FieldProblem((key,), f"a tag value is a string, number or boolean, got {short(v)}")
        if not isinstance(v, (str, int, float, bool)):
            raise FieldProblem((key,), f"a tag value is a string, number or boolean, got {short(v)}")
        text = render_value(v)
        if not text or len(text) > 100 or any(c in text for c in ";=\n\r"):
            raise FieldProblem((key,), "a tag value is 1 to 100 characters without ';', '=' or a line break, "
                               f"got {short(v)}")
        out[key] = text
    return out


class PingStep(Model):
    """``- ping``: send a ping, record the round trip."""

    kind: ClassVar[str] = "ping"

    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        if data == "ping":
            return {}
        if isinstance(data, dict) and set(data) == {"ping"}:
            return data["ping"]
        return data

    @model_serializer(mode="plain")
    def _dump(self) -> Any:
        return "ping"


def _tool(value: object, i: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldProblem(
            ("tools", i), "a tool is a mapping {type: function, function: {name, description, parameters}}"
        )
    if value.get("type") != "function":
        raise FieldProblem(("tools", i, "type"), "a tool needs type: function")
    fn = value.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise FieldProblem(
            ("tools", i, "function"), "a tool needs function: {name: ..., description, parameters}"
        )
    json_value(value, "a tool")
    return value


_GEN_RESERVED = ("prompt", "temperature", "enableWebSearch", "webSearch", "tools")
_Share = Annotated[StrictFloat, Field(ge=0, le=1)]


class GenStep(Model):
    """``- gen: {...}``: one generation. Exactly one of ``prompt``, ``prompts``, ``prompts_file``.

    ``prompts_file`` is read by :func:`load_scenario` into ``prompts``; the model keeps the list.
    """

    kind: ClassVar[str] = "gen"
    _extra_keys: ClassVar[tuple[str, ...]] = ("prompts_file",)

    #: the ``step`` tag of its requests (default ``gen1``, ``gen2``, … by position)
    name: StrictStr | None = Field(None, pattern=_STEP_NAME_RE.pattern)
    tags: Annotated[dict[str, str], PlainValidator(_check_tags)] = Field(default_factory=dict)

    prompt: StrictStr | None = Field(None, min_length=1)
    prompt_list: tuple[Annotated[StrictStr, Field(min_length=1)], ...] | None = Field(
        None, alias="prompts", min_length=1
    )
    pick: Literal["cycle", "random"] = "cycle"
    temperature: StrictFloat | None = Field(None, ge=0, le=2)
    enable_web_search: StrictBool | None = Field(None, alias="enableWebSearch")
    web_search: dict[str, Any] | None = Field(None, alias="webSearch")
    tools: tuple[dict[str, Any], ...] | None = None
    tools_share: _Share = 1.0
    web_search_share: _Share = 1.0
    extra: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        if data == "gen":
            return {}
        if isinstance(data, dict) and set(data) == {"gen"}:
            return data["gen"]
        return data

    @field_validator("tools", mode="before")
    @classmethod
    def _tools(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_tool(t, i) for i, t in enumerate(value)]
        return value

    @field_validator("web_search", "extra")
    @classmethod
    def _plain(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            json_value(value, "this mapping")
        return value

    @model_validator(mode="after")
    def _one_prompt(self) -> GenStep:
        if self.prompt is None and self.prompt_list is None:
            raise ValueError("a gen needs a prompt: set prompt, prompts or prompts_file")
        if self.prompt is not None and self.prompt_list is not None:
            raise FieldProblem(("prompts",), "give one of prompt, prompts or prompts_file, not several")
        clash = [k for k in self.extra if k in _GEN_RESERVED]
        if clash:
            raise FieldProblem(
                ("extra", clash[0]), f"{clash[0]!r} has its own key in gen; extra is for other fields"
            )
        return self

    @property
    def carries_web_search(self) -> bool:
        """Does a request in the web-search share carry web search (enableWebSearch true, or a
        webSearch object not disabled)?"""
        if self.enable_web_search is True:
            return True
        return (self.enable_web_search is not False and self.web_search is not None
                and self.web_search.get("enabled") is not False)

    def tag_values(self) -> dict[str, set[str]]:
        """Every value each automatic tag (but ``step``) and own tag of this step can take."""
        web = set()
        if self.carries_web_search and self.web_search_share > 0:
            web.add("true")
        if not self.carries_web_search or self.web_search_share < 1:
            web.add("false")
        tools = set()
        if self.tools and self.tools_share > 0:
            tools.add("true")
        if not self.tools or self.tools_share < 1:
            tools.add("false")
        return {"web_search": web, "tools": tools, **{k: {v} for k, v in self.tags.items()}}

    @property
    def prompts(self) -> tuple[str, ...]:
        return (self.prompt,) if self.prompt is not None else (self.prompt_list or ())

    def pick_prompt(self, n: int, rng: random.Random) -> str:
        """The prompt of this step's ``n``-th run (0-based) by one user: cycled, or drawn from ``rng``."""
        prompts = self.prompts
        if self.pick == "random":
            return prompts[rng.randrange(len(prompts))]
        return prompts[n % len(prompts)]

    def gen_data(self, prompt: str, *, tools: bool = True, web_search: bool = True) -> dict[str, Any]:
        """The ``data`` of the ``gen`` event (a fresh copy); ``tools``/``web_search`` say whether
        this request is in the share that carries them (the caller draws against the shares)."""
        data: dict[str, Any] = copy.deepcopy(self.extra)
        data["prompt"] = prompt
        if self.temperature is not None:
            data["temperature"] = self.temperature
        if web_search:
            if self.enable_web_search is not None:
                data["enableWebSearch"] = self.enable_web_search
            if self.web_search is not None:
                data["webSearch"] = copy.deepcopy(self.web_search)
        if tools and self.tools:
            data["tools"] = copy.deepcopy(list(self.tools))
        return data

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> Any:
        body = {k: v for k, v in handler(self).items() if v is not None and not (k in ("extra", "tags") and not v)}
        return {"gen": body}


class ThinkStep(Model):
    """``- think: 500ms`` or ``- think: {min: 200ms, max: 2s}`` (uniform, seeded)."""

    kind: ClassVar[str] = "think"

    min_s: Duration = Field(alias="min")
    max_s: Duration = Field(alias="max")

    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        if data == "think":
            return {}
        if isinstance(data, dict) and set(data) == {"think"}:
            inner = data["think"]
            return inner if isinstance(inner, dict) else {"min": inner, "max": inner}
        return data

    @model_validator(mode="after")
    def _order(self) -> ThinkStep:
        if self.max_s < self.min_s:
            raise FieldProblem(
                ("max",), f"max ({format_duration(self.max_s)}) is below min ({format_duration(self.min_s)})"
            )
        return self

    def sample_s(self, rng: random.Random) -> float:
        return self.min_s if self.max_s == self.min_s else rng.uniform(self.min_s, self.max_s)

    @model_serializer(mode="plain")
    def _dump(self) -> Any:
        if self.min_s == self.max_s:
            return {"think": format_duration(self.min_s)}
        return {"think": {"min": format_duration(self.min_s), "max": format_duration(self.max_s)}}


class SetModelStep(Model):
    """``- set_model: NAME``: send ``set-model`` and wait for ``set-model-complete``."""

    kind: ClassVar[str] = "set_model"

    model: StrictStr = Field(min_length=1)

    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        if isinstance(data, dict) and set(data) == {"set_model"}:
            return {"model": data["set_model"]}
        if data == "set_model":
            return {}
        return data

    @model_serializer(mode="plain")
    def _dump(self) -> Any:
        return {"set_model": self.model}


STEP_KINDS = ("ping", "gen", "think", "set_model")
Step = PingStep | GenStep | ThinkStep | SetModelStep


def _step_kind(value: Any) -> str:
    if isinstance(value, Step):
        return value.kind
    if isinstance(value, str) and value in STEP_KINDS:
        return value
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        if key in STEP_KINDS:
            return str(key)
    return "<step>"


_StepField = Annotated[
    Annotated[PingStep, Tag("ping")]
    | Annotated[GenStep, Tag("gen")]
    | Annotated[ThinkStep, Tag("think")]
    | Annotated[SetModelStep, Tag("set_model")],
    Discriminator(_step_kind),
]


def _default_steps() -> tuple[Step, ...]:
    return (GenStep.model_validate({"prompt": _DEFAULT_PROMPT}),)


class SessionConfig(Model):
    #: None: independent gens (a closed-loop user repeats its steps with no memory)
    conversation: ConversationConfig | None = None
    steps: tuple[_StepField, ...] = Field(default_factory=_default_steps)

    @model_validator(mode="after")
    def _has_traffic(self) -> SessionConfig:
        if not any(isinstance(s, (PingStep, GenStep)) for s in self.steps):
            raise FieldProblem(("steps",), "a session needs at least one gen or ping step")
        if self.conversation is not None and not self.gen_steps:
            raise FieldProblem(("conversation",), "a conversation needs a gen step in session.steps: "
                               "each gen of a pass through the steps is a turn")
        return self

    def max_turn(self) -> int:
        """The highest turn number a request can carry (0: no conversation)."""
        if self.conversation is None:
            return 0
        return self.conversation.turns.max * len(self.gen_steps)

    @property
    def gen_steps(self) -> tuple[GenStep, ...]:
        return tuple(s for s in self.steps if isinstance(s, GenStep))

    def step_names(self) -> tuple[str, ...]:
        """The ``step`` tag of each gen step, in order: its name, else ``gen1``, ``gen2``, …"""
        return tuple(g.name or f"gen{i}" for i, g in enumerate(self.gen_steps, 1))

    def tag_space(self) -> dict[str, set[str]]:
        """Every ``key: {values}`` a request of this session can carry."""
        space: dict[str, set[str]] = {"step": set(self.step_names())}
        for g in self.gen_steps:
            for key, values in g.tag_values().items():
                space.setdefault(key, set()).update(values)
        if self.conversation is not None:
            space["turn"] = {str(n) for n in range(1, self.max_turn() + 1)}
        return space

    def whole_run_tags(self) -> frozenset[str]:
        """The tags every request of this session carries: a key every gen step sends with one
        possible value (``tools=false`` when no step has tools). Their figures are the run's."""
        every: set[str] | None = None
        for g in self.gen_steps:
            keys = {"step", "web_search", "tools", "turn", *g.tags}
            every = keys if every is None else every & keys
        every = every or set()
        return frozenset(f"{k}={next(iter(v))}" for k, v in self.tag_space().items() if k in every and len(v) == 1)

    @model_validator(mode="after")
    def _unique_names(self) -> SessionConfig:
        names = self.step_names()
        for i, name in enumerate(names):
            if name in names[:i]:
                index = self.steps.index(self.gen_steps[i])
                raise FieldProblem(("steps", index, "gen", "name"),
                                   f"two gen steps are named {name!r}: a step's name is its `step` tag, "
                                   "give each its own")
        return self
