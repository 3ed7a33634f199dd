"""The coordinator: runs a scenario's workers, merges what they measured, writes the run.

:func:`run` is the library's entry point (what ``loadtest run`` calls, as uvicorn's ``run()``
over its ``Config``): it starts the embedded mock in its own process when the target is
``mock`` (so the mock does not share the generator's CPU), runs the worker on a uvloop
event loop (a loop factory, no global policy), owns SIGINT/SIGTERM (first signal: the
workers stop starting work and drain; second: they stop at once) and merges the workers'
reports exactly into one :class:`~loadtest.engine.result.RunResult`, even when interrupted.
One process today is one coordinator and one in-process worker; the seam is plain data
(:class:`~loadtest.engine.worker.WorkerSpec` in, :class:`~loadtest.engine.worker.WorkerReport`
out).

:func:`run_to_dir` runs a scenario into a run directory: the one path `loadtest run` and
each sweep step take.

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

import asyncio
import contextlib
import secrets
import signal
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop

from loadtest.clock import Clock
from loadtest.console import LiveProgress
from loadtest.engine.connection import target_url
from loadtest.engine.limits import ensure_open_files
from loadtest.engine.openloop import arrivals_for
from loadtest.engine.result import Progress, RunResult
from loadtest.engine.selfwatch import StealMeter
from loadtest.engine.worker import Worker, WorkerReport, WorkerSpec, wall_ms
from loadtest.errors import LoadtestError, TargetUnreachable, WorkersUnavailable, redact
from loadtest.metrics.collector import RequestRecord
from loadtest.metrics.figures import Figures
from loadtest.mock.process import MockProcess, model_args
from loadtest.rundir.writer import (
    RequestCsv,
    prepare_run_dir,
    signals_ignored,
    write_run_dir,
    write_unreachable,
)
from loadtest.scenario import dump_scenario, fingerprint

__all__ = ["merge_reports", "preflight", "run", "run_to_dir", "summarize", "worker_count"]


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
    # each worker process holds its share of the connections (and inherits the raised limit)
    workers = worker_count(sc)
    note = ensure_open_files(-(-sc.load.peak_connections // workers), apply=apply)
    return [note] if note else []


def worker_count(sc: Any) -> int:
    """``load.workers`` resolved on this machine (``auto``: see LoadConfig.worker_count)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    url = sc.target.url
    local = url == "mock" or any(h in url for h in ("://127.", "://localhost", "://[::1]"))
    n: int = sc.load.worker_count(cores=cores, local_target=local)
    return n


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
    ca_file: str | None = None,
    backend: str = "process",
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Run ``sc``, write ``run_dir`` (and report.html when ``html``); returns the summary.

    Raises BadInput (exit 2) before anything connects when ``run_dir`` cannot be written or
    is not empty, or the machine cannot open the connections the load needs (``backend="ray"``:
    Ray is not installed; each actor checks its own host's limit).
    """
    if backend == "ray":
        from loadtest.rayworkers import require_ray

        require_ray()
    else:
        for note in preflight(sc):
            warn(note)
    prepare_run_dir(run_dir)
    sink = RequestCsv(run_dir, secret=api_key)
    try:
        with LiveProgress(quiet=quiet) as live:
            result = run(sc, api_key=api_key, ssl_context=ssl_context, insecure=insecure,
                         progress=live, request_sink=sink, ca_file=ca_file, backend=backend,
                         workers=sc.load.workers if backend == "ray" else worker_count(sc), ray_address=ray_address)
    except WorkersUnavailable:
        sink.discard()  # nothing ran
        raise
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
                from loadtest.report.html import (
                    build_report,  # pandas and plotly: only when a report is wanted
                )

                build_report([run_dir])
            except LoadtestError as exc:
                warn(f"warning: {run_dir}/report.html not written: {exc}")
    return summary


def run(
    sc: Any,
    *,
    api_key: str | None = None,
    ssl_context: ssl.SSLContext | bool | None = None,
    insecure: bool = False,
    progress: Callable[[Progress], None] | None = None,
    request_sink: Callable[[RequestRecord, int], None] | None = None,
    clock: Clock | None = None,
    workers: int | str = 1,
    ca_file: str | None = None,
    backend: str = "process",
    ray_address: str | None = None,
) -> RunResult:
    """Run ``sc`` (a validated Scenario) to completion, interruption, or an error.

    ``workers`` > 1: that many worker processes on this host, each with its shard of the load
    (``ca_file``/``insecure`` rebuild the TLS context in each; a ``RequestCsv`` sink collects
    their rows). ``backend="ray"``: ``workers`` Ray actors (a number or ``auto``, the cluster's
    CPUs minus one) on the cluster at ``ray_address`` (or RAY_ADDRESS; none: a local Ray started
    and stopped here), see :mod:`loadtest.rayworkers`. Raises TargetUnreachable (exit 3) when
    no connection could be made, WorkersUnavailable (exit 3) when Ray cannot place the workers;
    a signal ends the run early with ``interrupted`` set, never with an exception.
    ``host_steal_percent``: CPU time the hypervisor took from this host meanwhile.
    """
    steal = StealMeter()
    result = _run(sc, api_key=api_key, ssl_context=ssl_context, insecure=insecure, progress=progress,
                  request_sink=request_sink, clock=clock, workers=workers, ca_file=ca_file, backend=backend,
                  ray_address=ray_address)  # fmt: skip
    result.host_steal_percent = steal.percent()
    if result.saturation and result.host_steal_percent is not None and result.host_steal_percent >= STEAL_NOTE_PERCENT:
        result.saturation.append(f"the hypervisor took {result.host_steal_percent:g}% of this host's CPU time "
                                 "(steal): a shared machine, not necessarily the load")  # fmt: skip
    return result


#: from this much stolen CPU time on, a saturated run says so (it may be the machine, not the load)
STEAL_NOTE_PERCENT = 5.0


def _run(sc: Any, *, api_key: str | None, ssl_context: ssl.SSLContext | bool | None, insecure: bool,
         progress: Callable[[Progress], None] | None, request_sink: Callable[[RequestRecord, int], None] | None,
         clock: Clock | None, workers: int | str, ca_file: str | None, backend: str,
         ray_address: str | None) -> RunResult:  # fmt: skip
    url = sc.target.url

    def go(target: str) -> RunResult:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            if backend == "ray":
                return _run_ray(runner, sc, target, api_key=api_key, ca_file=ca_file, insecure=insecure,
                                workers=workers, ray_address=ray_address, progress=progress,
                                request_sink=request_sink)
            n = workers if isinstance(workers, int) else worker_count(sc.model_copy(
                update={"load": sc.load.model_copy(update={"workers": workers})}))
            if n > 1:
                specs = [WorkerSpec(scenario=sc, url=target, api_key=api_key, ca_file=ca_file, insecure=insecure,
                                    index=i, workers=n) for i in range(n)]
                return runner.run(_coordinate_processes(specs, progress=progress, request_sink=request_sink,
                                                        insecure=insecure))
            spec = WorkerSpec(scenario=sc, url=target, api_key=api_key)
            return runner.run(_coordinate(spec, ssl_context=ssl_context, insecure=insecure, progress=progress,
                                          request_sink=request_sink, clock=clock))

    if url != "mock":
        return go(url)
    m = sc.mock
    faults = m.faults.spec if m.faults.active else None
    # a fresh seed per run unless mock.seed is set (issue 13): N runs are N independent samples
    mock_seed = sc.mock_seed if sc.mock_seed is not None else secrets.randbits(31)
    with MockProcess(model_args(m.model, seed=mock_seed, faults=faults)) as mock_url:
        result = go(mock_url)
    result.mock_seed = mock_seed
    return result


async def _coordinate(spec: WorkerSpec, *, ssl_context: ssl.SSLContext | bool | None, insecure: bool,
                      progress: Callable[[Progress], None] | None,
                      request_sink: Callable[[RequestRecord, int], None] | None, clock: Clock | None) -> RunResult:
    """One in-process worker under the coordinator's signal handling."""
    worker = Worker(spec, ssl_context=ssl_context, clock=clock, request_sink=request_sink, on_progress=progress)
    signals_seen = 0

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        worker.stop() if signals_seen == 1 else worker.abort()

    with _signals(on_signal):
        report = await worker.run()
    return merge_reports([report], scenario=spec.scenario, target=redact(target_url(spec.url, spec.api_key),
                                                                            spec.api_key),
                         interrupted=signals_seen > 0, insecure=insecure)


#: after every worker process is set up, t0 is this far ahead: time for the start to reach them
_START_DELAY_S = 0.25


async def _coordinate_processes(specs: list[WorkerSpec], *, progress: Callable[[Progress], None] | None,
                                request_sink: Callable[[RequestRecord, int], None] | None,
                                insecure: bool) -> RunResult:
    """Several worker processes under the coordinator's signal handling; their reports merged."""
    from loadtest.workerproc import Children

    sink = request_sink if isinstance(request_sink, RequestCsv) else None
    spec = specs[0]
    children = Children(specs, run_dir=None if sink is None else sink.path.parent, secret=spec.api_key)
    signals_seen = 0

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        children.stop() if signals_seen == 1 else children.abort()

    try:
        with _signals(on_signal):
            reports = await children.run(start_delay_s=_START_DELAY_S, progress=progress)
    finally:
        if sink is not None:
            for s in specs:  # every row a worker wrote, a lost worker's included
                sink.absorb(sink.path.parent / f".requests-w{s.index}.part")
    errors = children.errors()
    if not reports:
        code, message = errors[0]
        raise TargetUnreachable(message) if code == TargetUnreachable.exit_code else LoadtestError(message)
    result = merge_reports(reports, scenario=spec.scenario,
                           target=redact(target_url(spec.url, spec.api_key), spec.api_key),
                           interrupted=signals_seen > 0, insecure=insecure)
    result.lost = children.lost()
    return result


def _run_ray(runner: asyncio.Runner, sc: Any, target: str, *, api_key: str | None, ca_file: str | None,
             insecure: bool, workers: int | str, ray_address: str | None,
             progress: Callable[[Progress], None] | None,
             request_sink: Callable[[RequestRecord, int], None] | None) -> RunResult:
    """Ray actors under the coordinator's signal handling; their reports merged."""
    from loadtest.rayworkers import RayWorkers, ray_session, resolve_workers

    with ray_session(ray_address, workers=workers):
        n = resolve_workers(sc, workers)
        specs = [WorkerSpec(scenario=sc, url=target, api_key=api_key, ca_file=ca_file, insecure=insecure,
                            index=i, workers=n) for i in range(n)]
        actors = RayWorkers(specs, sink=request_sink if isinstance(request_sink, RequestCsv) else None,
                            secret=api_key)
        signals_seen = 0

        def on_signal() -> None:
            nonlocal signals_seen
            signals_seen += 1
            actors.stop() if signals_seen == 1 else actors.abort()

        async def drive() -> list[WorkerReport]:
            with _signals(on_signal):
                return await actors.run(progress=progress)

        reports = runner.run(drive())
    if not reports:
        code, message = actors.errors()[0]
        raise TargetUnreachable(message) if code == TargetUnreachable.exit_code else LoadtestError(message)
    result = merge_reports(reports, scenario=sc, target=redact(target_url(target, api_key), api_key),
                           interrupted=signals_seen > 0, insecure=insecure)
    result.lost = actors.lost()
    return result


@contextlib.contextmanager
def _signals(handler: Callable[[], None]) -> Any:
    """SIGINT/SIGTERM call ``handler`` on the running loop; the previous handlers come back after
    (``remove_signal_handler`` alone would leave the default: the CLI's guard, loadtest.entry)."""
    loop = asyncio.get_running_loop()
    installed: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handler)
            installed[sig] = previous
    try:
        yield
    finally:
        for sig, previous in installed.items():
            loop.remove_signal_handler(sig)
            if previous is not None:
                signal.signal(sig, previous)


