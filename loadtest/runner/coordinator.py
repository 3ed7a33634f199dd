"""The coordinator: runs a scenario's workers on a backend, merges what they measured exactly.

:func:`run` is the library's entry point (``loadtest.run(scenario, options)``, as uvicorn's
``run()`` over its ``Config``). It starts the embedded mock in its own process when the target
is ``mock`` (so the mock does not share the generator's CPU), opens the backend's session (a
Ray cluster; nothing for local processes), lets the backend resolve the worker count, and drives
the backend's :class:`~loadtest.runner.fleet.Fleet` on a uvloop event loop: launch, one common
start, the live line once a second, the signal relay (first signal: drain; second: stop at
once), close, collect. The workers' reports are merged exactly into one
:class:`~loadtest.engine.result.RunResult`, even when interrupted or when a worker was lost
(``lost``: verdict incomplete, exit 5). Which backend runs the workers changes nothing here.
"""

from __future__ import annotations

import contextlib
import importlib
import secrets
import time
from collections.abc import Iterator
from typing import Any

from loadtest.engine.connection import target_url
from loadtest.engine.loop import run_loop
from loadtest.engine.result import RunResult
from loadtest.engine.selfwatch import StealMeter
from loadtest.engine.tokenizer import read_tokenizer
from loadtest.engine.worker import WorkerReport, WorkerSpec, wall_ms
from loadtest.errors import redact
from loadtest.live.exports import LiveExports
from loadtest.metrics.figures import Figures
from loadtest.mock.process import MockProcess, model_args
from loadtest.runner.fleet import Backend, Fleet, RowSink
from loadtest.runner.options import RunOptions
from loadtest.runner.signals import SignalRelay

__all__ = ["BACKEND_MODULES", "STEAL_NOTE_PERCENT", "advertised_url", "backend_for", "live_exports",
           "merge_reports", "outward_address", "run", "scenario_as_run", "summarize"]

#: each backend's module and the object in it that makes its fleets (a new backend: one line here)
BACKEND_MODULES = {
    "process": ("loadtest.runner.processes", "PROCESSES"),
    "ray": ("loadtest.runner.rayactors", "RAY"),
}

#: from this much stolen CPU time on, a saturated run says so (it may be the machine, not the load)
STEAL_NOTE_PERCENT = 5.0


def backend_for(name: str) -> Backend:
    """The backend called ``name`` (imported on first use: Ray is optional)."""
    module, attr = BACKEND_MODULES[name]
    backend: Backend = getattr(importlib.import_module(module), attr)
    return backend


def scenario_as_run(sc: Any, options: RunOptions) -> Any:
    """``sc`` with what the options change about it (``--workers``), as ``scenario.yaml`` records it."""
    if options.workers is None or options.workers == sc.load.workers:
        return sc
    return sc.model_copy(update={"load": sc.load.model_copy(update={"workers": options.workers})})


def run(sc: Any, options: RunOptions | None = None, *, sink: RowSink | None = None,
        exports: LiveExports | None = None) -> RunResult:
    """Run ``sc`` (a validated Scenario) to completion, interruption, or an error.

    ``sink`` gets every request record (the run directory's ``requests.csv``: a ``RequestCsv``
    also collects the rows of workers elsewhere). Raises TargetUnreachable (exit 3) when no
    connection could be made, WorkersUnavailable (exit 3) when the backend cannot place the
    workers; a signal ends the run early with ``interrupted`` set, never with an exception.
    ``host_steal_percent``: CPU time the hypervisor took from this host meanwhile.

    ``exports``: the run's live outputs, opened by the caller (``run_to_dir``: they must bind
    before the run directory is claimed) and closed by it after the directory is written;
    None: the scenario's ``outputs``, opened and closed here.
    """
    options = options or RunOptions()
    sc = scenario_as_run(sc, options)
    own = exports is None
    if exports is None:
        exports = live_exports(sc, options, run_id=secrets.token_hex(6))
        exports.open()
    try:
        result = _run_measured(sc, options, sink, exports)
    finally:
        if own:
            exports.close()
    return result


def live_exports(sc: Any, options: RunOptions, *, run_id: str) -> LiveExports:
    """The live outputs of ``sc``'s ``outputs`` section (flags already applied), not yet open."""
    return LiveExports(sc.outputs, run=sc.name, run_id=run_id, tokenized=sc.target.tokenizer is not None,
                       warn=options.warn)


