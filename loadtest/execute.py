"""Run a scenario into a run directory: the one path `loadtest run` and each sweep step take.

Order matters for "no recorded data is lost": requests.csv is streamed while the run goes
on; after the run the directory is written with SIGINT/SIGTERM ignored (a second Ctrl-C
cannot leave it without summary.json); an unreachable target leaves no empty directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtest.console import LiveProgress
from loadtest.errors import LoadtestError, TargetUnreachable
from loadtest.report import build_report
from loadtest.results import RequestCsv, signals_ignored, write_run_dir
from loadtest.runner import run_scenario
from loadtest.scenario import dump_scenario, fingerprint

__all__ = ["run_to_dir"]


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
    """Run ``sc``, write ``run_dir`` (and report.html when ``html``); returns the summary."""
    sink = RequestCsv(run_dir, secret=api_key)
    try:
        with LiveProgress(quiet=quiet) as live:
            result = run_scenario(sc, api_key=api_key, ssl_context=ssl_context, insecure=insecure,
                                  progress=live, request_sink=sink)
    except TargetUnreachable:
        sink.discard()  # nothing was measured: leave no empty run directory behind
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
