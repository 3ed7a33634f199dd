"""The studies (``sweep``, ``ab``, ``calibrate``) against a hostile user, at the breadth of ``run``'s
hostile cases (issue 22): a signal during each of them, outputs that cannot be written, and options
a study does not use.

* A SIGINT or SIGTERM while a study's run is measuring: exit 4; the runs finished before are kept
  as they were (exit_code 0), the one cut short says ``interrupted`` and exit_code 4 and keeps
  what it measured; the sweep's sweep.json and capacity.json say 4, keep the finished step and
  are not a pass; ab and calibrate write no verdict and no calibration (no file that could be
  read as a result), and say where the runs are. A signal between two runs (outside a run's own
  handlers) is exit 4 too.
* ``--out`` not new or empty, or that cannot be written (a name the file system refuses, a
  read-only directory), and ``--json``/``--markdown``/``--junit`` that cannot be written: exit 2
  in one line naming the path, before anything runs (``ab --junit`` into a path under a file
  failed after every round, and an over-long ``--out`` was exit 70 in every command).
* ``calibrate`` took --json, --markdown, --junit and --calibration and did nothing with them:
  they are unknown options now (exit 2).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from support.helpers import run_concurrently
from support.inprocess import run_main
from support.rundir_factory import make_run_dir
from support.studysignals import Signalled, signal_study

from loadtest.compare import runs as compare_runs
from loadtest.runner import todir
from loadtest.studies import ab as ab_study
from loadtest.studies import calibrate as calibrate_study

SCENARIO = """\
name: hostile-study
target: {url: mock}
mock: {ttft_ms: 10, gap_ms: 2, chunks: 3}
load: {mode: closed, concurrency: 2, duration: 2s, warmup: 0s, seed: 1}
session:
  steps:
    - gen: {prompt: "hello"}
