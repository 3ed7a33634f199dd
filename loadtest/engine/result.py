"""What a run gives back: live progress while it goes, the merged result at its end. Plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loadtest.metrics.figures import Figures

__all__ = ["Progress", "RunResult", "WorkerHealth"]


@dataclass(frozen=True, slots=True)
class Progress:
    elapsed_s: float
    total_s: float
    active_sessions: int
    in_flight: int
    completed: int
    failed: int
    errors: int
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    phase: str


@dataclass(frozen=True, slots=True)
class WorkerHealth:
    """How one worker fared: whether its own figures can be trusted (saturation is per worker)."""

    index: int
    loop: str  # the event loop class the worker ran on (uvloop.Loop, …)
    cpu_percent: float | None  # median over the window, % of one core
    loop_lag_p99_ms: float | None
    saturation: tuple[str, ...] = ()
    #: the run sent less than it offered because requests waited for a free connection (the
    #: target, not the generator, was slow): the plain sentence, else ""
    behind: str = ""
    lost: str = ""  # why the worker's data stops early ("" = it finished)
    #: where it ran, when not in this process's host (a Ray node id; "" = here)
    node: str = ""
    #: its host's wall clock minus the coordinator's, measured (Ray; None = same clock)
    clock_offset_ms: float | None = None
    #: CPU seconds its tokenizer thread spent counting tokens (None: no tokenizer)
    tokenizer_cpu_s: float | None = None


@dataclass(kw_only=True)
class RunResult:
    """A finished (or interrupted) run, every worker merged: what the run directory is written from."""

    scenario: Any
    figures: Figures
    target: str  # redacted
    started_at: str  # t0's wall-clock time, ISO 8601 with ms
    started_at_epoch_ns: int = 0  # t0's wall-clock time, ns since the epoch (0: unknown)
    duration_s: float  # t0 to the end of the drain
    measure_s: float  # the measured window's length
    drain_s: float = 0.0  # from the end of the window until the last request ended (or the grace ran out)
    interrupted: bool = False
    cpu_percents: list[float] = field(default_factory=list)
    saturation: list[str] = field(default_factory=list)
    offered_rate: float | None = None
    achieved_rate: float | None = None
    insecure: bool = False
    workers: list[WorkerHealth] = field(default_factory=list)
    #: workers whose data stops early (a process that died): the run is incomplete (exit 5)
    lost: list[str] = field(default_factory=list)
    #: the embedded mock's seed (``mock.seed``, else drawn fresh for this run); None: not the mock
    mock_seed: int | None = None
    #: CPU time stolen by the hypervisor on the coordinator's host during the run, % (None: unknown)
    host_steal_percent: float | None = None
    #: summary.json's ``live``: the live outputs and how they went (None: none asked for)
    live: dict[str, Any] | None = None
