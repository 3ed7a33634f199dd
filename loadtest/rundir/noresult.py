"""The run directory of a run that measured nothing, written with the standard library only.

Its target (or the Ray cluster) could not be reached (``verdict: unreachable``, exit 3), or a
Ctrl-C came during start-up, before the run's own signal relay took over (``verdict:
interrupted``, exit 4). Either way CI keeps a run directory whose summary.json says so, with
``measured: false`` and the reason; readers refuse it with that reason (nothing to compare or
report). This module imports neither numpy nor pydantic, so the command line can load it first
and still record a Ctrl-C that lands while the heavy modules are being imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtest.errors import (
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SLO_FAILED,
    EXIT_UNREACHABLE,
    BadInput,
    LoadtestError,
    OutputError,
    redact,
)

__all__ = ["SUMMARY_SCHEMA", "VERDICT_EXIT_CODES", "record_interrupt", "signals_ignored", "write_no_result"]

#: summary.json's schema (loadtest.rundir.summary.SCHEMA; kept equal by a test)
SUMMARY_SCHEMA = 2
#: summary.json's ``verdict`` → the exit code of ``loadtest run`` (summary.json's ``exit_code``;
#: 74 replaces it when a file of the run directory could not be written)
VERDICT_EXIT_CODES = {"passed": EXIT_OK, "failed": EXIT_SLO_FAILED, "unreachable": EXIT_UNREACHABLE,
                      "interrupted": EXIT_INTERRUPTED, "incomplete": EXIT_INCOMPLETE}
_INTERRUPTED = "interrupted (Ctrl-C) during start-up, before anything was measured"


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """SIGINT/SIGTERM held while files are written: a Ctrl-C then cannot leave a run directory
    without its summary.json. A signal that came meanwhile is delivered once the block ends (to
    the handler that was in place: the command line's, a running study's), never dropped: a
    study whose step was writing its report when the user pressed Ctrl-C stops after that step.
    Outside the main thread (signals cannot be handled there) the block runs as it is."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, _f: came.append(s)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if came:
            signal.raise_signal(came[0])


def _write(path: Path, text: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc


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
            _write(run_dir / name, text)
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
                if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
                    return
                run_dir.mkdir(parents=True, exist_ok=True)
            write_no_result(run_dir, verdict="interrupted", scenario=scenario, target=redact(target, api_key),
                            reason=_INTERRUPTED, scenario_yaml=redact(scenario_yaml, api_key), fingerprint=fingerprint)
        except (LoadtestError, BadInput, OSError):
            pass