timeouts: {connect: 2s, first_token: 5s, stream: 5s}
slo: {ttft_p99_ms: 5000}
"""
#: a name no file system takes (ENAMETOOLONG): unwritable for root too
LONG = "x" * 300


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


def _summary(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    return data


def _one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ---- a signal while a study's run measures (the four at once: ~7 s in all) ---------------------------

_VERDICT_FILES = ("--json", "v.json", "--markdown", "v.md", "--junit", "v.xml")


@pytest.fixture(scope="module")
def signalled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Signalled]:
    root = tmp_path_factory.mktemp("signals")
    sc = root / "s.yaml"
    sc.write_text(SCENARIO, encoding="utf-8")
    two_s = ["--duration", "2s", "--retries", "0"]
    verdicts = [str(root / v) if v.startswith("v.") else v for v in _VERDICT_FILES]
    studies: dict[str, tuple[list[str], str, tuple[signal.Signals, ...]]] = {
        # the second step (the first passed): sweep.json must keep it
        "sweep": (["sweep", str(sc), "--levels", "1,2", "--step-duration", "2s", "--no-html"], "step-02-*",
                  (signal.SIGINT,)),
        # round 1's candidate, its baseline done; the verdict files asked for must not appear
        "ab": (["ab", str(sc), "--baseline", "mock", "--candidate", "mock", "--rounds", "2", *two_s,
                "--metric", "ttft.p50", *verdicts], "round-1-candidate", (signal.SIGINT,)),
        "calibrate": (["calibrate", str(sc), "--target", "mock", "--runs", "3", *two_s], "run-2", (signal.SIGINT,)),
        # as a CI runner cancels a job: SIGTERM, and another before the first is done (stop at once)
        "calibrate-sigterm": (["calibrate", str(sc), "--target", "mock", "--runs", "3", *two_s], "run-2",
                              (signal.SIGTERM, signal.SIGTERM)),
    }
    done: dict[str, Signalled] = run_concurrently({name: partial(signal_study, args, root / name, when=when,
                                                                 signals=sigs)
                                                   for name, (args, when, sigs) in studies.items()})
    return done


def _interrupted_run(s: Signalled, name: str) -> dict[str, Any]:
    """The run the signal cut short: interrupted, exit_code 4, what it measured kept."""
    summary = _summary(s.out / name)
    assert summary["verdict"] == "interrupted" and summary["exit_code"] == 4 and summary["passed"] is False
    assert summary["requests"]["completed"] > 5 and (s.out / name / "ttft.hlog").is_file()
    assert not (s.out / name / "requests.csv.partial").exists()
    return summary


def _finished_run(s: Signalled, name: str) -> dict[str, Any]:
    summary = _summary(s.out / name)
    assert summary["verdict"] == "passed" and summary["exit_code"] == 0 and summary["interrupted"] is False
    return summary


@pytest.mark.realtime
def test_a_signal_during_a_sweep_step_keeps_the_steps_done_and_says_4(signalled: dict[str, Signalled]) -> None:
    s = signalled["sweep"]
    assert s.code == 4 and "Traceback" not in s.stderr, s.stderr
    assert s.exit_s < 5  # the step's streams last ~20 ms: the drain ends at once
    first = _finished_run(s, "step-01-concurrency-1")
    _interrupted_run(s, "step-02-concurrency-2")
    doc = json.loads((s.out / "sweep.json").read_text(encoding="utf-8"))
    cap = json.loads((s.out / "capacity.json").read_text(encoding="utf-8"))
    assert doc["exit_code"] == cap["answer"]["exit_code"] == 4
    assert doc["stopped"] == cap["stopped"] == cap["answer"]["ended_by"] == "interrupted" and doc["interrupted"]
    # the finished step is kept with its figures, the cut one marked and not passed
    assert [(st["load"], st["passed"], st["interrupted"]) for st in doc["steps"]] == [(1, True, False), (2, False, True)]
    assert doc["steps"][0]["throughput_rps"] == first["throughput"]["requests_per_s"]
    assert doc["max_passing_load"] == 1 and [st["load"] for st in cap["steps"]] == [1, 2]
    assert doc["passed"] is False  # never a pass (it said true: a level had passed)
    assert "sweep interrupted: partial answer" in s.stdout
    assert sorted(p.name for p in s.out.iterdir()) == ["capacity.json", "step-01-concurrency-1",
                                                       "step-02-concurrency-2", "sweep.json"]


@pytest.mark.realtime
def test_a_signal_during_an_ab_round_keeps_the_runs_and_writes_no_verdict(signalled: dict[str, Signalled]) -> None:
    s = signalled["ab"]
    assert s.code == 4 and "Traceback" not in s.stderr, s.stderr
    _finished_run(s, "round-1-baseline")
    _interrupted_run(s, "round-1-candidate")
    assert f"Interrupted: no verdict (the rounds run so far are in {s.out})" in s.stderr
    # nothing that could be read as a verdict: no round 2, no compare.*, none of --json/--markdown/--junit
    assert sorted(p.name for p in s.out.iterdir()) == ["round-1-baseline", "round-1-candidate"]
    assert not [v for v in _VERDICT_FILES if v.startswith("v.") and (s.out.parent / v).exists()]


@pytest.mark.realtime
@pytest.mark.parametrize("name", ["calibrate", "calibrate-sigterm"])
def test_a_signal_during_a_calibration_run_keeps_the_runs_done(signalled: dict[str, Signalled], name: str) -> None:
    s = signalled[name]
    assert s.code == 4 and "Traceback" not in s.stderr, s.stderr
    assert s.exit_s < 5
    _finished_run(s, "run-1")
    _interrupted_run(s, "run-2")
    assert sorted(p.name for p in s.out.iterdir()) == ["run-1", "run-2"]  # no run-3, no calibration.json


# ---- a signal between two runs: outside a run's own handlers --------------------------------------------


def _fake_runs(monkeypatch: pytest.MonkeyPatch, runs_in: Any, reads_in: Any) -> list[Path]:
    """Every run of the study is a synthetic run directory; reading the first one back is where
    the Ctrl-C lands (a KeyboardInterrupt, as the console's guard raises it)."""
    made: list[Path] = []

    def run_to_dir(sc: Any, options: Any) -> dict[str, Any]:
        made.append(Path(options.out))
        return dict(make_run_dir(Path(options.out), name=sc.name, duration_s=12, rate_per_s=10).summary)

    monkeypatch.setattr(runs_in, "run_to_dir", run_to_dir)
    monkeypatch.setattr(reads_in, "load_run", _interrupt)
    return made


def _interrupt(*_: Any, **__: Any) -> Any:
    raise KeyboardInterrupt


@pytest.mark.parametrize("command", ["ab", "calibrate"])
def test_a_signal_between_two_runs_exits_4_and_keeps_the_run(monkeypatch: pytest.MonkeyPatch, scenario: Path,
                                                             tmp_path: Path, command: str) -> None:
    out = tmp_path / "out"
    if command == "ab":
        made = _fake_runs(monkeypatch, ab_study, ab_study)
        args = ["ab", scenario, "--baseline", "mock", "--candidate", "mock", "--json", tmp_path / "v.json"]
    else:  # calibrate imports run_to_dir where it runs
        made = _fake_runs(monkeypatch, todir, calibrate_study)
        args = ["calibrate", scenario, "--target", "mock"]
    outcome = run_main(*args, "--out", out)
    assert outcome.code == 4 and outcome.err.strip().endswith("Interrupted.") and "Traceback" not in outcome.err
    assert made == [out / ("round-1-baseline" if command == "ab" else "run-1")]
    assert [p.name for p in out.iterdir()] == [made[0].name] and (made[0] / "summary.json").is_file()
    assert not (tmp_path / "v.json").exists()


def test_a_signal_while_compare_reads_writes_no_verdict(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", duration_s=12, rate_per_s=10).path
    monkeypatch.setattr(compare_runs, "load_run", _interrupt)
    outcome = run_main("compare", run, run, "--json", tmp_path / "v.json", "--junit", tmp_path / "v.xml")
    assert outcome.code == 4 and "Interrupted." in outcome.err and not outcome.out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# ---- outputs that cannot be written: exit 2 in one line, before anything runs ---------------------------


def _unwritable_file(tmp_path: Path, kind: str) -> Path:
    """A path a verdict file cannot be written to."""
    if kind == "under a file":
        (tmp_path / "a-file").write_text("x", encoding="utf-8")
        return tmp_path / "a-file" / "v.out"
    if kind == "a directory":
        (tmp_path / "a-dir").mkdir()
        return tmp_path / "a-dir"
    return tmp_path / LONG / "v.out"


@pytest.mark.parametrize("kind", ["under a file", "a directory", "a name too long"])
@pytest.mark.parametrize("flag", ["--json", "--markdown", "--junit"])
def test_ab_refuses_a_verdict_file_it_cannot_write_before_the_first_run(scenario: Path, tmp_path: Path,
                                                                        flag: str, kind: str) -> None:
    target = _unwritable_file(tmp_path, kind)
    out = tmp_path / "ab"
    outcome = run_main("ab", scenario, "--baseline", "mock", "--candidate", "mock", "--out", out, flag, target)
    assert outcome.code == 2, outcome
    line = _one_error(outcome.err)
    assert line.startswith(f"error: {target}: "), line
    says = {"under a file": "is not a directory", "a directory": "is a directory; give a file name",
            "a name too long": "File name too long"}[kind]  # fmt: skip
    assert says in line, line
    assert not out.exists()  # before any run (the flag was only used after the last round)


def test_compare_refuses_a_verdict_file_it_cannot_write_before_reading(tmp_path: Path) -> None:
    target = _unwritable_file(tmp_path, "under a file")
    missing = tmp_path / "no-run"  # not read: the output is checked first
    outcome = run_main("compare", missing, missing, "--junit", target)
    assert outcome.code == 2 and not outcome.out
    assert _one_error(outcome.err).startswith(f"error: {target}: cannot write the verdict there")


def _study(command: str, scenario: Path) -> list[str | Path]:
    studies: dict[str, list[str | Path]] = {
        "sweep": ["sweep", scenario, "--levels", "1,2", "--step-duration", "2s"],
        "calibrate": ["calibrate", scenario, "--target", "mock", "--runs", "2"],
        "ab": ["ab", scenario, "--baseline", "mock", "--candidate", "mock", "--rounds", "1"],
    }
    return studies[command]


@pytest.mark.parametrize("command", ["sweep", "calibrate", "ab"])
@pytest.mark.parametrize("kind", ["not empty", "a name too long", "read-only"])
def test_a_study_refuses_an_out_it_cannot_use(scenario: Path, tmp_path: Path, command: str, kind: str) -> None:
    out = tmp_path / "out"
    if kind == "not empty":
        out.mkdir()
        (out / "earlier.txt").write_text("a previous study's file\n", encoding="utf-8")
    elif kind == "a name too long":
        out = tmp_path / LONG  # was exit 70 in every command (Path.exists raised)
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes a read-only directory: 'a name too long' is the unwritable case for root")
        out.mkdir()
        out.chmod(0o500)
    try:
        outcome = run_main(*_study(command, scenario), "--out", out)
    finally:
        if kind == "read-only":
            out.chmod(0o755)
    assert outcome.code == 2, outcome
    line = _one_error(outcome.err)
    says = {"not empty": "the output directory is not empty", "a name too long": "(File name too long)",
            "read-only": "(Permission denied)"}[kind]  # fmt: skip
    assert line.startswith(f"error: {out}: ") and says in line, line
    if kind == "not empty":
        assert [p.name for p in out.iterdir()] == ["earlier.txt"]  # nothing of the study mixed in


# ---- calibrate takes the options it uses, and no other ----------------------------------------------------


@pytest.mark.parametrize("option", ["--junit", "--json", "--markdown", "--calibration"])
def test_calibrate_refuses_the_gate_options_it_would_ignore(scenario: Path, tmp_path: Path, option: str) -> None:
    out = tmp_path / "cal"
    outcome = run_main("calibrate", scenario, "--target", "mock", "--out", out, option, tmp_path / "x.xml")
    assert outcome.code == 2 and f"No such option '{option}'" in outcome.err, outcome.err
    assert "Traceback" not in outcome.err and not out.exists() and not (tmp_path / "x.xml").exists()


def test_calibrate_help_lists_the_judging_options_it_uses() -> None:
    help_text = run_main("calibrate", "--help").out
    used: Callable[[str], bool] = lambda opt: f"  {opt}" in help_text  # noqa: E731
    assert all(used(o) for o in ("--metric", "--tag", "--tolerance", "--max-error-increase", "--alpha", "--strict",
                                 "--block-s", "--resamples", "--seed", "--min-tail", "--allow-saturated"))
    assert not any(used(o) for o in ("--json", "--markdown", "--junit", "--calibration"))
