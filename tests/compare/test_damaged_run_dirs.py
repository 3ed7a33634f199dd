"""A damaged run directory of every kind is bad input for ``compare`` and ``report``: exit 2, one
line naming the file and what is wrong with it, no traceback (issue 22, "the hostile cases of the
studies at the breadth of run's"). Before, several of them were judged as if the damaged figure
were missing and passed (a NaN, a string or a negative count in summary.json; an emptied hlog; a
truncated timeseries.csv or requests.csv; another metric's hlog copied over ttft.hlog), and a
``generator.reasons`` that was not a list was an internal error (exit 70).

Two real 2 s runs against the embedded mock (module fixture: the second of another scenario),
then each case damages a copy of the first. ``compare`` judges two rounds a side (their checks are
judged on summary.json, and every file is still read): the undamaged copy passes (exit 0), so
each exit 2 below comes from the damage. The command runs in this process (support/inprocess.py):
the cases read files only.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from support.helpers import run_cli, run_concurrently
from support.inprocess import Outcome, run_main

#: real processes and a real mock for the fixture; the cases themselves read files
pytestmark = pytest.mark.realtime

SCENARIO = """\
name: damaged
mock: {ttft_ms: 10, gap_ms: 2, chunks: 3}
load: {concurrency: 2, duration: 2s, warmup: 0s}
session:
  steps:
    - gen: {prompt: "%s"}
"""
TAG = "web_search=false"  # every request of the scenario carries it (the mock's default classes)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``good``, and ``other`` (another prompt: another workload fingerprint), run at once."""
    root = tmp_path_factory.mktemp("real")
    jobs = {}
    for name, prompt in (("good", "Explain artificial intelligence"), ("other", "Name three rivers")):
        scenario = root / f"{name}.yaml"
        scenario.write_text(SCENARIO % prompt, encoding="utf-8")
        jobs[name] = partial(run_cli, "run", str(scenario), "--out", str(root / name), "-q", "--no-html", timeout=60)
    for name, proc in run_concurrently(jobs).items():
        assert proc.returncode == 0, (name, proc.stderr)
    return {name: root / name for name in jobs}


def _compare(good: Path, cand: Path, *flags: str) -> Outcome:
    return run_main("compare", "--baseline", good, "--baseline", good, "--candidate", cand, "--candidate", good,
                    *flags)  # fmt: skip


def _one_line(outcome: Outcome) -> str:
    assert outcome.code == 2, (outcome.code, outcome.out, outcome.err)
    assert "Traceback" not in outcome.err + outcome.out and not outcome.out, outcome.err
    (line,) = outcome.error_lines
    return str(line)


def _summary(edit: Callable[[dict[str, Any]], object]) -> Callable[[Path], None]:
    """A damage of summary.json: ``edit`` changes the parsed file in place (NaN written as NaN)."""

    def damage(run: Path) -> None:
        data = json.loads((run / "summary.json").read_text(encoding="utf-8"))
        edit(data)
        (run / "summary.json").write_text(json.dumps(data), encoding="utf-8")

    return damage


def _write(name: str, content: str | bytes) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")

    return damage


