"""The ``loadtest`` command: maps options onto config, calls the library, maps errors
to exit codes (DESIGN.md). No logic lives here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from typing import Any

import click

from loadtest.errors import EXIT_BAD_INPUT, BadInput, LoadtestError, TargetUnreachable
from loadtest.faults import parse_faults
from loadtest.mockmodel import Dist, MockModel, parse_dist

__all__ = ["main"]


class DistType(click.ParamType):  # type: ignore[type-arg]
    """A number, or a JSON distribution such as ``{"dist":"lognormal","median":100,"p99":400}``."""

    name = "number|json"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Dist:
        if isinstance(value, Dist):
            return value
        try:
            spec = json.loads(value) if isinstance(value, str) else value
            return parse_dist(spec, name=param.name if param and param.name else "value")
        except (ValueError, BadInput) as exc:
            self.fail(f"{value!r}: {exc}", param, ctx)


class JsonType(click.ParamType):  # type: ignore[type-arg]
    name = "json"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError as exc:
            self.fail(f"not valid JSON: {exc}", param, ctx)


def _run_loop(coro: Any) -> Any:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="loadtest")
def cli() -> None:
    """Load tester for streaming LLM chat proxies (protocol v2 over WebSocket)."""


@cli.command()
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
@click.option("--api-key", "api_keys", multiple=True, help="Accepted key (repeatable). None = accept any.")
@click.option("--faults", type=JsonType(), default=None, help="Fault model as JSON (see README).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="PEM certificate: serve wss://.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key of --tls-cert.")
def mock(host: str, port: int, ttft_ms: Dist, gap_ms: Dist, chunks: Dist, capacity: int | None,
         gap_slowdown: float | None, prefill_ms_per_kchar: float, api_keys: tuple[str, ...], faults: Any, seed: int,
         tls_cert: str | None, tls_key: str | None) -> None:
    """Serve the embedded mock proxy at ws://HOST:PORT/v2/chat (wss:// with --tls-cert)
    and print that URL."""
    from loadtest.mock import MockConfig, serve_forever

    try:
        config = MockConfig(
            model=MockModel(ttft_ms=ttft_ms, gap_ms=gap_ms, chunks=chunks, capacity=capacity,
                            gap_slowdown=gap_slowdown, prefill_ms_per_kchar=prefill_ms_per_kchar),
            faults=parse_faults(faults),
            api_keys=frozenset(api_keys),
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
    try:
        _run_loop(serve_forever(config, host, port, ssl_context=ssl_ctx))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _load(path: str, overrides: Any = None) -> Any:
    import os

    from loadtest.scenario import load_scenario

    return load_scenario(path, overrides=overrides, environ=os.environ)


@cli.command()
@click.argument("scenario_file", type=click.Path(dir_okay=False))
def validate(scenario_file: str) -> int:
    """Check SCENARIO_FILE and print the resolved scenario (exit 2 if it is wrong)."""
    from loadtest.scenario import dump_scenario

    sc = _load(scenario_file)
    click.echo(dump_scenario(sc), nl=False)
    click.echo(f"# {scenario_file}: valid", err=True)
    return 0


@cli.command()
@click.argument("scenario_file", type=click.Path(dir_okay=False))
@click.option("--target", help="ws://… or wss://… URL, or 'mock' (overrides target.url).")
@click.option("--api-key", help="API key (default: the variable named by target.api_key_env).")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default reports/<name>-<time>).")
@click.option("--duration", help="Total duration, e.g. 30s, 2m (overrides load.duration).")
@click.option("--concurrency", type=click.IntRange(min=1), help="Closed-loop users.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Open-loop arrivals per second.")
@click.option("--requests", type=click.IntRange(min=1), help="Stop after this many gen requests.")
@click.option("--seed", type=int, help="Seed for schedules, prompts and think times.")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="Trust this CA bundle (wss://).")
@click.option("--insecure", is_flag=True, help="Skip TLS certificate verification (wss://). Not for real tests.")
@click.option("--no-html", is_flag=True, help="Do not write report.html.")
@click.option("-q", "--quiet", is_flag=True, help="No live progress or table; only warnings and the verdict.")
def run(scenario_file: str, target: str | None, api_key: str | None, out: str | None, duration: str | None,
        concurrency: int | None, rate: float | None, requests: int | None, seed: int | None,
        ca_file: str | None, insecure: bool, no_html: bool, quiet: bool) -> int:
    """Run SCENARIO_FILE and write a run directory. Exit 0 passed, 1 an SLO failed,
    2 bad input, 3 target unreachable, 4 interrupted."""
    import os
    from pathlib import Path

    from loadtest.console import LiveProgress, print_summary
    from loadtest.errors import EXIT_INTERRUPTED, EXIT_SLO_FAILED
    from loadtest.results import RequestCsv, default_run_dir, write_run_dir
    from loadtest.runner import run_scenario
    from loadtest.scenario import Overrides, dump_scenario, fingerprint, parse_duration, resolve_api_key
    from loadtest.tlsconfig import ssl_context_for

    try:
        duration_s = None if duration is None else parse_duration(duration)
    except (ValueError, BadInput) as exc:
        raise click.BadParameter(str(exc), param_hint="--duration") from None
    overrides = Overrides(target_url=target, api_key=api_key, duration_s=duration_s, concurrency=concurrency,
                          rate_per_s=rate, requests=requests, seed=seed, out=out)
    sc = _load(scenario_file, overrides)
    key = resolve_api_key(sc, overrides, os.environ)
    ssl_ctx = ssl_context_for(sc.target.url, ca_file=ca_file or sc.target.ca_file,
                              insecure=insecure or sc.target.insecure)
    insecure_used = (insecure or sc.target.insecure) and sc.target.url.startswith("wss://")
    if insecure_used:
        click.secho("WARNING: --insecure: TLS certificates are NOT verified.", fg="yellow", err=True)
    run_dir = Path(out) if out else default_run_dir(sc.name)
    sink = RequestCsv(run_dir, secret=key)
    try:
        with LiveProgress(quiet=quiet) as live:
            result = run_scenario(sc, api_key=key, ssl_context=ssl_ctx, insecure=insecure_used,
                                  progress=live, request_sink=sink)
    except TargetUnreachable:
        sink.discard()  # nothing was measured: leave no empty run directory behind
        raise
    except BaseException:
        sink.finish()  # a bug or a hard stop: keep every request recorded so far
        raise
    # Signals are ignored while the run directory is written (well under a second): a
    # second Ctrl-C here would otherwise leave a run without its summary.json.
    with _signals_ignored():
        summary = write_run_dir(run_dir, result, requests_csv=sink, scenario_yaml=dump_scenario(sc),
                                fingerprint=fingerprint(sc), slo_limits=dict(sc.slo), secret=key)
        if not no_html:
            try:
                from loadtest.report import build_report

                build_report([run_dir])
            except LoadtestError as exc:
                click.secho(f"warning: report.html not written: {exc}", fg="yellow", err=True)
    print_summary(summary, str(run_dir), quiet=quiet)
    if result.interrupted:
        return EXIT_INTERRUPTED
    return 0 if summary["passed"] else EXIT_SLO_FAILED


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), help="Output HTML (required for several runs).")
def report(run_dirs: tuple[str, ...], out: str | None) -> int:
    """Rebuild report.html from one run directory, or compare several in one report."""
    from pathlib import Path

    from loadtest.report import build_report

    if len(run_dirs) > 1 and not out:
        raise click.UsageError("--out FILE is required when comparing several runs")
    path = build_report([Path(d) for d in run_dirs], Path(out) if out else None)
    click.echo(str(path))
    return 0


def main() -> None:
    """Console entry point: never lets a traceback reach the user for a known error."""
    try:
        rv = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(4)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_BAD_INPUT)
    except LoadtestError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    sys.exit(rv if isinstance(rv, int) else 0)
