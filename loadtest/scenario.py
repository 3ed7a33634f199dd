"""Scenario files: YAML → a validated, frozen :class:`Scenario`. Pure but for one loader.

:func:`load_scenario` is the only function here that touches the file system: it reads the
YAML file, any ``prompts_file`` (JSONL) and checks that ``trace`` and ``ca_file`` exist.
Everything else (validation, :func:`dump_scenario`, :func:`fingerprint`) is pure.

Every mistake in a file ends as one :class:`~loadtest.errors.ScenarioError` whose ``where``
is ``FILE:LINE: key.path``. Line numbers come from the composed YAML node tree, walked
along the ``loc`` of the pydantic error (pydantic reports aliases, i.e. the YAML keys).

Conventions: field names carry units (``duration_s``), the YAML key does not (``duration``);
durations are written ``"500ms"``, ``"20s"``, ``"2m"``, ``"1h"``, ``"1.5s"`` or a bare number
of seconds. A section given as ``null`` is the same as an absent one (all defaults).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from loadtest.errors import BadInput, ScenarioError
from loadtest.faults import FaultModel, parse_faults
from loadtest.mockmodel import Dist, MockModel, parse_dist

__all__ = [
    "SLO_NAMES",
    "GenStep",
    "LoadConfig",
    "MockConfig",
    "Overrides",
    "PingStep",
    "Scenario",
    "SessionConfig",
    "SetModelStep",
    "Stage",
    "Step",
    "TargetConfig",
    "ThinkStep",
    "TimeoutsConfig",
    "dump_scenario",
    "fingerprint",
    "format_duration",
    "load_scenario",
    "parse_duration",
    "resolve_api_key",
]

#: SLO names a scenario may set, each a limit (``min_throughput_rps`` is a floor).
SLO_NAMES: tuple[str, ...] = ("ttft_p99_ms", "itl_p99_ms", "e2e_p99_ms", "error_rate", "min_throughput_rps")
_DEFAULT_SLO: dict[str, float] = {"ttft_p99_ms": 1000.0, "error_rate": 0.01}
_DEFAULT_PROMPT = "Explain artificial intelligence"

# ---------------------------------------------------------------------------------------------
# Durations

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_FORMS = 'a number of seconds, or "500ms", "20s", "1.5s", "2m", "1h"'


def _seconds(value: object) -> float:
    """A duration in seconds; ValueError (pydantic's signal) naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"a duration is {_DURATION_FORMS}; got {value!r}")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        number, unit = m.group(1), m.group(2) or "s"
        # ms divide (not multiply by 0.001) so that "500ms" is exactly 0.5
        seconds = float(number) / 1000 if unit == "ms" else float(number) * _UNIT_S[unit]
    else:
        raise ValueError(f"a duration is {_DURATION_FORMS}; got {_short(value)}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be finite and >= 0; got {_short(value)}")
    return seconds


def parse_duration(value: object) -> float:
    """Seconds from ``"500ms"``, ``"20s"``, ``"2m"``, ``"1h"``, ``"1.5s"`` or a number of seconds.

    Raises :class:`~loadtest.errors.BadInput` for anything else (the CLI's ``--duration``).
    """
    try:
        return _seconds(value)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def format_duration(seconds: float) -> str:
    """The shortest readable form that parses back to exactly ``seconds``."""
    if seconds == 0:
        return "0s"
    for unit in ("h", "m", "s"):
        scaled = seconds / _UNIT_S[unit]
        if 1 <= scaled < 1e15 and scaled == int(scaled):
            text = f"{int(scaled)}{unit}"
            if _seconds(text) == seconds:
                return text
    if seconds < 1 and (ms := seconds * 1000) == int(ms):
        text = f"{int(ms)}ms"
        if _seconds(text) == seconds:
            return text
    # positional digits of the shortest repr ("1e-07s" would not parse back)
    return f"{Decimal(repr(seconds)):f}s"


Duration = Annotated[float, BeforeValidator(_seconds), PlainSerializer(format_duration, return_type=str)]
PositiveDuration = Annotated[Duration, Field(gt=0)]


def _as_dist(value: object) -> Dist:
    try:
        return parse_dist(value, name="value")
    except BadInput as exc:
        raise ValueError(str(exc).removeprefix("value ").removeprefix("value: ")) from None
    except (TypeError, ValueError, OverflowError):
        raise ValueError(
            f"must be a finite number >= 0, or {{dist: uniform|normal|lognormal, ...}}; got {_short(value)}"
        ) from None


def _as_faults(value: object) -> FaultModel:
    if isinstance(value, FaultModel):
        return value
    try:
        return parse_faults(value)
    except BadInput as exc:
        raise ValueError(str(exc)) from None
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"is not a valid fault model (see loadtest.faults); got {_short(value)}") from None


