"""Shared fixtures (scenario files). The two tiers are explicit: a test that uses real sockets,
processes or wall-clock time carries the ``realtime`` marker (``pytestmark`` of its module, or
``@pytest.mark.realtime`` on the test); ``scripts/test.sh --fast`` runs the rest (pure and
virtual-time tests, under a minute on 2 cores), the full ``scripts/test.sh`` (CI) runs both.
``tests/`` mirrors the package (``tests/engine/`` tests ``loadtest.engine``; ``tests/e2e/`` the
whole tool through its CLI); helpers live in ``tests/support/``, which no test file imports from
another test file.

The real-time tier runs in two parts. Modules in ``support.tiers.SHARE_THE_CORES`` assert behaviour (exit
codes, files, counts, messages), never a timing, so CI runs them three at a time (pytest-xdist,
``-m "realtime and concurrent"``); every other real-time test measures time against a bound and
runs alone (``-m "realtime and not concurrent"``), since a second test on the 2 cores would make
its figures the machine's. A new real-time module is serial until it is listed there.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from support.tiers import SHARE_THE_CORES

_ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.relative_to(_ROOT).as_posix() in SHARE_THE_CORES:
            item.add_marker(pytest.mark.concurrent)


@pytest.fixture
def write_scenario(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str, name: str = "scenario.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write
