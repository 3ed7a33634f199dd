"""Bad input through the real CLI: exit 2, a message naming the place, no traceback."""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from support.helpers import run_cli, run_concurrently

#: real sockets, processes or wall-clock time: the full tier only (scripts/test.sh)
pytestmark = pytest.mark.realtime

Proc = subprocess.CompletedProcess[str]

CASES = {
    "unknown key": ("name: x\nload:\n  concurency: 5\n", ["load.concurency", ":3", "concurrency"]),
    "bad duration": ("load:\n  duration: 10 parsecs\n", ["load.duration", ":2"]),
    "negative number": ("load:\n  mode: open\n  rate: -5\n", ["load.rate", ":3"]),
    "zero users": ("load:\n  concurrency: 0\n", ["load.concurrency", ":2"]),
    "gen without prompt": ("session:\n  steps:\n    - gen: {temperature: 0.2}\n", ["session.steps", ":3", "prompt"]),
    "broken yaml": ("load: {mode: closed\nname: [\n", ["yaml:2:5", "not valid YAML"]),
    "not a mapping": ("- just\n- a list\n", ["mapping"]),
}


@pytest.fixture(scope="module")
def mistakes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], tuple[Path, Proc]]:
    """Every (command, case) below at once, each with its own scenario.yaml: each is refused
    before it connects or writes anything, and what is checked is the message, not a timing."""
    paths = {}
    for case, (text, _) in CASES.items():
        for command in ("validate", "run"):
            path = tmp_path_factory.mktemp("mistake") / "scenario.yaml"
            path.write_text(textwrap.dedent(text), encoding="utf-8")
            paths[command, case] = path
    args = {key: [str(path), "--out", str(path.parent / "out")] if key[0] == "run" else [str(path)]
            for key, path in paths.items()}
    procs = run_concurrently({key: partial(run_cli, key[0], *args[key]) for key in paths}, max_workers=4)
    return {key: (paths[key], procs[key]) for key in paths}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", ["validate", "run"])
def test_scenario_mistakes_exit_2_with_the_place(case: str, command: str,
                                                  mistakes: dict[tuple[str, str], tuple[Path, Proc]]) -> None:
    _, needles = CASES[case]
    path, proc = mistakes[command, case]
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)
    assert str(path.name) in proc.stderr
    if command == "run":
        assert not (path.parent / "out").exists()  # refused before anything connected or was written


BAD_FLAGS = [
    (["run", "scenarios/smoke.yaml", "--concurrency", "0"], "--concurrency"),
    (["run", "scenarios/smoke.yaml", "--rate", "-1"], "--rate"),
    (["run", "scenarios/smoke.yaml", "--duration", "soon"], "--duration"),
    (["run", "scenarios/smoke.yaml", "--bogus"], "--bogus"),
    (["run", "does/not/exist.yaml"], "exist.yaml"),
    (["run", "scenarios/smoke.yaml", "--target", "http://example.com/"], "ws://"),
    (["mock", "--ttft-ms", "{\"dist\": \"weird\"}"], "--ttft-ms"),
    (["mock", "--faults", "{\"explode\": 1}"], "explode"),
    (["report"], "RUN_DIRS"),
]


@pytest.fixture(scope="module")
def bad_flags() -> dict[str, Proc]:
    """Every command line below at once: each is refused before it runs, no timing is checked."""
    return run_concurrently({" ".join(args): partial(run_cli, *args) for args, _ in BAD_FLAGS}, max_workers=4)


@pytest.mark.parametrize("args, needle", BAD_FLAGS)
def test_bad_flags_exit_2(args: list[str], needle: str, bad_flags: dict[str, Proc]) -> None:
    proc = bad_flags[" ".join(args)]
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert needle in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_validate_prints_the_resolved_scenario() -> None:
    proc = run_cli("validate", "scenarios/smoke.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "concurrency: 10" in proc.stdout and "name: smoke" in proc.stdout
    assert "valid" in proc.stderr


def test_unreachable_target_exits_3_quickly(write_scenario: Callable[..., Path]) -> None:
    # a port on loopback that nothing listens on: connection refused, bounded retries
    path = write_scenario("""
        target: {url: "ws://127.0.0.1:9/v2/chat"}
        load: {concurrency: 2, duration: 5s}
        timeouts: {connect: 1s}
        """)
    proc = run_cli("run", str(path), "--out", str(path.parent / "out"), "--api-key", "k-SECRET-123", timeout=60)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "cannot reach ws://127.0.0.1:9/v2/chat" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "k-SECRET-123" not in proc.stderr + proc.stdout
    # nothing measured, but CI keeps a record of why (issue 10): summary.json says unreachable
    summary = json.loads((path.parent / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["verdict"] == "unreachable" and summary["passed"] is False
    assert sorted(p.name for p in (path.parent / "out").iterdir()) == ["scenario.yaml", "summary.json"]