DistField = Annotated[Dist, PlainValidator(_as_dist), PlainSerializer(lambda d: d.to_spec())]
FaultsField = Annotated[FaultModel, PlainValidator(_as_faults), PlainSerializer(lambda f: f.spec or None)]


def _json_value(value: object, what: str) -> object:
    """Free-form values go on the wire as JSON: refuse what JSON cannot carry."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise ValueError(
            f"{what} must be plain JSON data (strings, numbers, booleans, lists, mappings)"
        ) from None
    return value


# ---------------------------------------------------------------------------------------------
# Models


class _FieldProblem(ValueError):
    """A validation error about ``key`` under the model being validated (``loc`` + key)."""

    def __init__(self, key: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.key = key


class _Model(BaseModel):
    """Frozen, closed models; unknown keys are refused with the closest valid key suggested."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False)
    #: keys the file may carry that are not fields (consumed by the loader)
    _extra_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        return data

    @model_validator(mode="before")
    @classmethod
    def _check_keys(cls, data: Any) -> Any:
        data = cls._unwrap(data)
        if data is None:
            return {}
        if isinstance(data, dict):
            valid = [f.alias or name for name, f in cls.model_fields.items()]
            accepted = set(valid) | set(cls.model_fields) | set(cls._extra_keys)
            for key in data:
                if key not in accepted:
                    raise _FieldProblem((key,), _unknown_key_message(key, [*valid, *cls._extra_keys]))
        return data


def _unknown_key_message(key: object, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key {_short(key)}{hint} (valid keys: {', '.join(valid)})"


_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TargetConfig(_Model):
    url: StrictStr = "mock"
    api_key_env: StrictStr = "LOADTEST_API_KEY"
    model: StrictStr | None = Field(None, min_length=1)
    ca_file: StrictStr | None = None
    insecure: StrictBool = False

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        _check_url(url)
        return url

    @field_validator("api_key_env")
    @classmethod
    def _env(cls, name: str) -> str:
        if not _ENV_NAME_RE.fullmatch(name):
            raise ValueError(f"must be an environment variable name, got {_short(name)}")
        return name

    @property
    def is_mock(self) -> bool:
        return self.url == "mock"


def _check_url(url: str) -> None:
    """``mock`` or ``ws[s]://host[:port]/path``. The message never repeats the URL (secrets)."""
    if url == "mock":
        return
    if "apikey=" in url.lower():
        raise ValueError(
            "the URL must not carry the API key (apikey=…): put the key in the variable named by "
            "target.api_key_env, or pass --api-key"
        )
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        raise ValueError(
            "is not a valid URL: use mock, ws://HOST[:PORT]/PATH or wss://HOST[:PORT]/PATH"
        ) from None
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"must be mock, or a ws:// or wss:// URL (scheme {parts.scheme or 'missing'!r})")
    if parts.password is not None:
        raise ValueError(
            "credentials in the URL are not supported: the key comes from the environment or --api-key"
        )
    if not parts.hostname or not port_ok or any(c.isspace() for c in url):
        raise ValueError("must name a host: ws://HOST[:PORT]/PATH or wss://HOST[:PORT]/PATH")


class MockConfig(_Model):
    """The embedded mock's latency, capacity and faults (used only when ``target.url`` is mock)."""

    ttft_ms: DistField = Dist(a=100.0)
    gap_ms: DistField = Dist(a=10.0)
    chunks: DistField = Dist(a=20.0)
    capacity: StrictInt | None = Field(None, ge=1)
    gap_slowdown: StrictFloat | None = Field(None, ge=0)
    prefill_ms_per_kchar: StrictFloat = Field(0.0, ge=0)
    faults: FaultsField = FaultModel()
    #: None: the run's ``load.seed`` (see :attr:`Scenario.mock_seed`)
    seed: StrictInt | None = None

    @property
    def model(self) -> MockModel:
        return MockModel(
            ttft_ms=self.ttft_ms,
            gap_ms=self.gap_ms,
            chunks=self.chunks,
            capacity=self.capacity,
            gap_slowdown=self.gap_slowdown,
            prefill_ms_per_kchar=self.prefill_ms_per_kchar,
        )


