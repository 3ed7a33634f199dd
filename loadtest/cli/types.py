"""Shared pieces of the ``loadtest`` command: click parameter types (validation in
``convert()``, click's idiom, so a bad flag is a usage error with exit 2 and one line), and
nothing else: the options that every run command shares are in :mod:`loadtest.cli.options`."""

from __future__ import annotations

import json
from typing import Any

import click

from loadtest.errors import BadInput
from loadtest.mock.latency import Dist, parse_dist

__all__ = ["DistType", "FractionType", "JsonType", "WorkersType"]


class DistType(click.ParamType):  # type: ignore[type-arg]
    """A number, or a JSON distribution such as ``{"dist":"lognormal","median":100,"p99":400}``."""

    name = "number|json"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Dist:
        if isinstance(value, Dist):
            return value
        try:
            spec = json.loads(value) if isinstance(value, str) else value
            return parse_dist(spec, name=param.name if param and param.name else "value")
        except (ValueError, BadInput) as exc:
            self.fail(f"{value!r}: {exc}", param, ctx)


class JsonType(click.ParamType):  # type: ignore[type-arg]
    name = "json"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError as exc:
            self.fail(f"not valid JSON: {exc}", param, ctx)


class FractionType(click.ParamType):  # type: ignore[type-arg]
    """``10%`` or ``0.1``; a bare number must be below 1 (``10`` is ambiguous: write ``10%``)."""

    name = "fraction|percent"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            self.fail(f"{value!r} is not a fraction (0.1) or a percentage (10%)", param, ctx)
        if not (number >= 0 and number != float("inf")):
            self.fail(f"{value!r} must be >= 0 and finite", param, ctx)
        if not text.endswith("%") and number >= 1:
            self.fail(f"{value!r} is ambiguous: write a percentage ({text}%) or a fraction below 1", param, ctx)
        return number


class WorkersType(click.ParamType):  # type: ignore[type-arg]
    """``auto`` or a whole number of worker processes, 1 .. 256."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        if value == "auto":
            return "auto"
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            n = int(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is neither a number of workers nor auto", param, ctx)
        if not 1 <= n <= 256:
            self.fail(f"{n} workers: give 1 .. 256, or auto", param, ctx)
        return n