def _run_measured(sc: Any, options: RunOptions, sink: RowSink | None, exports: LiveExports) -> RunResult:
    steal = StealMeter()
    with _target(sc) as (url, mock_seed):
        result = _run_backend(sc, url, options, sink, exports)
        exports.finish(result)  # while the embedded mock still serves: the last scrape reaches it
    result.live = exports.status()
    result.mock_seed = mock_seed
    result.host_steal_percent = steal.percent()
    if result.saturation and result.host_steal_percent is not None and result.host_steal_percent >= STEAL_NOTE_PERCENT:
        result.saturation.append(f"the hypervisor took {result.host_steal_percent:g}% of this host's CPU time "
                                 "(steal): a shared machine, not necessarily the load")  # fmt: skip
    return result


@contextlib.contextmanager
def _target(sc: Any) -> Iterator[tuple[str, int | None]]:
    """The target's URL; for ``mock``, an embedded mock in its own process for the block (a fresh
    seed per run unless ``mock.seed`` is set, issue 13: N runs are N independent samples)."""
    if sc.target.url != "mock":
        yield sc.target.url, None
        return
    m = sc.mock
    faults = m.faults.spec if m.faults.active else None
    mock_seed = sc.mock_seed if sc.mock_seed is not None else secrets.randbits(31)
    with MockProcess(model_args(m.model, seed=mock_seed, faults=faults), host=m.host) as mock_url:
        yield advertised_url(mock_url, m.advertise or m.host), mock_seed


def advertised_url(url: str, host: str) -> str:
    """``url`` (what the mock printed) with the host workers are to use: ``host`` itself, or for a
    wildcard bind (0.0.0.0, ::) the address of this host's outward interface."""
    from urllib.parse import urlsplit, urlunsplit

    if host in ("0.0.0.0", "::", ""):
        host = outward_address()
    parts = urlsplit(url)
    netloc = f"[{host}]:{parts.port}" if ":" in host else f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def outward_address() -> str:
    """The address of the interface this host would use to reach another (no packet is sent: a
    UDP socket's connect only picks the route); 127.0.0.1 when there is no route."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            address: str = s.getsockname()[0]
        except OSError:
            address = "127.0.0.1"
    return address


def _run_backend(sc: Any, url: str, options: RunOptions, sink: RowSink | None, exports: LiveExports) -> RunResult:
    backend = backend_for(options.backend)
    with backend.session(sc, options):
        n = backend.resolve_workers(sc, options.workers_for(sc))
        tokenizer = None if sc.target.tokenizer is None else read_tokenizer(sc.target.tokenizer)
        specs = [WorkerSpec(scenario=sc, url=url, api_key=options.api_key, tls=options.tls, index=i, workers=n,
                            tokenizer_json=tokenizer) for i in range(n)]
        reports, lost, interrupted = run_loop(_coordinate(backend, specs, sink, options, exports))
    result = merge_reports(reports, scenario=sc, target=redact(target_url(url, options.api_key), options.api_key),
                           interrupted=interrupted, insecure=options.tls.unverified(url))
    result.lost = lost
    return result


async def _coordinate(backend: Backend, specs: list[WorkerSpec], sink: RowSink | None,
                      options: RunOptions, exports: LiveExports) -> tuple[list[WorkerReport], list[str], bool]:
    """One fleet under the signal relay: launch, a common start, the live line and the live
    outputs once a second, close, collect."""
    fleet: Fleet = backend.fleet(specs, sink=sink, options=options)
    relay = SignalRelay(fleet)
    progress = options.progress

    def on_second() -> None:
        line = fleet.progress()
        if progress is not None:
            progress(line)
        exports.second([v.partial for v in fleet.views], line)

    try:
        with relay.installed():
            await fleet.launch()
            fleet.begin(time.time_ns() + round(fleet.start_delay_s * 1e9))
            await fleet.wait(on_second if progress is not None or exports.active else None)
    finally:
        await fleet.close()
    exports.workers_done([v.final().figures for v in fleet.views])
    reports, lost = fleet.collect()
    return reports, lost, relay.seen > 0


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
        started_at=wall_ms(min(started) if started else 0), started_at_epoch_ns=min(started) if started else 0,
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