class Stage(_Model):
    """Ramp to ``target`` (users in closed loop, arrivals/s in open loop) over ``duration``."""

    duration_s: PositiveDuration = Field(alias="duration")
    target: StrictFloat = Field(ge=0)


class LoadConfig(_Model):
    mode: Literal["closed", "open"] = "closed"
    concurrency: StrictInt = Field(10, ge=1)
    rate_per_s: StrictFloat | None = Field(None, gt=0, alias="rate")
    arrival: Literal["constant", "poisson", "gamma"] = "poisson"
    burstiness: StrictFloat = Field(1.0, gt=0)
    stages: tuple[Stage, ...] = ()
    #: absolute path once loaded (the file gives it relative to itself)
    trace: StrictStr | None = Field(None, min_length=1)
    #: total run time, warmup included; with stages and no duration, their sum
    duration_s: PositiveDuration = Field(20.0, alias="duration")
    warmup_s: Duration = Field(0.0, alias="warmup")
    requests: StrictInt | None = Field(None, ge=1)
    seed: StrictInt = 1
    pace_s: PositiveDuration | None = Field(None, alias="pace")
    connections: StrictInt | None = Field(None, ge=1)
    max_connections: StrictInt = Field(100, ge=1)
    max_queue: StrictInt = Field(10000, ge=0)

    @model_validator(mode="after")
    def _cross_check(self) -> LoadConfig:
        if self.warmup_s >= self.duration_s:
            raise _FieldProblem(
                ("warmup",),
                f"warmup ({format_duration(self.warmup_s)}) must be shorter than duration "
                f"({format_duration(self.duration_s)})",
            )
        if self.connections is not None and self.connections > self.max_connections:
            raise _FieldProblem(
                ("connections",),
                f"connections ({self.connections}) exceeds max_connections ({self.max_connections})",
            )
        if self.stages and self.trace is not None:
            raise _FieldProblem(("trace",), "give stages or trace, not both")
        if self.mode == "closed":
            for key, value in (
                ("rate", self.rate_per_s),
                ("trace", self.trace),
                ("connections", self.connections),
            ):
                if value is not None:
                    raise _FieldProblem((key,), f"{key} applies to mode: open; this load is mode: closed")
            for i, stage in enumerate(self.stages):
                if stage.target != int(stage.target):
                    raise _FieldProblem(
                        ("stages", i, "target"), "in mode: closed a stage's target is a whole number of users"
                    )
        else:
            if self.pace_s is not None:
                raise _FieldProblem(("pace",), "pace applies to mode: closed; in mode: open use rate")
            if self.rate_per_s is None and not self.stages and self.trace is None:
                raise _FieldProblem(
                    ("rate",), "mode: open needs a rate (arrivals per second), stages or a trace"
                )
            if self.rate_per_s is not None and (self.stages or self.trace is not None):
                raise _FieldProblem(("rate",), "give one of rate, stages or trace in mode: open")
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _stage_duration(cls, data: Any, handler: Any) -> LoadConfig:
        # "with stages, duration defaults to their sum": decided before the cross checks
        if (
            isinstance(data, dict)
            and data.get("stages")
            and "duration" not in data
            and "duration_s" not in data
        ):
            stages = data["stages"]
            try:
                total = sum(_seconds(s.get("duration")) for s in stages)
            except (AttributeError, TypeError, ValueError):
                total = None  # the stage errors are reported by validation itself
            if total:
                data = {**data, "duration": total}
        result: LoadConfig = handler(data)
        return result

    @property
    def open_loop(self) -> bool:
        return self.mode == "open"


class PingStep(_Model):
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
        raise _FieldProblem(
            ("tools", i), "a tool is a mapping {type: function, function: {name, description, parameters}}"
        )
    if value.get("type") != "function":
        raise _FieldProblem(("tools", i, "type"), "a tool needs type: function")
    fn = value.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise _FieldProblem(
            ("tools", i, "function"), "a tool needs function: {name: ..., description, parameters}"
        )
    _json_value(value, "a tool")
    return value


_GEN_RESERVED = ("prompt", "temperature", "enableWebSearch", "webSearch", "tools")
_Share = Annotated[StrictFloat, Field(ge=0, le=1)]


