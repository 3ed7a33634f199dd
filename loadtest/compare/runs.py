"""Reading run directories for the release gate: :func:`load_run` gives the :class:`RunData`
that :func:`loadtest.compare.gate.gate` judges (docs/run-directory.md is the contract it reads).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from loadtest.compare.rundata import _LATENCY_DEFAULT, RunData, _num
from loadtest.errors import BadInput
from loadtest.metrics.recorder import Recorder
from loadtest.rundir import read_hlog_intervals, read_summary, read_timeseries

__all__ = ["load_run"]


# ---- reading run directories ---------------------------------------------------------------


def load_run(path: Path, metrics: Sequence[str] = _LATENCY_DEFAULT) -> RunData:
    """Read what the gate needs from the run directory ``path`` (the hlogs of ``metrics``).

    A missing or unreadable summary.json or hlog is :class:`BadInput` naming the file.
    """
    summary_path = path / "summary.json"
    if not path.is_dir():
        raise BadInput(f"{summary_path}: missing; {path} is not a directory (expected a run directory)")
    summary = read_summary(summary_path)
    latency = dict(summary.latency_ms)
    intervals: dict[str, list[Recorder]] = {}
    for metric in metrics:
        hlog = path / f"{metric}.hlog"
        if hlog.exists():
            intervals[metric] = [rec for _, _, rec in read_hlog_intervals(hlog)]
    warnings = []
    if summary.saturated:
        reasons = "; ".join(summary.saturation_reasons)
        warnings.append(f"the load generator was saturated ({reasons or 'see its report'}): its "
                        "latencies may be the generator's, not the target's")  # fmt: skip
    if summary.interrupted:
        warnings.append("the run was interrupted: partial results")
    per_s = _per_second(path / "timeseries.csv", summary.window_end_s)
    meta = {"scenario": summary.scenario, "started_at": summary.started_at, "target": summary.target,
            "mode": summary.mode, "measure_s": summary.measure_s}  # fmt: skip
    return RunData(
        label=str(path),
        fingerprint=summary.fingerprint,
        intervals=intervals,
        summary_ms=latency,
        error_rate=_num(summary.error_rate),
        requests_per_s=_num(summary.throughput.get("requests_per_s")),
        completions_per_s=per_s["completions"],
        errors_per_s=per_s["errors"],
        attempts_per_s=per_s["attempts"],
        warnings=tuple(warnings),
        meta={"path": str(path), **meta, "seed": summary.seed, "mock_seed": summary.mock_seed},
        saturated=bool(summary.saturated),
        saturation_reasons=tuple(summary.saturation_reasons),
        interrupted=bool(summary.interrupted),
        mode=summary.mode,
        offered_rate=_num(summary.schedule.get("offered_rate")),
        achieved_rate=_num(summary.schedule.get("achieved_rate")),
    )


def _per_second(path: Path, window_end_s: float) -> dict[str, list[float]]:
    """Per whole second of the measured window in timeseries.csv: completions, errors
    (failures + dropped) and attempts (completions + errors); empty lists when it is absent.

    Only ``measure`` rows (the drain after the window has rows of its own), and only whole
    seconds inside the window (``t_s + 1 <= window_end_s``): a partial second would pass for
    a slow one.
    """
    if not path.exists():
        return {"completions": [], "errors": [], "attempts": []}
    frame = read_timeseries(path)
    rows = frame[(frame["phase"] == "measure") & (frame["t_s"] + 1 <= window_end_s)]
    done = [float(v) for v in rows["completions"]]
    bad = [float(f) + float(d) for f, d in zip(rows["failures"], rows["dropped"], strict=True)]
    return {"completions": done, "errors": bad, "attempts": [a + b for a, b in zip(done, bad, strict=True)]}