def _cut(name: str, keep: Callable[[str], str]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / name
        path.write_text(keep(path.read_text(encoding="utf-8")), encoding="utf-8")

    return damage


def _replace(name: str, make: Callable[[Path], object]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / name
        path.unlink()
        make(path)

    return damage


def _drop_row(text: str, index: int) -> str:
    lines = text.splitlines(keepends=True)
    return "".join(lines[: index + 1] + lines[index + 2:])


# (damage, the damaged file, what the line says, read by report too, needs --tag)
CASES: dict[str, tuple[Callable[[Path], object], str, str, bool, bool]] = {
    "summary missing": (lambda run: (run / "summary.json").unlink(), "summary.json", "missing", True, False),
    "summary empty": (_write("summary.json", ""), "summary.json", "not valid JSON", True, False),
    "summary truncated": (_cut("summary.json", lambda t: t[: len(t) // 2]), "summary.json", "not valid JSON", True,
                          False),
    "summary binary": (_write("summary.json", b"\x89PNG\r\n\x1a\n\x00\xff"), "summary.json", "cannot read", True,
                       False),
    "summary a list": (_write("summary.json", "[1, 2]"), "summary.json", "expected a JSON object", True, False),
    "summary without latency_ms": (_summary(lambda d: d.pop("latency_ms")), "summary.json",
                                   "field 'latency_ms' is missing", True, False),
    "requests not an object": (_summary(lambda d: d.update(requests="many")), "summary.json",
                               "field 'requests' is missing or has the wrong type", True, False),
    "a figure that is a string": (_summary(lambda d: d["latency_ms"]["ttft"].update(p50="fast")), "summary.json",
                                  "field 'latency_ms.ttft.p50' should be a number or null, got 'fast'", True, False),
    "a negative count": (_summary(lambda d: d["latency_ms"]["ttft"].update(count=-5)), "summary.json",
                         "field 'latency_ms.ttft.count' should be a count (an integer >= 0), got -5", True, False),
    "a NaN figure": (_summary(lambda d: d["latency_ms"]["ttft"].update(p99=float("nan"))), "summary.json",
                     "field 'latency_ms.ttft.p99' is NaN, not a finite number", True, False),
    "an infinite window": (_summary(lambda d: d["window"].update(end_s=float("inf"))), "summary.json",
                           "field 'window.end_s' is Infinity, not a finite number", True, False),
    "a NaN error rate": (_summary(lambda d: d.update(error_rate=float("nan"))), "summary.json",
                         "field 'error_rate' is NaN", True, False),
    "a throughput that is a string": (_summary(lambda d: d["throughput"].update(requests_per_s="lots")),
                                      "summary.json", "field 'throughput.requests_per_s' should be a number", True,
                                      False),
    # was exit 70: the reasons were iterated as a list
    "saturation reasons not a list": (_summary(lambda d: d["generator"].update(saturated=True, reasons=5)),
                                      "summary.json", "field 'generator.reasons' should be a list", True, False),
    "a class figure that is a string": (_summary(lambda d: d["by_tag"][TAG]["latency_ms"]["ttft"].update(p50="x")),
                                        "summary.json", f"field 'by_tag.{TAG}.latency_ms.ttft.p50' should be a number",
                                        True, True),
    "summary a directory": (_replace("summary.json", lambda p: p.mkdir()), "summary.json", "cannot read", True,
                            False),
    "summary a symlink loop": (_replace("summary.json", lambda p: p.symlink_to(p)), "summary.json",
                               "Too many levels of symbolic links", True, False),
    "hlog cut in a line": (_cut("ttft.hlog", lambda t: t[: t.rindex(",") + 8]), "ttft.hlog",
                           "is not an HdrHistogram interval", True, False),
    "hlog binary": (_write("ttft.hlog", b"\x00\xff\xfe\x00"), "ttft.hlog", "not a text HdrHistogram log", True,
                    False),
    "hlog of text": (_write("ttft.hlog", "hello\n"), "ttft.hlog", "line 1 is not an HdrHistogram interval", True,
                     False),
    "hlog empty": (_write("ttft.hlog", ""), "ttft.hlog", "holds no interval", True, False),
    "hlog cut after its header": (_cut("ttft.hlog", lambda t: t[: t.index('"StartTimestamp"')]), "ttft.hlog",
                                  "holds no interval", True, False),
    "hlog of another metric": (lambda run: shutil.copy(run / "itl.hlog", run / "ttft.hlog"), "ttft.hlog",
                               "holds the histograms of 'itl', not of 'ttft'", True, False),
    "hlog of another class": (lambda run: shutil.copy(run / "by_tag/tools=false/ttft.hlog",
                                                      run / f"by_tag/{TAG}/ttft.hlog"),
                              f"by_tag/{TAG}/ttft.hlog", f"holds the histograms of 'ttft tools=false', not of "
                              f"'ttft {TAG}'", False, True),
    "timeseries cut in a row": (_cut("timeseries.csv", lambda t: t[: len(t) - 20]), "timeseries.csv",
                                "its last line is cut short", True, False),
    "timeseries without a second": (_cut("timeseries.csv", lambda t: _drop_row(t, 1)), "timeseries.csv",
                                    "line 3: t_s is 2, expected 1", True, False),
    "timeseries binary": (_write("timeseries.csv", b"\xff\xfe\x00garbage"), "timeseries.csv",
                          "not a readable CSV file", True, False),
    "requests cut in a row": (_cut("requests.csv", lambda t: t[: len(t) - 30]), "requests.csv",
                              "its last line is cut short", True, True),
    "an outcome that is none": (_cut("requests.csv", lambda t: t.replace(",ok,", ",maybe,", 1)), "requests.csv",
                                "row 1: outcome is 'maybe', expected one of ok, failed", True, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_compare_refuses_a_damaged_run_directory_in_one_line(runs: dict[str, Path], tmp_path: Path,
                                                            case: str) -> None:
    damage, name, says, _, tagged = CASES[case]
    cand = tmp_path / "cand"
    shutil.copytree(runs["good"], cand, symlinks=True)
    damage(cand)
    line = _one_line(_compare(runs["good"], cand, *(["--tag", TAG] if tagged else [])))
    assert line.startswith(f"error: {cand / name}: ") and says in line, line


@pytest.mark.parametrize("case", [c for c, (_, _, _, report, tagged) in CASES.items() if report and not tagged])
def test_report_refuses_a_damaged_run_directory_in_one_line(runs: dict[str, Path], tmp_path: Path,
                                                           case: str) -> None:
    damage, name, says, _, _ = CASES[case]
    run = tmp_path / "run"
    shutil.copytree(runs["good"], run, symlinks=True)
    damage(run)
    line = _one_line(run_main("report", run, "--out", tmp_path / "r.html"))
    assert line.startswith(f"error: {run / name}: ") and says in line, line
    assert not (tmp_path / "r.html").exists()


def test_the_undamaged_copy_passes_and_so_do_its_classes(runs: dict[str, Path], tmp_path: Path) -> None:
    # the control of every case above: the same command on an intact copy is a pass
    cand = tmp_path / "cand"
    shutil.copytree(runs["good"], cand)
    for flags in ([], ["--tag", TAG]):
        outcome = _compare(runs["good"], cand, *flags)
        assert outcome.code == 0 and outcome.out.splitlines()[-1].startswith("PASS: no regression in 14 gated"), \
            (flags, outcome)  # fmt: skip


@pytest.mark.parametrize("kind", ["empty directory", "a file", "no such directory"])
def test_what_is_not_a_run_directory_is_named(runs: dict[str, Path], tmp_path: Path, kind: str) -> None:
    path = tmp_path / "cand"
    if kind == "empty directory":
        path.mkdir()
    elif kind == "a file":
        path.write_text("not a run\n", encoding="utf-8")
    line = _one_line(_compare(runs["good"], path))
    says = {"empty directory": f"{path / 'summary.json'}: missing; is {path} a run directory?",
            "a file": f"{path}: is a file, not a run directory",  # was click's four-line usage error
            "no such directory": f"{path / 'summary.json'}: missing; {path} does not exist"}[kind]  # fmt: skip
    assert line == f"error: {says}" or line.startswith(f"error: {says}"), line


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a directory of mode 000: the case above of a summary.json "
                                              "that cannot be read (a directory, a symlink loop) stands in for it")
def test_a_run_directory_without_read_permission(runs: dict[str, Path], tmp_path: Path) -> None:
    cand = tmp_path / "cand"
    shutil.copytree(runs["good"], cand)
    cand.chmod(0)
    try:
        line = _one_line(_compare(runs["good"], cand))
    finally:
        cand.chmod(0o755)
    assert line.startswith(f"error: {cand / 'summary.json'}: cannot read") and "Permission denied" in line, line


def test_a_run_of_another_scenario_is_named_with_its_fingerprint(runs: dict[str, Path]) -> None:
    good, other = runs["good"], runs["other"]
    prints = {name: json.loads((p / "summary.json").read_text(encoding="utf-8"))["fingerprint"][:12]
              for name, p in runs.items()}  # fmt: skip
    assert prints["good"] != prints["other"]
    line = _one_line(_compare(good, other))
    # the line names the run directories, each with its workload (it gave the fingerprints only)
    assert line.startswith(f"error: workload fingerprints differ ({prints['good']}: baseline {good}, "
                           f"{prints['other']}: candidate {other}): these runs are not of the same workload"), line
    allowed = _compare(good, other, "--allow-different-workload")
    assert allowed.code == 0 and "compared anyway (--allow-different-workload)" in allowed.out, allowed