class GenStep(_Model):
    """``- gen: {...}``: one generation. Exactly one of ``prompt``, ``prompts``, ``prompts_file``.

    ``prompts_file`` is read by :func:`load_scenario` into ``prompts``; the model keeps the list.
    """

    kind: ClassVar[str] = "gen"
    _extra_keys: ClassVar[tuple[str, ...]] = ("prompts_file",)

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
            _json_value(value, "this mapping")
        return value

    @model_validator(mode="after")
    def _one_prompt(self) -> GenStep:
        if self.prompt is None and self.prompt_list is None:
            raise ValueError("a gen needs a prompt: set prompt, prompts or prompts_file")
        if self.prompt is not None and self.prompt_list is not None:
            raise _FieldProblem(("prompts",), "give one of prompt, prompts or prompts_file, not several")
        clash = [k for k in self.extra if k in _GEN_RESERVED]
        if clash:
            raise _FieldProblem(
                ("extra", clash[0]), f"{clash[0]!r} has its own key in gen; extra is for other fields"
            )
        return self

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
        body = {k: v for k, v in handler(self).items() if v is not None and not (k == "extra" and not v)}
        return {"gen": body}


class ThinkStep(_Model):
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
            raise _FieldProblem(
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


class SetModelStep(_Model):
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


_STEP_KINDS = ("ping", "gen", "think", "set_model")
Step = PingStep | GenStep | ThinkStep | SetModelStep


def _step_kind(value: Any) -> str:
    if isinstance(value, Step):
        return value.kind
    if isinstance(value, str) and value in _STEP_KINDS:
        return value
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        if key in _STEP_KINDS:
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


class SessionConfig(_Model):
    steps: tuple[_StepField, ...] = Field(default_factory=_default_steps)

    @model_validator(mode="after")
    def _has_traffic(self) -> SessionConfig:
        if not any(isinstance(s, (PingStep, GenStep)) for s in self.steps):
            raise _FieldProblem(("steps",), "a session needs at least one gen or ping step")
        return self

    @property
    def gen_steps(self) -> tuple[GenStep, ...]:
        return tuple(s for s in self.steps if isinstance(s, GenStep))


class TimeoutsConfig(_Model):
    connect_s: PositiveDuration = Field(10.0, alias="connect")
    first_token_s: PositiveDuration = Field(30.0, alias="first_token")
    stream_s: PositiveDuration = Field(120.0, alias="stream")


def _slo(value: Any) -> dict[str, float]:
    if value is None:
        return dict(_DEFAULT_SLO)
    if not isinstance(value, dict):
        raise ValueError(f"slo must be a mapping of {', '.join(SLO_NAMES)}")
    out: dict[str, float] = {}
    for name, limit in value.items():
        if name not in SLO_NAMES:
            raise _FieldProblem((name,), _unknown_key_message(name, SLO_NAMES).replace("key", "SLO", 1))
        if limit is None:
            continue
        if isinstance(limit, bool) or not isinstance(limit, (int, float)):
            raise _FieldProblem((name,), f"an SLO limit is a number, got {_short(limit)}")
        try:
            limit_f = float(limit)
        except OverflowError:
            limit_f = math.inf
        if not math.isfinite(limit_f) or limit_f < 0 or (name == "error_rate" and limit_f > 1):
            bound = "between 0 and 1" if name == "error_rate" else "a finite number >= 0"
            raise _FieldProblem((name,), f"{name} must be {bound}, got {_short(limit)}")
        out[str(name)] = limit_f
    return out


_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class Scenario(_Model):
    """A validated scenario. ``slo`` maps each SLO that is set to its limit."""

    name: StrictStr = Field("scenario", pattern=_NAME_RE.pattern)
    target: TargetConfig = Field(default_factory=lambda: TargetConfig.model_validate({}))
    mock: MockConfig = Field(default_factory=lambda: MockConfig.model_validate({}))
    load: LoadConfig = Field(default_factory=lambda: LoadConfig.model_validate({}))
    session: SessionConfig = Field(default_factory=lambda: SessionConfig.model_validate({}))
    timeouts: TimeoutsConfig = Field(default_factory=lambda: TimeoutsConfig.model_validate({}))
    slo: Annotated[dict[str, float], PlainValidator(_slo)] = Field(default_factory=lambda: dict(_DEFAULT_SLO))
    #: the run directory (``--out``); None: ``reports/<name>-<UTC timestamp>/``
    out: StrictStr | None = Field(None, min_length=1)

    @property
    def mock_seed(self) -> int:
        return self.mock.seed if self.mock.seed is not None else self.load.seed


# ---------------------------------------------------------------------------------------------
# Overrides and the API key


@dataclass(frozen=True, kw_only=True)
class Overrides:
    """Command-line flags that replace scenario values (``None``: keep the file's)."""

    target_url: str | None = None
    api_key: str | None = None  # never stored in the scenario: see resolve_api_key
    duration_s: float | None = None
    concurrency: int | None = None
    rate_per_s: float | None = None
    requests: int | None = None
    seed: int | None = None
    out: str | Path | None = None

    def _items(self) -> list[tuple[tuple[str, ...], str, object]]:
        """(YAML path, flag, value) of each override that is set (not the key)."""
        table: list[tuple[tuple[str, ...], str, object]] = [
            (("target", "url"), "--target", self.target_url),
            (("load", "duration"), "--duration", self.duration_s),
            (("load", "concurrency"), "--concurrency", self.concurrency),
            (("load", "rate"), "--rate", self.rate_per_s),
            (("load", "requests"), "--requests", self.requests),
            (("load", "seed"), "--seed", self.seed),
            (("out",), "--out", None if self.out is None else str(self.out)),
        ]
        return [row for row in table if row[2] is not None]


def resolve_api_key(
    scenario: Scenario, overrides: Overrides | None, environ: Mapping[str, str]
) -> str | None:
    """The API key: ``--api-key`` first, else the variable ``target.api_key_env``; None if neither."""
    if overrides is not None and overrides.api_key:
        return overrides.api_key
    return environ.get(scenario.target.api_key_env) or None


# ---------------------------------------------------------------------------------------------
# Dump and fingerprint


def _plain(sc: Scenario) -> dict[str, Any]:
    data: dict[str, Any] = sc.model_dump(mode="json", by_alias=True)
    return data


def dump_scenario(sc: Scenario) -> str:
    """The scenario as run, as YAML: overrides applied, prompts inline, no secret.

    :func:`load_scenario` on this text gives back an equal :class:`Scenario`.
    """
    header = "# scenario as run (overrides applied; the API key is never written)\n"
    return header + yaml.safe_dump(_plain(sc), sort_keys=False, allow_unicode=True, width=100)


def fingerprint(sc: Scenario) -> str:
    """sha256 (hex) of the workload: the scenario without target, key and output paths.

    Two runs of the same scenario against different targets match. A trace counts by its file
    name, so the same trace in another directory matches too.
    """
    data = _plain(sc)
    data.pop("target", None)
    data.pop("out", None)
    if data["load"].get("trace"):
        data["load"]["trace"] = Path(data["load"]["trace"]).name
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------
# Loading: the one place that reads files

_Loc = tuple[str | int, ...]


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    text = re.sub(r"(?i)(apikey=)[^&'\"\s]*", r"\1***", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _locate(root: yaml.Node | None, loc: Sequence[str | int]) -> tuple[int, str]:
    """(1-based line, display path) of ``loc`` in the YAML node tree, as deep as it goes.

    Elements the tree does not have (a missing key, a union tag) are skipped; a missing last
    key is still named in the path.
    """
    node = root
    line = root.start_mark.line + 1 if root is not None else 1
    parts: list[str] = []
    for i, el in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            found = None
            for key, value in node.value:  # the last wins, as in construction (merge keys)
                if isinstance(key, yaml.ScalarNode) and key.value == str(el):
                    found = (key, value)
            if found is not None:
                parts.append(f".{el}")
                line, node = found[0].start_mark.line + 1, found[1]
            elif i == len(loc) - 1 and isinstance(el, str) and not el.startswith("<"):
                parts.append(f".{el}")
        elif isinstance(node, yaml.SequenceNode) and isinstance(el, int) and 0 <= el < len(node.value):
            node = node.value[el]
            parts.append(f"[{el}]")
            line = node.start_mark.line + 1
    return line, "".join(parts).lstrip(".")


def _check_duplicates(root: yaml.Node, file: str) -> None:
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    here = f"{path}.{key.value}".lstrip(".")
                    if key.value in first:
                        raise ScenarioError(
                            f"duplicate key {key.value!r} (first at line {first[key.value]})",
                            where=f"{file}:{line}: {here}",
                        )
                    first[key.value] = line
                    stack.append((value, here))
                else:
                    stack.append((value, path))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))