def merge_reports(reports: list[WorkerReport], *, scenario: Any, target: str, interrupted: bool,
                  insecure: bool) -> RunResult:
    """The run, from its workers' reports: figures added exactly, rates over the one window,
    the generator's health per worker (any saturated worker flags the run, naming it)."""
    warmup_s = float(scenario.load.warmup_s)
    ends = [r.figures.window_end_s for r in reports if r.figures.counts]  # a worker lost before its first tick has none
    figures = Figures.merge([r.figures for r in reports], warmup_s=warmup_s,
                            window_end_s=min(ends) if ends else warmup_s)
    window_s = figures.window_s
    offered = achieved = None
    if figures.offered:
        offered = figures.offered / window_s if window_s else 0.0
        achieved = figures.sent_in_window / window_s if window_s else 0.0
    several = len(reports) > 1
    reasons = [f"worker {r.index}: {why}" if several else why for r in reports for why in r.health.saturation]
    started = [r.started_at_epoch_ns for r in reports if r.started_at_epoch_ns]  # a lost worker's is 0
    return RunResult(
        scenario=scenario, figures=figures, target=target,
        started_at=wall_ms(min(started) if started else 0),
        duration_s=max(r.duration_s for r in reports), measure_s=window_s,
        drain_s=max(r.drain_s for r in reports), interrupted=interrupted,
        cpu_percents=[p for r in reports for p in r.cpu_percents], saturation=reasons,
        offered_rate=offered, achieved_rate=achieved, insecure=insecure, workers=[r.health for r in reports],
    )


def summarize(result: RunResult) -> dict[str, Any]:
    """summary.json of a result (the same dict ``run_to_dir`` writes)."""
    from loadtest.rundir.writer import build_summary
    from loadtest.scenario import fingerprint as fp

    return build_summary(result, fingerprint=fp(result.scenario), slo_limits=dict(result.scenario.slo))
