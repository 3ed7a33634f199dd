"""The building blocks of scenario models: field types, the base model, message helpers.

Durations (``"500ms"``, ``"20s"``, ``"2m"``, ``"1h"``, ``"1.5s"`` or a bare number of seconds),
latency distributions and fault models as pydantic field types; :class:`Model`, the frozen,
closed base of every section; :class:`FieldProblem`, a validation error that names the key it
is about; and :func:`short`, the repr every message uses (truncated, API keys masked).

Internal to :mod:`loadtest.scenario`, which re-exports the public names. No I/O.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    model_validator,
)

from loadtest.errors import BadInput
from loadtest.mock.faults import FaultModel, parse_faults
from loadtest.mock.latency import Dist, parse_dist

__all__ = [
    "DistField",
    "Duration",
    "FaultsField",
    "FieldProblem",
    "Model",
    "PositiveDuration",
    "format_duration",
    "json_value",
    "parse_duration",
    "short",
    "to_seconds",
    "unknown_key_message",
]


def short(value: object, limit: int = 60) -> str:
    text = repr(value)
    text = re.sub(r"(?i)(apikey=)[^&'\"\s]*", r"\1***", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------
# Durations

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_FORMS = 'a number of seconds, or "500ms", "20s", "1.5s", "2m", "1h"'


def to_seconds(value: object) -> float:
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
        raise ValueError(f"a duration is {_DURATION_FORMS}; got {short(value)}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be finite and >= 0; got {short(value)}")
    return seconds


def parse_duration(value: object) -> float:
    """Seconds from ``"500ms"``, ``"20s"``, ``"2m"``, ``"1h"``, ``"1.5s"`` or a number of seconds.

    Raises :class:`~loadtest.errors.BadInput` for anything else (the CLI's ``--duration``).
    """
    try:
        return to_seconds(value)
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
            if to_seconds(text) == seconds:
                return text
    if seconds < 1 and (ms := seconds * 1000) == int(ms):
        text = f"{int(ms)}ms"
        if to_seconds(text) == seconds:
            return text
    # positional digits of the shortest repr ("1e-07s" would not parse back)
    return f"{Decimal(repr(seconds)):f}s"


Duration = Annotated[float, BeforeValidator(to_seconds), PlainSerializer(format_duration, return_type=str)]
PositiveDuration = Annotated[Duration, Field(gt=0)]


def _as_dist(value: object) -> Dist:
    try:
        return parse_dist(value, name="value")
    except BadInput as exc:
        raise ValueError(str(exc).removeprefix("value ").removeprefix("value: ")) from None
    except (TypeError, ValueError, OverflowError):
        raise ValueError(
            f"must be a finite number >= 0, or {{dist: uniform|normal|lognormal, ...}}; got {short(value)}"
        ) from None


def _as_faults(value: object) -> FaultModel:
    if isinstance(value, FaultModel):
        return value
    try:
        return parse_faults(value)
    except BadInput as exc:
        raise ValueError(str(exc)) from None
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"is not a valid fault model (docs/mock.md describes it); got {short(value)}") from None


DistField = Annotated[Dist, PlainValidator(_as_dist), PlainSerializer(lambda d: d.to_spec())]
FaultsField = Annotated[FaultModel, PlainValidator(_as_faults), PlainSerializer(lambda f: f.spec or None)]


def json_value(value: object, what: str) -> object:
    """Free-form values go on the wire as JSON: refuse what JSON cannot carry."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise ValueError(
            f"{what} must be plain JSON data (strings, numbers, booleans, lists, mappings)"
        ) from None
    return value


# ---------------------------------------------------------------------------------------------
# The base model


class FieldProblem(ValueError):
    """A validation error about ``key`` under the model being validated (``loc`` + key)."""

    def __init__(self, key: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.key = key


class Model(BaseModel):
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
                    raise FieldProblem((key,), unknown_key_message(key, [*valid, *cls._extra_keys]))
        return data


def unknown_key_message(key: object, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key {short(key)}{hint} (valid keys: {', '.join(valid)})"