def _parse_yaml(text: str, file: str) -> tuple[Any, yaml.Node | None]:
    """(data, node tree) of a one-document YAML text; ScenarioError with the YAML's position."""
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # the reader refuses control characters right here
        node = loader.get_single_node()
        if node is not None:
            _check_duplicates(node, file)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        problem = exc.problem or exc.context or "not valid YAML"
        raise ScenarioError(f"not valid YAML: {problem}", where=where) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character
        code = char if isinstance(char, int) else ord(str(char)[:1] or "?")
        raise ScenarioError(
            f"not valid YAML: character U+{code:04X} is not allowed", where=f"{file}:{line}"
        ) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"not valid YAML: {exc}", where=file) from None
    except RecursionError:  # PyYAML composes recursively
        raise ScenarioError("the YAML is nested too deeply", where=file) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, node


def _read_text(path: Path, where: str, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{what} not found: {path}", where=where) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            f"{what} is not UTF-8 text: {path} ({exc.reason} at byte {exc.start})", where=where
        ) from None
    except OSError as exc:
        raise ScenarioError(f"cannot read {what} {path}: {exc.strerror or exc}", where=where) from None


def _read_prompts(path: Path, where: str) -> list[str]:
    """Prompts of a JSONL file, one ``{"prompt": "..."}`` per line; blank lines skipped."""
    text = _read_text(path, where, "prompts_file")
    prompts: list[str] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ScenarioError(f"not a JSON line ({exc})", where=f"{path}:{n}") from None
        prompt = record.get("prompt") if isinstance(record, dict) else None
        if not isinstance(prompt, str) or not prompt:
            raise ScenarioError(
                'each line must be {"prompt": "a non-empty string", ...}', where=f"{path}:{n}"
            )
        prompts.append(prompt)
    if not prompts:
        raise ScenarioError(f"prompts_file has no prompts: {path}", where=where)
    return prompts


