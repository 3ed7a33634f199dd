"""The ``loadtest`` command: the group, its commands registered, and the one place that maps
errors to exit codes (DESIGN.md), and ``--version``. The commands themselves are in
:mod:`loadtest.cli.commands` (run, validate, report, sweep, mock), :mod:`loadtest.cli.gate`
(compare, ab, calibrate) and :mod:`loadtest.cli.new` (new).

Shell completion is click's: ``_LOADTEST_COMPLETE=bash_source loadtest`` (``zsh_source``,
``fish_source``) prints the script. ``cli.main`` handles that variable before any command
runs and exits through ``SystemExit``, which :func:`main` lets pass."""

from __future__ import annotations

import platform
import signal
import sys
from importlib import metadata

import click

from loadtest.cli.commands import mock, report, run, sweep, validate
from loadtest.cli.gate import ab, calibrate, compare
from loadtest.cli.new import new
from loadtest.engine.loop import FALLBACK_NOTE
from loadtest.errors import EXIT_BAD_INPUT, EXIT_BUG, EXIT_INTERRUPTED, LoadtestError, caused_by_interrupt
from loadtest.version import __version__

__all__ = ["cli", "main", "version_lines"]

#: the distributions whose versions shape a run's figures (the client, the loop, the histograms)
FIGURE_DEPENDENCIES = ("aiohttp", "uvloop", "hdrhistogram")


def version_lines() -> list[str]:
    """What ``--version`` prints: loadtest's version, then the dependencies that shape its
    figures, then Python's (for a bug report, or to tell two machines' runs apart)."""
    lines = [f"loadtest {__version__}"]
    for name in FIGURE_DEPENDENCIES:
        found = _version(name)
        if found:
            lines.append(f"{name} {found}")
        elif name == "uvloop":
            lines.append(FALLBACK_NOTE)  # the words summary.json's generator.loop uses
        else:
            lines.append(f"{name} not installed")
    lines.append(f"Python {platform.python_version()} ({platform.python_implementation()})")
    return lines


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:  # resilient: shell completion is parsing, not running
        return
    click.echo("\n".join(version_lines()))
    ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version of loadtest and of what shapes its figures (aiohttp, uvloop, "
                   "hdrhistogram, Python), then exit.")
def cli() -> None:
    """Load tester for streaming LLM chat proxies (protocol v2 over WebSocket)."""


for _command in (new, mock, validate, run, report, sweep, compare, ab, calibrate):
    cli.add_command(_command)


def main() -> None:
    """Console entry point: never lets a traceback reach the user for a known error."""
    try:
        rv = cli.main(standalone_mode=False)
    except click.exceptions.Abort:  # click's form of KeyboardInterrupt
        _ignore_signals()
        click.echo("Interrupted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        _ignore_signals()
        exc.show()
        sys.exit(EXIT_BAD_INPUT)
    except LoadtestError as exc:
        _ignore_signals()
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        # outside a run (a run handles its own signals and writes what it measured); a
        # further signal now must not turn exit 4 into 130 (loadtest.cli.entry)
        _ignore_signals()
        click.echo("Interrupted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit:
        raise
    except BaseExceptionGroup as group:
        known = [e for e in group.exceptions if isinstance(e, LoadtestError)]
        if known and len(known) == len(group.exceptions):
            click.echo(f"error: {known[0]}", err=True)
            sys.exit(known[0].exit_code)
        _internal_error(group)
    except Exception as exc:
        if caused_by_interrupt(exc):  # a Ctrl-C that a library re-raised as its own error (pydantic
            _ignore_signals()          # wraps one that lands while a model class is being built)
            click.echo("Interrupted.", err=True)
            sys.exit(EXIT_INTERRUPTED)
        _internal_error(exc)
    _ignore_signals()  # done: a Ctrl-C while the interpreter shuts down must not turn the code into -2
    sys.exit(rv if isinstance(rv, int) else 0)


def _ignore_signals() -> None:
    """We are exiting on a signal: a further SIGINT/SIGTERM (a second Ctrl-C) must not
    interrupt the clean-up and turn exit 4 into 130."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def _internal_error(exc: BaseException) -> None:
    """A bug: say so plainly, keep the traceback for the report, exit 70 (never 0-4)."""
    import traceback

    click.echo("loadtest: internal error (a bug, not your input). Please report it with this "
               "traceback; files of the run directory written so far are kept.", err=True)
    traceback.print_exception(exc, file=sys.stderr)
    sys.exit(EXIT_BUG)
