"""A capacity sweep driven by faked steps (no sockets): TTFT p99 as a sharp function of users
(24 users pass a 430 ms SLO, 25 fail), each step 12 s of fake wall time. Used by the sweep
tests and the capacity report's browser test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadtest.runner.options import RunOptions
from loadtest.scenario import Overrides
from loadtest.studies import sweep
from loadtest.studies.sweep import SweepPlan, run_sweep


def sharp(load: float, _rep: int) -> float:
    """The mock with capacity 8: 24 users ≈ 360 ms, 25 users ≈ 510 ms."""
    return 150.0 * ((int(load) - 1) // 8) + 60


CLOSED = """
name: cap
target: {url: mock}
load: {mode: closed, concurrency: 1, duration: 10s}
session: {steps: [{gen: {prompt: hi}}]}
slo: {ttft_p99_ms: 430}
"""


def fake_steps(monkeypatch: pytest.MonkeyPatch, clock: list[float], *, ctrl_c_at: int | None = None) -> list[Any]:
    seen: list[Any] = []

    def run_step(sc: Any, options: RunOptions) -> dict[str, Any]:
        users = sc.load.concurrency
        seen.append(sc)
        if len(seen) == ctrl_c_at:
            raise KeyboardInterrupt
        clock[0] += 12.0  # each step takes 12 s of (fake) wall time
        p99 = sharp(users, 1)
        return {"passed": p99 <= 430, "interrupted": False, "error_rate": 0.0, "measure_s": 8.0,
                "slo": {"ttft_p99_ms": {"limit": 430.0, "value": p99, "pass": p99 <= 430}},
                "latency_ms": {"ttft": {"p50": p99 / 2, "p90": p99, "p99": p99}},
                "throughput": {"requests_per_s": 10.0}, "schedule": {"offered_rate": None, "achieved_rate": None},
                "generator": {"saturated": False, "reasons": []}}

    monkeypatch.setattr(sweep, "_run_step", run_step)
    return seen


def run_faked_sweep(tmp_path: Path, clock: list[float], **plan: Any) -> tuple[sweep.SweepOutcome, dict[str, Any]]:
    path = tmp_path / "s.yaml"
    path.write_text(CLOSED, encoding="utf-8")
    out = tmp_path / "out"
    outcome = run_sweep(path, plan=SweepPlan(mode="closed", levels=(5, 10, 20, 40, 80), refine=20, replicates=3,
                                            mock=True, warmup_s=2.0, **plan),
                        overrides=Overrides(), environ={}, out=out, options=RunOptions(html=True, quiet=True), clock=lambda: clock[0])
    return outcome, json.loads((out / "capacity.json").read_text(encoding="utf-8"))