class _Files:
    """The loader's file work on the raw document: relative paths resolved, prompts read."""

    def __init__(self, file: str, base: Path, root: yaml.Node | None) -> None:
        self.file, self.base, self.root = file, base, root

    def where(self, loc: _Loc) -> str:
        line, path = _locate(self.root, loc)
        return f"{self.file}:{line}: {path}" if path else f"{self.file}:{line}"

    def resolve(self, section: Any, key: str, loc: _Loc, what: str) -> None:
        if not isinstance(section, dict) or not isinstance(section.get(key), str) or not section[key]:
            return  # absent, or the wrong type: validation reports it
        path = self.base / section[key]
        if not path.is_file():
            raise ScenarioError(f"{what} not found: {path}", where=self.where(loc))
        section[key] = str(path.resolve())

    def prompts(self, data: dict[str, Any]) -> None:
        session = data.get("session")
        steps = session.get("steps") if isinstance(session, dict) else None
        if not isinstance(steps, list):
            return
        for i, step in enumerate(steps):
            gen = step.get("gen") if isinstance(step, dict) and len(step) == 1 else None
            if not isinstance(gen, dict) or "prompts_file" not in gen:
                continue
            loc: _Loc = ("session", "steps", i, "gen", "prompts_file")
            name = gen["prompts_file"]
            if not isinstance(name, str) or not name:
                raise ScenarioError(
                    "prompts_file must be a path (relative to the scenario file)", where=self.where(loc)
                )
            if "prompt" in gen or "prompts" in gen:
                raise ScenarioError(
                    "give one of prompt, prompts or prompts_file, not several", where=self.where(loc)
                )
            gen = {k: v for k, v in gen.items() if k != "prompts_file"}
            gen["prompts"] = _read_prompts(self.base / name, self.where(loc))
            steps[i] = {"gen": gen}


