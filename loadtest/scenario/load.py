"""Loading: the one place that reads files. Overrides and the API key.

Reads the YAML file, any ``prompts_file`` (JSONL) and checks that ``trace`` and ``ca_file``
exist; applies command-line :class:`Overrides`; turns every pydantic error into one
:class:`~loadtest.errors.ScenarioError` whose ``where`` is ``FILE:LINE: key.path``.

Internal to :mod:`loadtest.scenario`, which re-exports the public names.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from loadtest.errors import ScenarioError
from loadtest.scenario.fields import FieldProblem, short
from loadtest.scenario.sections import Scenario
from loadtest.scenario.steps import STEP_KINDS
from loadtest.scenario.yamlsrc import locate, parse_yaml

__all__ = ["Overrides", "load_scenario", "resolve_api_key"]

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
    warmup_s: float | None = None
    mock_seed: int | None = None  # the embedded mock's seed (default: mock.seed, else a fresh one per run)
    tokenizer: str | Path | None = None  # target.tokenizer (a path relative to the working directory)
    prometheus: str | None = None  # outputs.prometheus (HOST:PORT)
    prometheus_linger_s: float | None = None
    otlp: str | None = None
    scrape: tuple[str, ...] = ()  # outputs.scrape: given, they replace the file's list
    mock_host: str | None = None  # mock.host (--mock-host)

    def _items(self) -> list[tuple[tuple[str, ...], str, object]]:
        """(YAML path, flag, value) of each override that is set (not the key)."""
        table: list[tuple[tuple[str, ...], str, object]] = [
            (("target", "url"), "--target", self.target_url),
            (("load", "duration"), "--duration", self.duration_s),
            (("load", "concurrency"), "--concurrency", self.concurrency),
            (("load", "rate"), "--rate", self.rate_per_s),
            (("load", "requests"), "--requests", self.requests),
            (("load", "seed"), "--seed", self.seed),
            (("load", "warmup"), "--warmup", self.warmup_s),
            (("mock", "seed"), "--mock-seed", self.mock_seed),
            (("target", "tokenizer"), "--tokenizer", None if self.tokenizer is None else str(Path(self.tokenizer).resolve())),
            (("out",), "--out", None if self.out is None else str(self.out)),
            (("outputs", "prometheus"), "--prometheus", self.prometheus),
            (("outputs", "prometheus_linger"), "--prometheus-linger", self.prometheus_linger_s),
            (("outputs", "otlp"), "--otlp", self.otlp),
            (("outputs", "scrape"), "--scrape", list(self.scrape) or None),
            (("mock", "host"), "--mock-host", self.mock_host),
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
# Loading: the one place that reads files

_Loc = tuple[str | int, ...]


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
        line, path = locate(self.root, loc)
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
    if isinstance(cause, FieldProblem):
        return loc + cause.key, str(cause)
    if kind == "value_error":
        return loc, msg.removeprefix("Value error, ")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"must be a mapping, got {short(value)}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        shape = "a step is `ping`, or a mapping with one key: gen, think, set_model"
        key = next(iter(value)) if isinstance(value, dict) and len(value) == 1 else value
        if isinstance(key, (str, int)) and not isinstance(key, bool):
            close = difflib.get_close_matches(str(key), STEP_KINDS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return ((*loc, key) if key is not value else loc), f"unknown step {short(key)}{hint} ({shape})"
        return loc, f"{shape}; got {short(value)}"
    if kind in ("tuple_type", "list_type"):
        return loc, f"must be a list, got {short(value)}"
    if kind == "missing":
        return loc, "is required here"
    if isinstance(value, (dict, list)):
        return loc, msg
    return loc, f"{msg}, got {short(value)}"


def _validation_error(
    exc: ValidationError, files: _Files, overridden: Mapping[tuple[str, ...], str]
) -> ScenarioError:
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc, msg = _message(err)
        flag = next((f for p, f in overridden.items() if tuple(loc[: len(p)]) == p), None)
        if flag is not None:
            problem = (f"{files.file}: {'.'.join(str(x) for x in loc)} (set by {flag})", msg)
        else:
            problem = (files.where(loc), msg)
        # a union (e.g. think: a duration, or {min, max}) reports one mistake per member
        if problem not in problems:
            problems.append(problem)
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

    Its length is the order in which a scenario is checked (YAML, keys, model, overrides,
    key, files), each step with its own error location; split, the order would be harder to see.
    """
    path = Path(path)
    file = str(path)
    text = _read_text(path, file, "scenario file")
    data, root = parse_yaml(text, file)
    files = _Files(file, path.parent, root)
    if data is None or data == {}:
        # an empty file is a mistake (a wrong path, a truncated copy), not "all defaults"
        raise ScenarioError(
            "empty scenario: the file holds no settings (give at least a name, or the sections "
            "to change; see scenarios/smoke.yaml)",
            where=file,
        )
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
        files.resolve(data.get("target"), "tokenizer", ("target", "tokenizer"), "tokenizer")
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
