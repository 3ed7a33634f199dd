"""Everything a run needs besides its scenario, in one frozen value (uvicorn's ``Config``).

Every command builds one :class:`RunOptions` the same way (:func:`loadtest.cli.options.RunFlags.options`)
and hands it to :func:`loadtest.runner.coordinator.run` or
:func:`loadtest.runner.todir.run_to_dir`, and every study passes the same value to each of its
runs. So a flag or a scenario field (the API key, TLS, the backend, the workers) reaches every
command or none: TLS is one :class:`~loadtest.engine.tls.Tls`, resolved once from the scenario
and the flags, never three loose arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.clock import Clock
from loadtest.engine.result import Progress
from loadtest.engine.tls import Tls

__all__ = ["BACKENDS", "RunOptions", "ScenarioFlags"]

#: the backends a run can use (``--backend``); each is one module of :mod:`loadtest.runner`
BACKENDS = ("process", "ray")


def _ignore(_text: str) -> None:
    return None


@dataclass(frozen=True, kw_only=True)
class ScenarioFlags:
    """The flags that set scenario values (None/empty: keep the file's). A study reloads its
    scenario for each run through :meth:`RunOptions.overrides`, so they reach every run."""

    tokenizer: str | None = None  # --tokenizer: target.tokenizer
    prometheus: str | None = None  # --prometheus: outputs.prometheus
    prometheus_linger_s: float | None = None  # --prometheus-linger
    otlp: str | None = None  # --otlp: outputs.otlp
    scrape: tuple[str, ...] = ()  # --scrape (repeatable): outputs.scrape
    mock_host: str | None = None  # --mock-host: mock.host

    def fields(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How to run a scenario: where its workers run, what it may show and write.

    ``workers``: None takes the scenario's ``load.workers``; a number or ``auto``, resolved by
    the backend (processes: this host's cores; Ray: the cluster's CPUs minus one).
    ``out``: the run directory of :func:`~loadtest.runner.todir.run_to_dir` (None: a fresh
    ``reports/<name>-<time>/``). ``progress``: called about once a second with the live line;
    None and not ``quiet``: the console's live line. ``warn``: one line for the user's
    terminal (notes, warnings). ``clock``: an injected clock, for virtual-time tests of an
    in-process worker.
    """

    api_key: str | None = field(default=None, repr=False)  # a secret: never in a repr or a log
    tls: Tls = field(default_factory=Tls)
    backend: str = "process"
    workers: int | str | None = None
    ray_address: str | None = None
    out: Path | None = None
    html: bool = True
    quiet: bool = False
    progress: Callable[[Progress], None] | None = None
    warn: Callable[[str], None] = _ignore
    clock: Clock | None = None
    #: ``--tokenizer``, ``--prometheus``, … (scenario values given as flags)
    scenario_flags: ScenarioFlags = field(default_factory=ScenarioFlags)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")

    def replace(self, **changes: Any) -> RunOptions:
        """A copy with ``changes`` (a study's per-run directory, a quiet step)."""
        return dataclasses.replace(self, **changes)

    def overrides(self, **fields: Any) -> Any:
        """Scenario overrides for one run of a study: ``fields``, with the key and the flags of
        these options that are scenario values."""
        from loadtest.scenario import Overrides

        return Overrides(api_key=self.api_key, **self.scenario_flags.fields(), **fields)

    def workers_for(self, sc: Any) -> int | str:
        """The workers asked for: the flag, else the scenario's ``load.workers``."""
        return self.workers if self.workers is not None else sc.load.workers