def _message(err: Mapping[str, Any]) -> tuple[_Loc, str]:
    """(loc, message) of one pydantic error, in the file's terms."""
    loc: _Loc = tuple(err["loc"])
    kind, msg, value = err["type"], str(err["msg"]), err.get("input")
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, _FieldProblem):
        return loc + cause.key, str(cause)
    if kind == "value_error":
        return loc, msg.removeprefix("Value error, ")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"must be a mapping, got {_short(value)}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        shape = "a step is `ping`, or a mapping with one key: gen, think, set_model"
        key = next(iter(value)) if isinstance(value, dict) and len(value) == 1 else value
        if isinstance(key, (str, int)) and not isinstance(key, bool):
            close = difflib.get_close_matches(str(key), _STEP_KINDS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return ((*loc, key) if key is not value else loc), f"unknown step {_short(key)}{hint} ({shape})"
        return loc, f"{shape}; got {_short(value)}"
    if kind in ("tuple_type", "list_type"):
        return loc, f"must be a list, got {_short(value)}"
    if kind == "missing":
        return loc, "is required here"
    if isinstance(value, (dict, list)):
        return loc, msg
    return loc, f"{msg}, got {_short(value)}"


def _validation_error(
    exc: ValidationError, files: _Files, overridden: Mapping[tuple[str, ...], str]
) -> ScenarioError:
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc, msg = _message(err)
        flag = next((f for p, f in overridden.items() if tuple(loc[: len(p)]) == p), None)
        if flag is not None:
            problems.append((f"{files.file}: {'.'.join(str(x) for x in loc)} (set by {flag})", msg))
        else:
            problems.append((files.where(loc), msg))
    where, message = problems[0]
    if len(problems) > 1:
        message += "".join(f"\n  also {w}: {m}" for w, m in problems[1:10])
        if len(problems) > 10:
            message += f"\n  … and {len(problems) - 10} more"
    return ScenarioError(message, where=where)


def _apply_overrides(data: dict[str, Any], overrides: Overrides) -> dict[tuple[str, ...], str]:
    applied: dict[tuple[str, ...], str] = {}
    for path, flag, value in overrides._items():
        section: Any = data
        for key in path[:-1]:
            if section.get(key) is None:
                section[key] = {}
            section = section[key]
            if not isinstance(section, dict):
                break  # a section of the wrong type: validation reports it
        else:
            section[path[-1]] = value
            applied[path] = flag
    return applied


def load_scenario(
    path: str | Path,
    *,
    overrides: Overrides | None = None,
    environ: Mapping[str, str] | None = None,
) -> Scenario:
    """Read, validate and return the scenario at ``path``, with ``overrides`` applied.

    Raises :class:`~loadtest.errors.ScenarioError` for every mistake, with ``where`` =
    ``FILE:LINE: key.path``. ``environ`` given (the CLI passes ``os.environ``): a real target
    must then have an API key (``overrides.api_key`` or the ``target.api_key_env`` variable).
    ``environ`` None skips that check (validation only).
    """
    path = Path(path)
    file = str(path)
    text = _read_text(path, file, "scenario file")
    data, root = _parse_yaml(text, file)
    files = _Files(file, path.parent, root)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(
            f"the top level must be a mapping of sections, got {type(data).__name__}", where=f"{file}:1"
        )
    overrides = overrides or Overrides()
    applied: dict[tuple[str, ...], str] = {}
    try:
        if "name" not in data:
            data["name"] = re.sub(r"[^A-Za-z0-9_.-]", "-", path.stem) or "scenario"
        applied = _apply_overrides(data, overrides)
        if (
            overrides.concurrency is not None
            and isinstance(data.get("load"), dict)
            and data["load"].get("mode") == "open"
        ):
            raise ScenarioError(
                "--concurrency applies to mode: closed; this scenario is mode: open", where=file
            )
        files.resolve(data.get("load"), "trace", ("load", "trace"), "trace")
        files.resolve(data.get("target"), "ca_file", ("target", "ca_file"), "ca_file")
        files.prompts(data)
        scenario = Scenario.model_validate(data)
    except ScenarioError:
        raise
    except ValidationError as exc:
        raise _validation_error(exc, files, applied) from None
    except RecursionError:
        raise ScenarioError("the document is nested too deeply (or refers to itself)", where=file) from None
    except (
        TypeError,
        ValueError,
        KeyError,
        AttributeError,
        IndexError,
        OverflowError,
    ) as exc:
        # A safety net, not a path anyone should take: say so, never show a traceback.
        raise ScenarioError(
            f"internal error while validating this file (please report): {type(exc).__name__}: {exc}",
            where=file,
        ) from None
    if (
        environ is not None
        and not scenario.target.is_mock
        and resolve_api_key(scenario, overrides, environ) is None
    ):
        raise ScenarioError(
            f"no API key: set the environment variable {scenario.target.api_key_env} or pass --api-key",
            where=files.where(("target", "api_key_env")),
        )
    return scenario
