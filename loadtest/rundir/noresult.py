"""The run directory of a run that measured nothing, written with the standard library only.

Its target (or the Ray cluster) could not be reached (``verdict: unreachable``, exit 3), or a
Ctrl-C came during start-up, before the run's own signal relay took over (``verdict:
interrupted``, exit 4). Either way CI keeps a run directory whose summary.json says so, with
``measured: false`` and the reason; readers refuse it with that reason (nothing to compare or
report). This module imports neither numpy nor pydantic, so the command line can load it first
and still record a Ctrl-C that lands while the heavy modules are being imported.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtest.errors import (
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SLO_FAILED,
    EXIT_UNREACHABLE,
    LoadtestError,
    OutputError,
    redact,
)
from loadtest.rundir.outdir import prepare_output_dir, signals_ignored, write_atomic

__all__ = ["SUMMARY_SCHEMA", "VERDICT_EXIT_CODES", "record_interrupt", "write_no_result"]

#: summary.json's schema (loadtest.rundir.summary.SCHEMA; kept equal by a test)
SUMMARY_SCHEMA = 2
#: summary.json's ``verdict`` → the exit code of ``loadtest run`` (summary.json's ``exit_code``;
#: 74 replaces it when a file of the run directory could not be written)
VERDICT_EXIT_CODES = {"passed": EXIT_OK, "failed": EXIT_SLO_FAILED, "unreachable": EXIT_UNREACHABLE,
                      "interrupted": EXIT_INTERRUPTED, "incomplete": EXIT_INCOMPLETE}
_INTERRUPTED = "interrupted (Ctrl-C) during start-up, before anything was measured"


def write_no_result(run_dir: Path, *, verdict: str, scenario: str, target: str, reason: str, scenario_yaml: str = "",
                    fingerprint: str = "") -> dict[str, Any]:
    """summary.json (and scenario.yaml, when given) of a run that measured nothing. ``target``
    and ``reason`` must already be redacted."""
    summary: dict[str, Any] = {
        "schema": SUMMARY_SCHEMA, "scenario": scenario, "fingerprint": fingerprint, "target": target,
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "duration_s": 0.0, "measure_s": 0.0,
        "verdict": verdict, "measured": False, "reason": reason,
        "requests": {"started": 0, "completed": 0, "failed": 0, "dropped": 0, "cancelled": 0},
        "errors": {}, "latency_ms": {}, "slo": {}, "interrupted": verdict == "interrupted", "passed": False,
        "exit_code": VERDICT_EXIT_CODES[verdict],
    }
    failures = []
    files = ((("scenario.yaml", scenario_yaml),) if scenario_yaml else ()) + (
        ("summary.json", json.dumps(summary, indent=2) + "\n"),)
    for name, text in files:
        try:
            write_atomic(run_dir / name, text)
        except OutputError as exc:
            failures.append(str(exc))
    if failures:
        raise OutputError(f"the run directory {run_dir} is incomplete: {failures[0]}; the files written are kept")
    return summary


def record_interrupt(run_dir: Path, *, scenario: str, target: str = "", api_key: str | None = None,
                     scenario_yaml: str = "", fingerprint: str = "") -> None:
    """summary.json ``verdict: interrupted`` (nothing measured) in ``run_dir`` for a Ctrl-C at
    start-up, unless it has one or is a directory this run never claimed (another run's files
    stay untouched: only a missing or empty directory, or one holding this run's requests.csv,
    is written). Never raises: the exit code (4) says it when nothing can be written."""
    if (run_dir / "summary.json").exists():
        return
    with signals_ignored():
        try:
            claimed = (run_dir / "requests.csv").exists() or (run_dir / "requests.csv.partial").exists()
            if not claimed:
                prepare_output_dir(run_dir)  # only a missing or empty directory is taken (BadInput else)
            write_no_result(run_dir, verdict="interrupted", scenario=scenario, target=redact(target, api_key),
                            reason=_INTERRUPTED, scenario_yaml=redact(scenario_yaml, api_key), fingerprint=fingerprint)
        except (LoadtestError, OSError):
            pass
