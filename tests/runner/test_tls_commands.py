"""TLS reaches every command that runs a scenario (issue 18): against a wss:// mock with a
private CA, ``run``, ``run --workers 2``, ``ab``, ``calibrate`` and ``sweep`` (one worker, and
``load.workers: 2``) connect when the CA is named only in the scenario (``target.ca_file``),
and when it is given only as ``--ca-file``. Before the one ``RunOptions``, ``ab`` and
``calibrate`` exited 3 with the CA in the scenario, and a two-worker sweep's processes rebuilt
TLS without it."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from support.helpers import run_cli, run_concurrently

from loadtest.mock.process import MockProcess

pytestmark = [pytest.mark.realtime, pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")]


@pytest.fixture(scope="module")
def wss_url(cert: tuple[Path, Path]) -> Iterator[str]:
    """``loadtest mock --tls-cert --tls-key`` in its own process: a wss:// target with a private CA."""
    args = ["--ttft-ms", "5", "--gap-ms", "1", "--chunks", "4", "--tls-cert", str(cert[0]), "--tls-key", str(cert[1])]
    with MockProcess(args) as url:
        assert url.startswith("wss://127.0.0.1:")
        yield url


def _scenario(tmp: Path, url: str, *, ca_file: Path | None, workers: int = 1) -> Path:
    ca = f"\n  ca_file: {ca_file}" if ca_file else ""
    path = tmp / "tls.yaml"
    path.write_text(f"""name: tls-commands
target:
  url: {url}{ca}
load: {{concurrency: 2, duration: 1500ms, warmup: 0s, workers: {workers}}}
session:
  steps:
    - gen: {{prompt: "Explain artificial intelligence"}}
timeouts: {{connect: 2s}}
slo: {{ttft_p99_ms: 5000}}
""", encoding="utf-8")
    return path


def _summaries(out: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(out.rglob("summary.json"))]


# (command, its arguments after the scenario, how many run directories it writes); ab with
# --retries 0 --allow-saturated (as in test_ab_tag.py): a 1.5 s run's loop-lag p99 is its worst
# few samples, and a round the machine saturated would otherwise be run again (two more run
# directories, kept as *.spoiled-1) or refused (exit 2): the machine's verdict, not TLS's
COMMANDS = {
    "run": (["run", "{s}", "--out", "{o}", "--no-html", "-q"], 1),
    "run --workers 2": (["run", "{s}", "--out", "{o}", "--no-html", "-q", "--workers", "2"], 1),
    # two rounds: with one, a 1.5 s run per side judges no check, which is exit 2 (issue 22)
    "ab": (["ab", "{s}", "--baseline", "{u}", "--candidate", "{u}", "--rounds", "2", "--out", "{o}",
            "--metric", "ttft.p50", "--min-tail", "1", "--retries", "0", "--allow-saturated"], 4),
    "calibrate": (["calibrate", "{s}", "--target", "{u}", "--runs", "2", "--out", "{o}", "--metric", "ttft.p50",
                   "--min-tail", "1"], 2),
    "sweep": (["sweep", "{s}", "--levels", "2", "--refine", "0", "--replicates", "1", "--out", "{o}", "--no-html",
               "-q"], 1),
    "sweep load.workers: 2": (["sweep", "{s}", "--levels", "2", "--refine", "0", "--replicates", "1", "--out", "{o}",
                               "--no-html", "-q"], 1),
}


CASES = [(command, where) for command in COMMANDS for where in ("scenario", "flag")]
CONTROL = ("ab", "no CA")


@dataclass
class Done:
    argv: list[str]
    workers: int
    out: Path
    proc: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def done(wss_url: str, cert: tuple[Path, Path],
         tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Done]:
    """Every (command, where) case and the control against the one mock, each into its own
    directory, run and ab at once: they check that a command connects (or, the control, is
    refused) and what it wrote, not a timing."""
    cases: dict[tuple[str, str], tuple[list[str], int, Path]] = {}
    for command, where in CASES:
        args, _ = COMMANDS[command]
        workers = 2 if command.endswith("load.workers: 2") else 1
        tmp = tmp_path_factory.mktemp("tls")
        scenario = _scenario(tmp, wss_url, ca_file=cert[0] if where == "scenario" else None, workers=workers)
        out = tmp / "out"
        argv = [a.format(s=scenario, o=out, u=wss_url) for a in args]
        if where == "flag":
            argv += ["--ca-file", str(cert[0])]
        cases[command, where] = (argv, workers, out)
    # the control of the last test: the same ab without any CA
    tmp = tmp_path_factory.mktemp("tls")
    argv = ["ab", str(_scenario(tmp, wss_url, ca_file=None)), "--baseline", wss_url, "--candidate", wss_url,
            "--rounds", "1", "--out", str(tmp / "out"), "--metric", "ttft.p50"]
    cases[CONTROL] = (argv, 1, tmp / "out")

    def run(key: tuple[str, str]) -> subprocess.CompletedProcess[str]:
        return run_cli(*cases[key][0], "--api-key", "k-tls", timeout=120)

    # run and ab (and the control) three at a time: each command is about half a core (its
    # imports, worker processes, the gate's bootstrap), and their verdicts do not depend on the
    # loop lag the overlap adds (a run is not refused for it, ab takes --allow-saturated).
    # calibrate and sweep do: a run or step whose generator saturated is run again (one more run
    # directory), left out (calibrate, exit 2) or ends the sweep inconclusive (exit 6); so they
    # run afterwards, alone, one at a time, as before.
    alone = [key for key in CASES if key[0].startswith(("calibrate", "sweep"))]
    procs = run_concurrently({key: partial(run, key) for key in cases if key not in alone}, max_workers=3)
    procs.update({key: run(key) for key in alone})
    return {key: Done(argv, workers, out, procs[key]) for key, (argv, workers, out) in cases.items()}


@pytest.mark.parametrize(("command", "where"), CASES, ids=[f"{c}-{w}" for c, w in CASES])
def test_every_command_trusts_the_private_ca(command: str, where: str, done: dict[tuple[str, str], Done]) -> None:
    run = done[command, where]
    _, dirs = COMMANDS[command]
    workers, argv, proc = run.workers, run.argv, run.proc
    assert proc.returncode in (0, 1), f"{command}: exit {proc.returncode}\n{proc.stderr}"
    assert "certificate verif" not in proc.stderr, proc.stderr
    summaries = _summaries(run.out)
    assert len(summaries) == dirs, [s.get("verdict") for s in summaries]
    for s in summaries:
        requests = s["requests"]
        assert isinstance(requests, dict)
        assert requests["completed"] > 0 and requests["failed"] == 0, (command, requests)
        assert s["tls"] == {"insecure": False}
        expected = 2 if workers == 2 or "--workers" in argv else 1
        workers_doc = s["workers"]
        assert isinstance(workers_doc, dict) and workers_doc["finished"] == expected, workers_doc


def test_without_the_ca_every_command_is_refused_by_verification(done: dict[tuple[str, str], Done]) -> None:
    """The control: the same ab without any CA fails verification (exit 3), so the test above
    measures the CA reaching the command, not a target that needs none."""
    proc = done[CONTROL].proc
    assert proc.returncode == 3, proc.stderr
    assert "certificate verification failed" in proc.stderr
