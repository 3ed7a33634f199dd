"""How `main()` ends: known errors by their exit code, bugs as 70 with a plain message."""

from __future__ import annotations

import sys

import pytest

from loadtest.cli import commands
from loadtest.cli import main as cli
from loadtest.errors import TargetUnreachable


def _main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["loadtest", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    return int(info.value.code or 0)


def test_a_bug_exits_70_and_says_so(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(commands, "load", boom)
    assert _main(monkeypatch, "validate", "scenarios/smoke.yaml") == 70
    err = capsys.readouterr().err
    assert "internal error (a bug, not your input)" in err and "kaboom" in err


def test_a_known_error_inside_a_task_group_keeps_its_exit_code(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    def unreachable(*_: object, **__: object) -> None:
        raise ExceptionGroup("tasks", [TargetUnreachable("cannot reach ws://127.0.0.1:9/v2/chat")])

    monkeypatch.setattr(commands, "load", unreachable)
    assert _main(monkeypatch, "validate", "scenarios/smoke.yaml") == 3
    err = capsys.readouterr().err
    assert err.strip() == "error: cannot reach ws://127.0.0.1:9/v2/chat"


def test_ctrl_c_outside_a_run_exits_4_without_traceback(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "load", interrupted)
    assert _main(monkeypatch, "validate", "scenarios/smoke.yaml") == 4
    err = capsys.readouterr().err
    assert "Interrupted." in err and "Traceback" not in err
