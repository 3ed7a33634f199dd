"""The flags every command that runs a scenario shares, and the one way they become
:class:`~loadtest.runner.options.RunOptions`.

``run``, ``sweep``, ``ab`` and ``calibrate`` all take :func:`run_flags` (API key, TLS, backend,
workers, Ray address) and build their options with :meth:`RunFlags.options`, which also reads the
scenario (its ``target.api_key_env``, ``target.ca_file``, ``target.insecure``): so a flag or a
scenario field reaches every command that runs, or none.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from loadtest.cli.types import WorkersType
from loadtest.engine.tls import Tls
from loadtest.errors import BadInput
from loadtest.runner.options import BACKENDS, RunOptions, ScenarioFlags

__all__ = ["RunFlags", "duration_flag", "load", "run_flags", "warn"]


def warn(text: str) -> None:
    """A warning or note on the user's terminal (stderr, yellow)."""
    click.secho(text, fg="yellow", err=True)


@dataclass(frozen=True, kw_only=True)
class RunFlags:
    """What the user said on the command line about how to run (None/False: not given)."""

    api_key: str | None = None
    ca_file: str | None = None
    insecure: bool = False
    workers: int | str | None = None
    backend: str = "process"
    ray_address: str | None = None
    scenario_flags: ScenarioFlags = field(default_factory=ScenarioFlags)

    def overrides(self, **fields: Any) -> Any:
        """Scenario overrides of a command's own flags, with ``--api-key`` (the loader checks a
        real target has a key before anything runs) and the shared flags that are scenario values."""
        from loadtest.scenario import Overrides

        return Overrides(api_key=self.api_key, **self.scenario_flags.fields(), **fields)

    def options(self, sc: Any, *, out: Path | None = None, html: bool = True, quiet: bool = False) -> RunOptions:
        """The run options of scenario ``sc`` under these flags (flags over the scenario)."""
        from loadtest.scenario import Overrides, resolve_api_key

        tls = Tls.resolve(sc.target, ca_file=self.ca_file, insecure=self.insecure)
        if tls.unverified(sc.target.url):
            warn("WARNING: --insecure: TLS certificates are NOT verified.")
        return RunOptions(api_key=resolve_api_key(sc, Overrides(api_key=self.api_key), os.environ), tls=tls,
                          backend=self.backend, workers=self.workers, ray_address=self.ray_address, out=out,
                          html=html, quiet=quiet, warn=warn, scenario_flags=self.scenario_flags)


_FLAGS = (
    click.option("--api-key", help="API key (default: the variable named by target.api_key_env)."),
    click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
                 help="Trust this CA bundle (wss://; default: target.ca_file)."),
    click.option("--insecure", is_flag=True, help="Skip TLS certificate verification (wss://). Not for real tests."),
    click.option("--workers", type=WorkersType(),
                 help="Workers: a number or auto (processes on this host; --backend ray: actors, auto = the "
                      "cluster's CPUs minus one). Default: load.workers."),
    click.option("--backend", type=click.Choice(BACKENDS), default="process", show_default=True,
                 help="Where workers run: processes on this host, or Ray actors across hosts (pip install "
                      "'loadtest[ray]')."),
    click.option("--ray-address", help="Ray cluster to use (default: $RAY_ADDRESS; none: a local Ray, started and "
                                       "stopped by this run). Needs --backend ray."),
    click.option("--tokenizer", type=click.Path(dir_okay=False),
                 help="A Hugging Face tokenizer.json (a local file, never downloaded): count answers and "
                      "prompts in tokens. Default: target.tokenizer."),
    click.option("--prometheus", metavar="HOST:PORT",
                 help="Serve live metrics at http://HOST:PORT/metrics while the run lasts (Prometheus text "
                      "format). Default: outputs.prometheus."),
    click.option("--prometheus-linger", metavar="DURATION",
                 help="Keep /metrics up this long after the run, for a last scrape (default: "
                      "outputs.prometheus_linger, 5s)."),
    click.option("--otlp", metavar="URL",
                 help="Push live metrics over OTLP/HTTP to this collector URL (e.g. "
                      "http://127.0.0.1:4318/v1/metrics). Default: outputs.otlp."),
    click.option("--mock-host", metavar="ADDR",
                 help="Where the embedded mock listens: 127.0.0.1 (default), or 0.0.0.0 so that Ray workers on "
                      "other hosts reach it at this host's address. Default: mock.host."),
    click.option("--scrape", metavar="URL", multiple=True,
                 help="Scrape the target's own Prometheus endpoint every second (repeatable): "
                      "target_metrics.csv and the report. Default: outputs.scrape."),
)


def run_flags(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add the shared flags to a command; it receives them as one ``flags: RunFlags``."""

    @functools.wraps(f)
    def command(*args: Any, api_key: str | None, ca_file: str | None, insecure: bool, workers: int | str | None,
                backend: str, ray_address: str | None, tokenizer: str | None, prometheus: str | None,
                prometheus_linger: str | None, otlp: str | None, scrape: tuple[str, ...], mock_host: str | None,
                **kwargs: Any) -> Any:
        if ray_address and backend != "ray":
            raise click.UsageError("--ray-address needs --backend ray")
        scenario_flags = ScenarioFlags(tokenizer=tokenizer, prometheus=prometheus, otlp=otlp, scrape=tuple(scrape),
                                       mock_host=mock_host,
                                       prometheus_linger_s=duration_flag(prometheus_linger, "--prometheus-linger"))
        flags = RunFlags(api_key=api_key, ca_file=ca_file, insecure=insecure, workers=workers, backend=backend,
                         ray_address=ray_address, scenario_flags=scenario_flags)
        return f(*args, flags=flags, **kwargs)

    for option in reversed(_FLAGS):
        command = option(command)
    return command


def duration_flag(text: str | None, flag: str) -> float | None:
    """A duration flag (``30s``, ``2m``) in seconds; a usage error naming ``flag`` if it is wrong."""
    from loadtest.scenario import parse_duration

    try:
        return None if text is None else parse_duration(text)
    except (ValueError, BadInput) as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


def load(path: str | Path, overrides: Any = None) -> Any:
    """The scenario at ``path`` with ``overrides``, as it will run (BadInput, exit 2, if wrong)."""
    from loadtest.scenario import load_scenario

    return load_scenario(path, overrides=overrides, environ=os.environ)
