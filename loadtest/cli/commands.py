"""The commands that run or serve: ``run``, ``validate``, ``report``, ``sweep`` and ``mock``.
Options in (the shared run flags: :mod:`loadtest.cli.options`), library calls, exit codes out."""

from __future__ import annotations

import math
import signal
from pathlib import Path
from typing import Any

import click

from loadtest.cli.options import RunFlags, duration_flag, load, run_flags
from loadtest.cli.types import DistType, JsonType
from loadtest.errors import BadInput
from loadtest.mock.faults import parse_faults
from loadtest.mock.latency import Dist, MockModel

__all__ = ["mock", "report", "run", "sweep", "validate"]

#: ``loadtest mock`` reads accepted keys from this variable too (comma-separated)
MOCK_KEYS_ENV = "LOADTEST_MOCK_API_KEYS"


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0 = any free port.")
@click.option("--ttft-ms", type=DistType(), default="100", show_default=True, help="Time to first token.")
@click.option("--gap-ms", type=DistType(), default="10", show_default=True, help="Gap between chunks.")
@click.option("--chunks", type=DistType(), default="20", show_default=True, help="Chunks per answer.")
@click.option("--capacity", type=click.IntRange(min=1), default=None, help="Streams generating at once (others queue).")
@click.option("--gap-slowdown", type=click.FloatRange(min=0), default=None,
              help="Gap slowdown per extra active stream (default 0.005 with --capacity, else 0).")
