"""``loadtest new``: the starter scenarios (package data, the one source of both), what is
written, what is refused (exit 2, one line, the file untouched), and that a mock starter runs."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest
from support.helpers import run_cli
from support.inprocess import run_main

from loadtest.cli.new import template_text
from loadtest.errors import ScenarioError
from loadtest.scenario import Overrides, dump_scenario, fingerprint, load_scenario

ROOT = Path(__file__).resolve().parents[2]
PROXY_URL = "wss://chat-proxy.example.com/v2/chat"



def _packaged(name: str) -> bytes:
    return (resources.files("loadtest.cli") / "templates" / name).read_bytes()


# --------------------------------------------------------------------------- what is written


@pytest.mark.parametrize(("flags", "template", "said"), [
    ((), "proxy.yaml", "a starter scenario for a real proxy; set target.url in it and export "
                       "LOADTEST_API_KEY, then: loadtest run {file}"),
    (("--mock",), "mock.yaml", "a starter scenario against the embedded mock; next: loadtest run {file}"),
])
def test_new_writes_the_packaged_template_and_says_what_to_run_next(
        tmp_path: Path,
        flags: tuple[str, ...], template: str, said: str) -> None:
    file = tmp_path / "my-proxy.yaml"
    result = run_main("new", str(file), *flags)
    assert result.code == 0, result.err
    assert file.read_bytes() == _packaged(template)
    assert template_text(template.removesuffix(".yaml")).encode() == _packaged(template)
    out, err = result.out, result.err
    assert out == f"wrote {file}: {said.format(file=file)}\n"
    assert err == ""
    assert file.stat().st_mode & 0o777 == 0o644


def test_the_next_command_is_quoted_for_the_shell(tmp_path: Path) -> None:
    file = tmp_path / "new dir" / "a b.yaml"  # the missing directory is created
    result = run_main("new", str(file), "--mock")
    assert result.code == 0, result.err
    assert file.is_file()
    assert result.out.rstrip("\n").endswith(f"next: loadtest run '{file}'")


@pytest.mark.parametrize(("flags", "env"), [((), {"LOADTEST_API_KEY": "k"}), (("--mock",), {})])
def test_both_starters_are_accepted_by_validate(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path, flags: tuple[str, ...], env: dict[str, str]) -> None:
    file = tmp_path / "starter.yaml"
    result = run_main("new", str(file), *flags)
    assert result.code == 0, result.err
    monkeypatch.delenv("LOADTEST_API_KEY", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = run_main("validate", str(file))
    assert result.code == 0, result.err
    out, err = result.out, result.err
    assert err.splitlines()[-1] == f"# {file}: valid"
    assert re.search(r"^name: starter$", out, re.M)  # the run directory is named after the file
    assert re.search(rf"^  url: {re.escape('mock' if flags else PROXY_URL)}$", out, re.M)


def test_the_proxy_starter_without_a_key_says_which_variable(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    result = run_main("new", str(file))
    assert result.code == 0, result.err
    monkeypatch.delenv("LOADTEST_API_KEY", raising=False)
    result = run_main("validate", str(file))
    assert result.code == 2, result.err
    err = result.err
    assert err == f"error: {file}:13: target.api_key_env: no API key: set the environment variable " \
                  "LOADTEST_API_KEY or pass --api-key\n"


def test_the_proxy_starter_targets_a_placeholder_and_needs_a_key(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(template_text("proxy"), encoding="utf-8")
    sc = load_scenario(path)
    assert sc.target.url == PROXY_URL
    assert sc.target.api_key_env == "LOADTEST_API_KEY"
    with pytest.raises(ScenarioError, match="LOADTEST_API_KEY") as info:
        load_scenario(path, environ={})
    assert "proxy.yaml:" in str(info.value) and "target.api_key_env" in str(info.value)
    assert load_scenario(path, environ={"LOADTEST_API_KEY": "k"}) == sc
    assert load_scenario(path, overrides=Overrides(api_key="k"), environ={}) == sc


@pytest.mark.parametrize("kind", ["proxy", "mock"])
def test_each_starter_loads_and_round_trips(kind: str, tmp_path: Path) -> None:
    path = tmp_path / f"{kind}.yaml"
    path.write_text(template_text(kind), encoding="utf-8")
    sc = load_scenario(path, environ={"LOADTEST_API_KEY": "k"})
    assert sc.name == kind
    again_path = tmp_path / "as-run.yaml"
    again_path.write_text(dump_scenario(sc), encoding="utf-8")
    again = load_scenario(again_path, environ={"LOADTEST_API_KEY": "k"})
    assert again == sc
    assert fingerprint(again) == fingerprint(sc)


def test_the_mock_starter_explains_each_section() -> None:
    text = template_text("mock")
    sections = re.findall(r"^([a-z_]+):(.*)$", text, re.M)
    assert [name for name, _ in sections] == ["target", "mock", "load", "session", "timeouts", "slo"]
    assert all(rest.strip().startswith("#") for _, rest in sections), sections
    # every setting line carries its explanation too
    settings = [line for line in text.splitlines() if re.match(r"^ +[a-z_]+: ", line)]
    assert len(settings) >= 15
    assert all("#" in line for line in settings if not line.strip().startswith(("prompt:", "temperature:")))


def test_the_mock_starters_commented_examples_are_valid_when_uncommented(tmp_path: Path) -> None:
    text = template_text("mock")
    for key in ("capacity", "faults"):
        text, n = re.subn(rf"^  # {key}:", f"  {key}:", text, flags=re.M)
        assert n == 1, key
    text, n = re.subn(r"^# name: (\S+)", r"name: \1", text, flags=re.M)
    assert n == 1
    path = tmp_path / "sc.yaml"
    path.write_text(text, encoding="utf-8")
    sc = load_scenario(path)
    assert sc.name == "my-first-run"
    assert sc.mock.model.capacity == 8 and sc.mock.faults.active


def test_the_proxy_template_has_one_source() -> None:
    """The starter ships as package data only: no copy in scenarios/ to drift from it."""
    assert not (ROOT / "scenarios" / "proxy-template.yaml").exists()
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert [p.name for p in pages if "proxy-template" in p.read_text(encoding="utf-8")] == []


# --------------------------------------------------------------------------- what is refused


@pytest.mark.parametrize("flags", [(), ("--mock",)])
def test_an_existing_file_is_never_overwritten(tmp_path: Path, flags: tuple[str, ...]) -> None:
    file = tmp_path / "mine.yaml"
    file.write_text("name: mine\n", encoding="utf-8")
    before = file.stat()
    result = run_main("new", str(file), *flags)
    assert result.code == 2, result.err
    out, err = result.out, result.err
    assert out == ""
    assert err == f"error: {file}: already exists; loadtest new never overwrites a file " \
                  "(give another name, or remove it first)\n"
    assert file.read_text(encoding="utf-8") == "name: mine\n"
    assert file.stat().st_mtime_ns == before.st_mtime_ns and file.stat().st_ino == before.st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.yaml"]  # no temporary file left


def test_a_dangling_symlink_is_not_replaced(tmp_path: Path) -> None:
    link = tmp_path / "link.yaml"
    link.symlink_to(tmp_path / "nowhere.yaml")
    result = run_main("new", str(link))
    assert result.code == 2, result.err
    assert "already exists" in result.err
    assert link.is_symlink() and not (tmp_path / "nowhere.yaml").exists()


def test_a_directory_is_refused(tmp_path: Path) -> None:
    result = run_main("new", str(tmp_path))
    assert result.code == 2, result.err
    assert result.err == f"error: {tmp_path}: is a directory; give a file name for the scenario\n"
    assert list(tmp_path.iterdir()) == []


def test_a_path_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x", encoding="utf-8")
    target = tmp_path / "plain" / "sc.yaml"
    result = run_main("new", str(target), "--mock")
    assert result.code == 2, result.err
    err = result.err
    assert err == f"error: {target}: cannot write the scenario there, {tmp_path / 'plain'} is not a directory\n"
    assert (tmp_path / "plain").read_text(encoding="utf-8") == "x"


def test_an_unwritable_place_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The output probe (rundir.outdir) says no: as when the directory is read-only (a test run as
    root cannot make one, so the probe's temporary file is refused here)."""
    import tempfile

    def refused(*_: object, **__: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    file = tmp_path / "sc.yaml"
    result = run_main("new", str(file))
    assert result.code == 2, result.err
    out, err = result.out, result.err
    assert out == ""
    assert err == f"error: {file}: cannot write the scenario there (Permission denied)\n"
    assert not file.exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_place_the_system_refuses_is_exit_2() -> None:
    result = run_main("new", "/proc/loadtest-starter.yaml")
    assert result.code == 2, result.err
    err = result.err
    assert err.startswith("error: /proc/loadtest-starter.yaml: cannot write the scenario there (")
    assert len(err.splitlines()) == 1 and "Traceback" not in err


# --------------------------------------------------------------------------- the mock starter runs


@pytest.mark.realtime
def test_a_mock_starter_runs_as_written(tmp_path: Path) -> None:
    new = run_cli("new", "s.yaml", "--mock", cwd=tmp_path)
    assert new.returncode == 0, new.stderr
    assert new.stdout.strip().endswith("next: loadtest run s.yaml")
    out = tmp_path / "run"
    run = run_cli("run", "s.yaml", "--duration", "2s", "--out", str(out), "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["exit_code"] == 0
    requests = summary["requests"]
    assert requests["completed"] > 0 and requests["offered"] == requests["completed"]
    assert summary["scenario"] == "s"  # named after the file
