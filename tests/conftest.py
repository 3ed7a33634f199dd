"""Shared fixtures (scenario files). The two tiers are explicit: a test that uses real sockets,
processes or wall-clock time carries the ``realtime`` marker (``pytestmark`` of its module, or
``@pytest.mark.realtime`` on the test); ``scripts/test.sh --fast`` runs the rest (pure and
virtual-time tests, under a minute on 2 cores), the full ``scripts/test.sh`` (CI) runs both.
``tests/`` mirrors the package (``tests/engine/`` tests ``loadtest.engine``; ``tests/e2e/`` the
whole tool through its CLI); helpers live in ``tests/support/``, which no test file imports from
another test file.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def write_scenario(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str, name: str = "scenario.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write