@click.option("--prefill-ms-per-kchar", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Extra TTFT per 1,000 prompt characters (prefill).")
@click.option("--words-per-chunk", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Words in each chunk (a chunk is not a token).")
@click.option("--turn-ms", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Extra TTFT per earlier turn of the conversation a gen continues.")
@click.option("--api-key", "api_keys", multiple=True,
              help="Accepted key (repeatable; visible in `ps`: prefer --api-keys-file or "
                   f"${MOCK_KEYS_ENV}). None of the three = accept any.")
@click.option("--api-keys-file", type=click.Path(dir_okay=False),
              help="Accepted keys, one per line (blank and # lines ignored).")
@click.option("--exit-with-parent", is_flag=True,
              help="Exit when stdin reaches EOF (the parent died or closed it); used by the embedded mock.")
@click.option("--faults", type=JsonType(), default=None, help="Fault model as JSON (docs/mock.md).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="PEM certificate: serve wss://.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key of --tls-cert.")
def mock(host: str, port: int, ttft_ms: Dist, gap_ms: Dist, chunks: Dist, capacity: int | None,
         gap_slowdown: float | None, prefill_ms_per_kchar: float, words_per_chunk: int, turn_ms: float,
         api_keys: tuple[str, ...], api_keys_file: str | None, exit_with_parent: bool, faults: Any, seed: int,
         tls_cert: str | None, tls_key: str | None) -> None:
    """Serve the embedded mock proxy at ws://HOST:PORT/v2/chat (wss:// with --tls-cert)
    and print that URL; when it stops (Ctrl-C, SIGTERM), print how many streams completed and
    how many their client abandoned. Accepted keys: --api-key, --api-keys-file and the
    comma-separated variable LOADTEST_MOCK_API_KEYS, together; none = any key is accepted."""
    import os

    from loadtest.engine.loop import run_loop
    from loadtest.mock.process import read_key_file, serve_forever
    from loadtest.mock.server import MockConfig

    keys = set(api_keys)
    keys.update(k.strip() for k in os.environ.get(MOCK_KEYS_ENV, "").split(",") if k.strip())
    if api_keys_file:
        try:
            keys.update(read_key_file(api_keys_file))
        except BadInput as exc:
            raise click.BadParameter(str(exc), param_hint="--api-keys-file") from None
    try:
        config = MockConfig(
            model=MockModel(ttft_ms=ttft_ms, gap_ms=gap_ms, chunks=chunks, capacity=capacity,
                            gap_slowdown=gap_slowdown, prefill_ms_per_kchar=prefill_ms_per_kchar,
                            words_per_chunk=words_per_chunk, turn_ms=turn_ms),
            faults=parse_faults(faults),
            api_keys=frozenset(keys),
            seed=seed,
        )
    except BadInput as exc:
        raise click.UsageError(str(exc)) from exc
    ssl_ctx = None
    if tls_cert or tls_key:
        import ssl

        if not tls_cert:
            raise click.UsageError("--tls-key needs --tls-cert")
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ssl_ctx.load_cert_chain(tls_cert, tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise click.BadParameter(f"cannot load the certificate/key: {exc}", param_hint="--tls-cert") from None
    if exit_with_parent:
        # the embedded mock's life is its parent's to end (terminate, death signal, stdin EOF):
        # a Ctrl-C sent to the terminal's process group must not drop the streams the parent
        # is still draining after its own first Ctrl-C
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        run_loop(serve_forever(config, host, port, ssl_context=ssl_ctx, exit_with_parent=exit_with_parent))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc


@click.command()
@click.argument("scenario_file", type=click.Path(dir_okay=False))
@run_flags
def validate(scenario_file: str, flags: RunFlags) -> int:
    """Check SCENARIO_FILE and print the resolved scenario (exit 2 if it is wrong)."""
    from loadtest.runner.todir import preflight
    from loadtest.scenario import dump_scenario

    sc = load(scenario_file)
    notes = preflight(sc, flags.options(sc), apply=False)  # what run checks before it connects
    click.echo(dump_scenario(sc), nl=False)
    for note in notes:
        click.echo(note, err=True)
    click.echo(f"# {scenario_file}: valid", err=True)
    return 0


@click.command()
@click.argument("scenario_file", type=click.Path(dir_okay=False))
@click.option("--target", help="ws://… or wss://… URL, or 'mock' (overrides target.url).")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default reports/<name>-<time>).")
@click.option("--duration", help="Total duration, e.g. 30s, 2m (overrides load.duration).")
@click.option("--concurrency", type=click.IntRange(min=1), help="Closed-loop users.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Open-loop arrivals per second.")
@click.option("--requests", type=click.IntRange(min=1), help="Stop after this many gen requests.")
@click.option("--seed", type=int, help="Seed for schedules, prompts and think times.")
@run_flags
@click.option("--no-html", is_flag=True, help="Do not write report.html.")
@click.option("-q", "--quiet", is_flag=True, help="No live progress or table; only warnings and the verdict.")
def run(scenario_file: str, target: str | None, out: str | None, duration: str | None, concurrency: int | None,
        rate: float | None, requests: int | None, seed: int | None, flags: RunFlags, no_html: bool,
        quiet: bool) -> int:
    """Run SCENARIO_FILE and write a run directory. Exit 0 passed, 1 an SLO failed,
    2 bad input, 3 target unreachable, 4 interrupted, 5 a worker was lost."""
    from loadtest.rundir.noresult import record_interrupt  # first: light, and needed if a Ctrl-C comes now

    run_dir = Path(out) if out else None
    try:
        from loadtest.console import print_summary
        from loadtest.rundir.writer import default_run_dir
        from loadtest.runner.todir import run_to_dir

        overrides = flags.overrides(target_url=target, duration_s=duration_flag(duration, "--duration"),
                                    concurrency=concurrency, rate_per_s=rate, requests=requests, seed=seed, out=out)
        sc = load(scenario_file, overrides)
        run_dir = run_dir or default_run_dir(sc.name)
        summary = run_to_dir(sc, flags.options(sc, out=run_dir, html=not no_html, quiet=quiet))
    except KeyboardInterrupt:
        # before the scenario was loaded (run_to_dir records its own): the --out directory still
        # gets a summary.json saying the run was interrupted (exit 4)
        if run_dir is not None:
            record_interrupt(run_dir, scenario=Path(scenario_file).stem)
            written = _finished_exit_code(run_dir)
            if written is not None:  # the Ctrl-C came while the finished run was being written
                click.echo("Interrupted after the run directory was written: its verdict stands.", err=True)
                return written
        raise
    print_summary(summary, str(run_dir), quiet=quiet)
    code: int = summary["exit_code"]  # one rule: summary.json says what the process returns
    return code


def _finished_exit_code(run_dir: Path) -> int | None:
    """The exit code summary.json records for a run that finished, else None (no summary, or
    one of nothing measured: the one reader refuses those)."""
    if not (run_dir / "summary.json").exists():
        return None
    from loadtest.rundir import read_summary

    try:
        return read_summary(run_dir / "summary.json").exit_code
    except BadInput:
        return None


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), help="Output HTML (required for several runs).")
def report(run_dirs: tuple[str, ...], out: str | None) -> int:
    """Rebuild report.html from one run directory, or compare several in one report."""
    from pathlib import Path

    from loadtest.report.html import build_report
    from loadtest.rundir.writer import prepare_output_file

    if len(run_dirs) > 1 and not out:
        raise click.UsageError("--out FILE is required when comparing several runs")
    if out:
        prepare_output_file(Path(out), what="report")
    path = build_report([Path(d) for d in run_dirs], Path(out) if out else None)
    click.echo(str(path))
    return 0


@click.command()
@click.argument("scenario_file", type=click.Path(dir_okay=False))
@click.option("--levels", help="Closed loop: users per step, e.g. 5,10,20.")
@click.option("--rates", help="Open loop: arrivals per second per step, e.g. 10,20,40.")
@click.option("--start", type=float, help="Geometric plan: the first level (with --max).")
@click.option("--factor", type=float, default=2.0, show_default=True, help="Geometric plan: ratio between levels.")
@click.option("--max", "max_load", type=float, help="Geometric plan: the highest level allowed.")
@click.option("--refine", type=click.IntRange(0, 50), default=20, show_default=True,
              help="At most this many bisection steps between the last passing and the first failing level "
                   "(it stops sooner at adjacent users, or rates within 2 %).")
@click.option("--replicates", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Steps per level at the boundary (and where an SLO margin is within noise).")
@click.option("--pass-share", type=click.FloatRange(0.5, 1.0), default=1.0, show_default=True,
              help="Share of a level's replicates that must pass for the level to pass.")
@click.option("--warmup", help="Warm-up of each step (default: the scenario's, else max(2s, 10 % of the step)).")
@click.option("--budget", help="Cap on the sweep's total time, e.g. 30m: no step starts that would end after it.")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Steps that may be run again, in all, because the generator saturated (often the machine, "
                   "not the load); the spoiled step stays as step-NN-….spoiled-K.")
@click.option("--continue-after-fail", is_flag=True, help="Run every level, not only up to the first failure.")
@click.option("--step-duration", help="Duration of each step, e.g. 30s (overrides load.duration).")
@click.option("--out", type=click.Path(file_okay=False), help="Sweep directory (default reports/<name>-sweep-<time>).")
@click.option("--target", help="ws://… or wss://… URL, or 'mock' (overrides target.url).")
@click.option("--seed", type=int, help="Seed for schedules, prompts and think times.")
@run_flags
@click.option("--no-html", is_flag=True, help="Write neither the steps' report.html nor sweep.html.")
@click.option("-q", "--quiet", is_flag=True, help="No live progress; only the step lines and the answer.")
def sweep(scenario_file: str, levels: str | None, rates: str | None, start: float | None, factor: float,
          max_load: float | None, refine: int, replicates: int, pass_share: float, warmup: str | None,
          budget: str | None, retries: int, continue_after_fail: bool, step_duration: str | None,
          out: str | None, target: str | None, seed: int | None, flags: RunFlags, no_html: bool,
          quiet: bool) -> int:
    """Find the highest load SCENARIO_FILE's target sustains within its SLOs: one run per level
    (users in closed loop, arrivals/s in open loop), then OUT/sweep.json and OUT/sweep.html.
    Exit 0 an answer, 1 no level passed (or below min_throughput_rps), 2 bad input, 3 unreachable,
    4 interrupted, 6 inconclusive (generator saturated or budget spent before a failing level)."""
    import os

    from loadtest.engine.limits import ensure_open_files
    from loadtest.rundir.writer import default_run_dir, prepare_output_dir
    from loadtest.studies.sweep import answer_line, parse_level_list, prepare_sweep, run_sweep, step_line

    if levels and rates:
        raise click.UsageError("give --levels (closed loop) or --rates (open loop), not both")
    listed = levels or rates
    overrides = flags.overrides(target_url=target, duration_s=duration_flag(step_duration, "--step-duration"),
                                seed=seed)
    sc, plan = prepare_sweep(
        scenario_file, overrides=overrides, environ=os.environ,
        levels=None if listed is None else parse_level_list(listed, flag="--rates" if rates else "--levels"),
        start=start, factor=factor, max_load=max_load, rates_given=bool(rates), refine=refine,
        continue_after_fail=continue_after_fail, replicates=replicates, required_share=pass_share,
        warmup_s=duration_flag(warmup, "--warmup"), budget_s=duration_flag(budget, "--budget"), retries=retries)
    # the busiest step decides (before the first step connects)
    peak = math.ceil(max(plan.levels)) if plan.mode == "closed" else sc.load.max_connections
    note = ensure_open_files(peak)
    if note:
        click.echo(note, err=True)
    out_dir = Path(out) if out else default_run_dir(f"{sc.name}-sweep")
    prepare_output_dir(out_dir, what="sweep directory")  # before anything is said or run
    click.echo(f"sweep {sc.name}: {plan.mode} loop, levels {', '.join(f'{v:g}' for v in plan.levels)}"
               f"{f' (+ up to {refine} refinements)' if refine else ''}, {replicates} replicate(s) at the "
               f"boundary → {out_dir}")
    outcome = run_sweep(
        scenario_file, plan=plan, overrides=overrides, environ=os.environ, out=out_dir,
        options=flags.options(sc, html=not no_html, quiet=quiet),
        on_step=lambda s: click.echo(step_line(s, mode=plan.mode)))
    click.echo(f"answer: {answer_line(outcome.answer, mode=plan.mode, stopped=outcome.stopped)}  ({outcome.path})")
    click.echo(f"capacity: {outcome.capacity['answer']['line']}  ({outcome.path.parent / 'capacity.json'})")
    return outcome.exit_code
