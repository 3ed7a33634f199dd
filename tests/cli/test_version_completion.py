"""``loadtest --version`` (loadtest and what shapes its figures, from the installed metadata)
and shell completion through the installed console script (``loadtest.cli.entry:main``)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from support.inprocess import run_main

import loadtest
from loadtest.cli import main as cli

#: the console script pip installed next to this interpreter (what a user's shell runs)
SCRIPT = Path(sys.executable).with_name("loadtest.exe" if os.name == "nt" else "loadtest")



def _python_line() -> str:
    return f"Python {platform.python_version()} ({platform.python_implementation()})"


# --------------------------------------------------------------------------- --version


def test_version_prints_loadtest_and_what_shapes_its_figures() -> None:
    result = run_main("--version")
    assert result.code == 0, result.err
    out, err = result.out, result.err
    assert out.splitlines() == [
        f"loadtest {loadtest.__version__}",
        f"aiohttp {metadata.version('aiohttp')}",
        f"uvloop {metadata.version('uvloop')}",
        f"hdrhistogram {metadata.version('hdrhistogram')}",
        _python_line(),
    ]
    assert err == ""


def test_version_is_eager_and_runs_no_command(tmp_path: Path) -> None:
    result = run_main("--version", "new", str(tmp_path / "x.yaml"))
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == f"loadtest {loadtest.__version__}"
    assert not (tmp_path / "x.yaml").exists()


def test_version_without_uvloop_names_the_standard_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    real = metadata.version

    def version(name: str) -> str:
        if name == "uvloop":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)
    result = run_main("--version")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[2] == "uvloop not installed: the standard asyncio loop"
    assert lines[1] == f"aiohttp {real('aiohttp')}" and lines[3] == f"hdrhistogram {real('hdrhistogram')}"
    assert len(lines) == 5


def test_version_without_any_dependency_installed_says_so() -> None:
    def version(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(metadata, "version", version)
        lines = cli.version_lines()
    assert lines == [f"loadtest {loadtest.__version__}", "aiohttp not installed",
                     "uvloop not installed: the standard asyncio loop", "hdrhistogram not installed",
                     _python_line()]


# --------------------------------------------------------------------------- shell completion


def _complete(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.is_file(), f"no console script at {SCRIPT}: install the package (pip install -e .)"
    return subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env}, cwd=Path(__file__).parent)


@pytest.mark.realtime
@pytest.mark.parametrize(("shell", "wanted"), [
    ("bash", ["_loadtest_completion() {", "_LOADTEST_COMPLETE=bash_complete $1",
              "complete -o nosort -F _loadtest_completion loadtest"]),
    ("zsh", ["#compdef loadtest", "_LOADTEST_COMPLETE=zsh_complete loadtest"]),
    ("fish", ["_LOADTEST_COMPLETE=fish_complete", "complete --no-files --command loadtest"]),
])
def test_the_installed_command_prints_its_completion_script(shell: str, wanted: list[str]) -> None:
    done = _complete({"_LOADTEST_COMPLETE": f"{shell}_source"})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    missing = [w for w in wanted if w not in done.stdout]
    assert not missing, done.stdout


@pytest.mark.realtime
@pytest.mark.parametrize(("words", "cword", "offered"), [
    ("loadtest ne", 1, ["plain,new"]),
    ("loadtest new --", 2, ["plain,--mock", "plain,--help"]),
    ("loadtest --version ne", 2, ["plain,new"]),  # completing does not print the versions
])
def test_completion_offers_commands_and_flags(words: str, cword: int, offered: list[str]) -> None:
    done = _complete({"_LOADTEST_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == offered


@pytest.mark.realtime
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_ne_to_new_with_the_printed_script() -> None:
    """End to end: bash sources the script the command printed and completes ``loadtest ne``."""
    script = ('eval "$(_LOADTEST_COMPLETE=bash_source loadtest)"; COMP_WORDS=(loadtest ne); COMP_CWORD=1; '
              '_loadtest_completion loadtest; printf "%s\\n" "${COMPREPLY[@]}"')
    env = {**os.environ, "PATH": f"{SCRIPT.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["new"]
