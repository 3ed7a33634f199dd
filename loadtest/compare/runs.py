"""Reading run directories for the release gate: :func:`load_run` gives the :class:`RunData`
that :func:`loadtest.compare.gate.gate` judges (docs/run-directory.md is the contract it reads),
of the whole run or, with ``tag``, of one request class (:mod:`loadtest.compare.tagged`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from loadtest.compare.rundata import _LATENCY_DEFAULT, RunData, _num
from loadtest.compare.tagged import tag_view
from loadtest.errors import BadInput
from loadtest.metrics.recorder import Recorder
from loadtest.rundir import read_hlog_intervals, read_summary, read_timeseries

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["load_run"]


# ---- reading run directories ---------------------------------------------------------------


def load_run(path: Path, metrics: Sequence[str] = _LATENCY_DEFAULT, *, tag: str | None = None) -> RunData:
    """Read what the gate needs from the run directory ``path`` (the hlogs of ``metrics``).

    ``tag`` (``key=value``): the figures of the requests that carried it instead of the whole
    run's (:func:`loadtest.compare.tagged.tag_view`; a run that has none, or that was written
    before request classes, is :class:`~loadtest.compare.validity.InvalidComparison`, exit 2).
    A missing or unreadable summary.json, or an unreadable hlog, is :class:`BadInput` naming the
    file; an absent hlog or timeseries.csv is recorded in :attr:`RunData.missing` (the gate
    refuses one run per side whose gated check needs it; rounds are judged on summary.json).
    """
    summary_path = path / "summary.json"
    if path.exists() and not path.is_dir():
        raise BadInput(f"{path}: is a file, not a run directory (a directory holding summary.json)")
    if not path.is_dir():
        raise BadInput(f"{summary_path}: missing; {path} does not exist (expected a run directory)")
    summary = read_summary(summary_path)
    latency = dict(summary.latency_ms)
    intervals: dict[str, list[Recorder]] = {}
    missing: dict[str, str] = {}
    for metric in metrics if tag is None else ():
        hlog = path / f"{metric}.hlog"
        if hlog.exists():
            intervals[metric] = [rec for _, _, rec in read_hlog_intervals(hlog)]
        else:
            missing[metric] = str(hlog)
    warnings = []
    if summary.saturated:
        reasons = "; ".join(summary.saturation_reasons)
        warnings.append(f"the load generator was saturated ({reasons or 'see its report'}): its "
                        "latencies may be the generator's, not the target's")  # fmt: skip
    if summary.interrupted:
        warnings.append("the run was interrupted: partial results")
    seconds = _measured(path / "timeseries.csv", summary.window_end_s)
    if seconds is None:
        missing.update(dict.fromkeys(("error_rate", "throughput"), str(path / "timeseries.csv")))
    per_s = _per_second(seconds)
    meta = {"scenario": summary.scenario, "started_at": summary.started_at, "target": summary.target,
            "mode": summary.mode, "measure_s": summary.measure_s}  # fmt: skip
    run = RunData(
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
        missing=missing,
    )
    if tag is None:
        return run
    return tag_view(run, path, summary, tag, metrics, seconds=[] if seconds is None else list(seconds["t_s"]))


def _measured(path: Path, window_end_s: float) -> pd.DataFrame | None:
    """The rows of timeseries.csv that are whole seconds of the measured window; None when the
    file is absent.

    Only ``measure`` rows (the drain after the window has rows of its own), and only whole
    seconds inside the window (``t_s + 1 <= window_end_s``): a partial second would pass for
    a slow one.
    """
    if not path.exists():
        return None
    frame = read_timeseries(path)
    return frame[(frame["phase"] == "measure") & (frame["t_s"] + 1 <= window_end_s)]


def _per_second(rows: pd.DataFrame | None) -> dict[str, list[float]]:
    """Per measured second (:func:`_measured`): completions, errors (failures + dropped) and
    attempts (completions + errors); empty lists without timeseries.csv."""
    if rows is None:
        return {"completions": [], "errors": [], "attempts": []}
    done = [float(v) for v in rows["completions"]]
    bad = [float(f) + float(d) for f, d in zip(rows["failures"], rows["dropped"], strict=True)]
    return {"completions": done, "errors": bad, "attempts": [a + b for a, b in zip(done, bad, strict=True)]}
