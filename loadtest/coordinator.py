"""Run a scenario into a run directory: the one path `loadtest run` and each sweep step take.

Order matters for "no recorded data is lost": requests.csv is streamed while the run goes
on; after the run the directory is written with SIGINT/SIGTERM ignored (a second Ctrl-C
cannot leave it without summary.json). Before anything connects the output location is
checked (:func:`~loadtest.results.prepare_run_dir`) and the file-descriptor limit
(:func:`~loadtest.limits.ensure_open_files`). An unreachable target (exit 3) leaves a
minimal run directory (summary.json with ``verdict: unreachable``) so CI keeps a record. A
disk that fills during the run ends in :class:`~loadtest.errors.OutputError` (exit 74) once
everything that could be written is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtest.console import LiveProgress
from loadtest.engine.limits import ensure_open_files
from loadtest.engine.openloop import arrivals_for
from loadtest.engine.runner import run_scenario
from loadtest.errors import LoadtestError, TargetUnreachable, redact
from loadtest.report.html import build_report
from loadtest.rundir.writer import (
    RequestCsv,
    prepare_run_dir,
    signals_ignored,
    write_run_dir,
    write_unreachable,
)
from loadtest.scenario import dump_scenario, fingerprint

__all__ = ["preflight", "run_to_dir"]


def preflight(sc: Any, *, apply: bool = True) -> list[str]:
    """Every check of the scenario a run makes before it connects, beyond the model's own.

    ``loadtest validate`` calls it with ``apply=False``, ``run`` (through :func:`run_to_dir`)
    with ``apply=True``, so the two accept and refuse the same scenarios with the same
    message: the trace file is read and parsed (``load.trace``), and the file-descriptor
    limit compared with the load's peak connections (:mod:`loadtest.limits`). Raises
    BadInput (exit 2); returns note lines for stderr.
    """
    if sc.load.open_loop and sc.load.trace is not None:
        arrivals_for(sc.load)  # parses the whole trace at once; the schedule itself is lazy
    note = ensure_open_files(sc.load.peak_connections, apply=apply)
    return [note] if note else []


def run_to_dir(
    sc: Any,
    run_dir: Path,
    *,
    api_key: str | None,
    ssl_context: Any,
    insecure: bool,
    html: bool,
    quiet: bool,
    warn: Callable[[str], None],
) -> dict[str, Any]:
    """Run ``sc``, write ``run_dir`` (and report.html when ``html``); returns the summary.

    Raises BadInput (exit 2) before anything connects when ``run_dir`` cannot be written or
    is not empty, or the machine cannot open the connections the load needs.
    """
    for note in preflight(sc):
        warn(note)
    prepare_run_dir(run_dir)
    sink = RequestCsv(run_dir, secret=api_key)
    try:
        with LiveProgress(quiet=quiet) as live:
            result = run_scenario(sc, api_key=api_key, ssl_context=ssl_context, insecure=insecure,
                                  progress=live, request_sink=sink)
    except TargetUnreachable as exc:
        # nothing was measured, but CI keeps the run directory: say why there is no result
        sink.discard()
        with signals_ignored():
            write_unreachable(run_dir, scenario=sc.name, target=redact(sc.target.url, api_key),
                              reason=redact(str(exc), api_key), scenario_yaml=dump_scenario(sc),
                              fingerprint=fingerprint(sc))
        raise
    except BaseException:
        sink.finish()  # a bug or a hard stop: keep every request recorded so far
        raise
    with signals_ignored():
        summary = write_run_dir(run_dir, result, requests_csv=sink, scenario_yaml=dump_scenario(sc),
                                fingerprint=fingerprint(sc), slo_limits=dict(sc.slo), secret=api_key)
        if html:
            try:
                build_report([run_dir])
            except LoadtestError as exc:
                warn(f"warning: {run_dir}/report.html not written: {exc}")
    return summary
