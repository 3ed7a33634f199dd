"""The ``loadtest`` command: maps options onto config, calls the library, maps errors
to exit codes (DESIGN.md). No logic lives here."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from loadtest.errors import EXIT_BAD_INPUT, BadInput, LoadtestError
from loadtest.faults import parse_faults
from loadtest.mockmodel import Dist, MockModel, parse_dist

__all__ = ["main"]


class DistType(click.ParamType):
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


class JsonType(click.ParamType):
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
@click.option("--api-key", "api_keys", multiple=True, help="Accepted key (repeatable). None = accept any.")
@click.option("--faults", type=JsonType(), default=None, help="Fault model as JSON (see README).")
@click.option("--seed", type=int, default=0, show_default=True)
def mock(host: str, port: int, ttft_ms: Dist, gap_ms: Dist, chunks: Dist, capacity: int | None,
         gap_slowdown: float | None, api_keys: tuple[str, ...], faults: Any, seed: int) -> None:
    """Serve the embedded mock proxy at ws://HOST:PORT/v2/chat and print that URL."""
    from loadtest.mock import MockConfig, serve_forever

    try:
        config = MockConfig(
            model=MockModel(ttft_ms=ttft_ms, gap_ms=gap_ms, chunks=chunks, capacity=capacity,
                            gap_slowdown=gap_slowdown),
            faults=parse_faults(faults),
            api_keys=frozenset(api_keys),
            seed=seed,
        )
    except BadInput as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        _run_loop(serve_forever(config, host, port))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc


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
