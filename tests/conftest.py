"""Shared fixtures (scenario files) and the two test tiers.

``scripts/test.sh --fast`` runs the fast tier: pure tests and virtual-time tests, no
sockets, no subprocesses, well under a minute on 2 cores. Everything else is marked
``realtime`` here, automatically: a test whose own code, or a fixture it uses, starts a
process, a server or a real run. The full ``scripts/test.sh`` (and CI) runs both tiers.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

# what a real-time test does somewhere in its code or its fixtures' code
_REAL = re.compile(r"run_cli\(|subprocess|MockProcess|running_mock|serve_and_run|ws_connect|Popen|run_sweep\(|"
                   r"_run_against\(|launch\(|CliRunner\(\)\.invoke\(cli\.cli, \[\"run\"|\bloadtest\.run\(")


def _sources(item: pytest.Item) -> list[str]:
    funcs = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    if info is not None:
        funcs += [fd.func for defs in info.name2fixturedefs.values() for fd in defs]
    out = []
    for f in funcs:
        try:
            out.append(inspect.getsource(f))  # type: ignore[arg-type]
        except (OSError, TypeError):
            continue
    return out


def _real_helpers(module: object) -> re.Pattern[str] | None:
    """Calls of the module's own helpers that do real-time things (two levels deep)."""
    helpers: dict[str, str] = {}
    for name, obj in vars(module).items():
        if inspect.isfunction(obj) and not name.startswith("test_") and obj.__module__ == getattr(module, "__name__", ""):
            try:
                helpers[name] = inspect.getsource(obj)
            except (OSError, TypeError):
                continue
    real = {n for n, src in helpers.items() if _REAL.search(src)}
    for _ in range(2):
        calls = re.compile("|".join(rf"\b{re.escape(n)}\(" for n in real)) if real else None
        real |= {n for n, src in helpers.items() if calls is not None and calls.search(src)}
    return re.compile("|".join(rf"\b{re.escape(n)}\(" for n in real)) if real else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cache: dict[str, re.Pattern[str] | None] = {}
    for item in items:
        module = getattr(item, "module", None)
        key = getattr(module, "__name__", "")
        if key not in cache:
            cache[key] = _real_helpers(module) if module is not None else None
        helpers = cache[key]
        sources = _sources(item)
        if item.get_closest_marker("slow") or item.get_closest_marker("browser") or any(
                _REAL.search(src) or (helpers is not None and helpers.search(src)) for src in sources):
            item.add_marker(pytest.mark.realtime)


@pytest.fixture
def write_scenario(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str, name: str = "scenario.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write
