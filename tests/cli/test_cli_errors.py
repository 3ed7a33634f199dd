"""How `main()` ends: known errors by their exit code, bugs as 70 with a plain message."""

from __future__ import annotations

import pytest
from support.inprocess import run_main

from loadtest.cli import commands
from loadtest.errors import TargetUnreachable


def test_a_bug_exits_70_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(commands, "load", boom)
    result = run_main("validate", "scenarios/smoke.yaml")
    assert result.code == 70, result.err
    err = result.err
    assert "internal error (a bug, not your input)" in err and "kaboom" in err


def test_a_known_error_inside_a_task_group_keeps_its_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*_: object, **__: object) -> None:
        raise ExceptionGroup("tasks", [TargetUnreachable("cannot reach ws://127.0.0.1:9/v2/chat")])

    monkeypatch.setattr(commands, "load", unreachable)
    result = run_main("validate", "scenarios/smoke.yaml")
    assert result.code == 3, result.err
    err = result.err
    assert err.strip() == "error: cannot reach ws://127.0.0.1:9/v2/chat"


def test_ctrl_c_outside_a_run_exits_4_without_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "load", interrupted)
    result = run_main("validate", "scenarios/smoke.yaml")
    assert result.code == 4, result.err
    err = result.err
    assert "Interrupted." in err and "Traceback" not in err
