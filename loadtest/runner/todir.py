"""Run a scenario into a run directory: the one path ``loadtest run`` and every study's run take.

Order matters for "no recorded data is lost": before anything connects the output location is
checked (:func:`~loadtest.rundir.writer.prepare_run_dir`), and the backend's preflight runs
(the file-descriptor limit, :func:`~loadtest.engine.limits.ensure_open_files`; Ray installed).
requests.csv is streamed while the run goes on; after the run the directory is written with
SIGINT/SIGTERM ignored (a second Ctrl-C cannot leave it without summary.json). An unreachable
target or Ray cluster (exit 3) leaves a minimal run directory (summary.json with ``verdict:
unreachable`` and the reason) so CI keeps a record. A disk that fills during the run ends in
:class:`~loadtest.errors.OutputError` (exit 74) once everything that could be written is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtest.console import LiveProgress
from loadtest.engine.openloop import arrivals_for
from loadtest.engine.tokenizer import read_tokenizer
from loadtest.errors import LoadtestError, TargetUnreachable, WorkersUnavailable, redact
from loadtest.live.exports import LiveExports
from loadtest.rundir.noresult import record_interrupt
from loadtest.rundir.writer import (
    RequestCsv,
    default_run_dir,
    prepare_run_dir,
    signals_ignored,
    write_no_result,
    write_run_dir,
)
from loadtest.runner.coordinator import backend_for, live_exports, run, scenario_as_run
from loadtest.runner.options import RunOptions
from loadtest.scenario import dump_scenario, fingerprint

__all__ = ["preflight", "run_to_dir"]


def preflight(sc: Any, options: RunOptions, *, apply: bool = True) -> list[str]:
    """Every check of the scenario a run makes before it connects, beyond the model's own.

    ``loadtest validate`` calls it with ``apply=False``, :func:`run_to_dir` with ``apply=True``,
    so the two accept and refuse the same scenarios with the same message: the trace file is
    read and parsed (``load.trace``), the CA file loaded, and the backend's own checks run (the
    file-descriptor limit against each worker's share of the peak connections). Raises
    BadInput (exit 2); returns note lines for stderr.
    """
    if sc.load.open_loop and sc.load.trace is not None:
        arrivals_for(sc.load)  # parses the whole trace at once; the schedule itself is lazy
    options.tls.check()
    if sc.target.tokenizer is not None:
        read_tokenizer(sc.target.tokenizer)  # a missing or broken tokenizer: exit 2, before anything connects
    return backend_for(options.backend).preflight(scenario_as_run(sc, options), options, apply=apply)


def run_to_dir(sc: Any, options: RunOptions) -> dict[str, Any]:
    """Run ``sc`` into ``options.out`` (default: a fresh ``reports/<name>-<time>/``), write the
    run directory (and report.html unless ``options.html`` is False); returns the summary.

    Raises BadInput (exit 2) before anything connects when the directory cannot be written or
    is not empty, or the machine cannot open the connections the load needs.
    """
    sc = scenario_as_run(sc, options)
    run_dir = options.out if options.out is not None else default_run_dir(sc.name)
    try:
        for note in preflight(sc, options):
            options.warn(note)
        exports = live_exports(sc, options, run_id=run_dir.name)
        exports.open()  # /metrics cannot bind: exit 2 before the directory is claimed or anything connects
        try:
            summary = _run_into(run_dir, sc, options, exports)
        except BaseException:
            exports.close(linger=False)
            raise
    except KeyboardInterrupt:
        # a Ctrl-C before the run's own signal relay took over (start-up: Ray, the workers, the
        # mock): the run still ends with a summary.json saying so (exit 4), never an empty directory
        _record_interrupt(run_dir, sc, options)
        raise
    exports.close()  # /metrics stays up for the linger, so a scraper sees the final values
    return summary


def _run_into(run_dir: Path, sc: Any, options: RunOptions, exports: LiveExports) -> dict[str, Any]:
    prepare_run_dir(run_dir)
    sink = RequestCsv(run_dir, secret=options.api_key)
    try:
        with LiveProgress(quiet=options.quiet or options.progress is not None) as live:
            result = run(sc, options.replace(progress=options.progress or live), sink=sink, exports=exports)
    except (TargetUnreachable, WorkersUnavailable) as exc:
        # nothing was measured (the target, or the Ray cluster, could not be reached), but CI
        # keeps the run directory: every exit 3 leaves a summary.json saying why
        sink.discard()
        with signals_ignored():
            write_no_result(run_dir, verdict="unreachable", scenario=sc.name,
                            target=redact(sc.target.url, options.api_key), reason=redact(str(exc), options.api_key),
                            scenario_yaml=dump_scenario(sc), fingerprint=fingerprint(sc))
        raise
    except BaseException:
        sink.finish()  # a bug or a hard stop: keep every request recorded so far
        raise
    with signals_ignored():
        summary = write_run_dir(run_dir, result, requests_csv=sink, scenario_yaml=dump_scenario(sc),
                                fingerprint=fingerprint(sc), slo_limits=dict(sc.slo), secret=options.api_key)
        rows = exports.target_rows(result.started_at_epoch_ns)
        if rows is not None:
            from loadtest.rundir.targetmetrics import write_target_metrics

            write_target_metrics(run_dir, rows)
        if options.html:
            try:
                from loadtest.report.html import build_report  # pandas and plotly: only for a report

                build_report([run_dir])
            except LoadtestError as exc:
                options.warn(f"warning: {run_dir}/report.html not written: {exc}")
    return summary


def _record_interrupt(run_dir: Path, sc: Any, options: RunOptions) -> None:
    record_interrupt(run_dir, scenario=sc.name, target=sc.target.url, api_key=options.api_key,
                     scenario_yaml=dump_scenario(sc), fingerprint=fingerprint(sc))
