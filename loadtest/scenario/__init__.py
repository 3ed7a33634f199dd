"""Scenario files: YAML → a validated, frozen :class:`Scenario`. Pure but for one loader.

:func:`load_scenario` is the only function here that touches the file system: it reads the
YAML file, any ``prompts_file`` (JSONL) and checks that ``trace`` and ``ca_file`` exist.
Everything else (validation, :func:`dump_scenario`, :func:`fingerprint`) is pure.

This module is the public surface; the implementation is split into private modules, each
importing only those before it: ``fields`` (durations, field types, the base model),
``steps`` (session steps), ``sections`` (sections and :class:`Scenario`),
``yamlsrc`` (parsing, duplicate keys, line lookup) and ``load`` (files,
error messages, overrides, the API key).

Every mistake in a file ends as one :class:`~loadtest.errors.ScenarioError` whose ``where``
is ``FILE:LINE: key.path``. Line numbers come from the composed YAML node tree, walked
along the ``loc`` of the pydantic error (pydantic reports aliases, i.e. the YAML keys).

Conventions: field names carry units (``duration_s``), the YAML key does not (``duration``);
durations are written ``"500ms"``, ``"20s"``, ``"2m"``, ``"1h"``, ``"1.5s"`` or a bare number
of seconds. A section given as ``null`` is the same as an absent one (all defaults).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from loadtest.scenario.conversation import ConversationConfig
from loadtest.scenario.fields import format_duration, parse_duration
from loadtest.scenario.load import Overrides, load_scenario, resolve_api_key
from loadtest.scenario.outputs import OutputsConfig
from loadtest.scenario.sections import (
    SLO_NAMES,
    LoadConfig,
    MockConfig,
    Scenario,
    Stage,
    TargetConfig,
    TimeoutsConfig,
)
from loadtest.scenario.steps import GenStep, PingStep, SessionConfig, SetModelStep, Step, ThinkStep

__all__ = [
    "SLO_NAMES",
    "ConversationConfig",
    "GenStep",
    "LoadConfig",
    "MockConfig",
    "OutputsConfig",
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
    name, so the same trace in another directory matches too. Neither ``load.seed`` (one draw
    of the workload, not another workload: repeated rounds of a gate use fresh seeds) nor the
    ``mock`` section (the embedded mock *is* the target) is part of it; summary.json records
    both seeds on their own (``seed``, ``mock_seed``).
    """
    data = _plain(sc)
    data.pop("target", None)
    data.pop("out", None)
    data.pop("mock", None)
    data["load"].pop("seed", None)
    data["load"].pop("workers", None)  # how the load is generated, not what it is
    if data["load"].get("trace"):
        data["load"]["trace"] = Path(data["load"]["trace"]).name
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
