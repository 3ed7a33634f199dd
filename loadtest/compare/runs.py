"""``loadtest compare``: judge a candidate run against a baseline, from run directories alone.

Two parts. The judgement is pure and lives in :mod:`loadtest.judge` (:func:`judge`,
:class:`Thresholds`, the bootstrap and interval statistics; the rules are in its docstring);
this module re-exports it. :func:`load_run`, :func:`render_table` and :func:`write_json` are
the I/O and presentation around it (docs/run-directory.md is the contract they read).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from loadtest.compare.judge import (
    _LATENCY_DEFAULT,
    DEFAULT_CHECKS,
    PERCENTILES,
    REGRESSION,
    Row,
    RunData,
    Thresholds,
    Verdict,
    _num,
    _signed_pct,
    judge,
    parse_checks,
)
from loadtest.compare.output import format_value
from loadtest.errors import BadInput, OutputError
from loadtest.metrics.recorder import Recorder
from loadtest.rundir import read_hlog_intervals, read_summary, read_timeseries, write_atomic

__all__ = [
    "DEFAULT_CHECKS",
    "PERCENTILES",
    "Row",
    "RunData",
    "Thresholds",
    "Verdict",
    "judge",
    "load_run",
    "parse_checks",
    "render_table",
    "write_json",
]


# ---- reading run directories ---------------------------------------------------------------


def load_run(path: Path, metrics: Sequence[str] = _LATENCY_DEFAULT) -> RunData:
    """Read what :func:`judge` needs from the run directory ``path`` (the hlogs of ``metrics``).

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
    counts = summary.error_counts  # (not served, offered): loadtest.slo's one formula
    per_s = _per_second(path / "timeseries.csv", summary.window_end_s)
    meta = {"scenario": summary.scenario, "started_at": summary.started_at, "target": summary.target,
            "mode": summary.mode, "measure_s": summary.measure_s}  # fmt: skip
    return RunData(
        label=str(path),
        fingerprint=summary.fingerprint,
        intervals=intervals,
        summary_ms=latency,
        error_rate=_num(summary.error_rate),
        error_counts=counts,
        requests_per_s=_num(summary.throughput.get("requests_per_s")),
        completions_per_s=per_s["completions"],
        errors_per_s=per_s["errors"],
        attempts_per_s=per_s["attempts"],
        warnings=tuple(warnings),
        meta={"path": str(path), **meta, "seed": summary.seed, "mock_seed": summary.mock_seed},
        saturated=bool(summary.saturated),
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


# ---- presentation --------------------------------------------------------------------------


def render_table(verdict: Verdict, baseline: RunData, candidate: RunData) -> str:
    """The comparison as plain text: a table, notes, and the one-line verdict last."""
    level = f"{verdict.thresholds.confidence:.0%}"
    head = ("check", "baseline", "candidate", "change", f"{level} CI of diff", "verdict")
    table = [head] + [
        (r.name, format_value(r.baseline, r), format_value(r.candidate, r), _signed_pct(r.change), _fmt_ci(r), r.verdict)
        for r in verdict.rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(head))]
    lines = [f"baseline:  {baseline.label}", f"candidate: {candidate.label}", ""]
    for line in table:
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:-1], widths[1:-1], strict=True)]
        lines.append("  ".join([*cells, line[-1]]).rstrip())
    lines.append("")
    lines.extend(f"note: {n}" for n in verdict.notes)
    lines.extend(f"{r.name}: {r.reason}" for r in verdict.rows
                 if r.verdict == REGRESSION or r.reason.endswith("not credible"))  # fmt: skip
    lines.append(verdict.headline())
    return "\n".join(lines) + "\n"


def write_json(path: Path, verdict: Verdict, baseline: RunData, candidate: RunData) -> None:
    """The verdict as JSON in ``path``, written atomically (temp file, then ``os.replace``)."""
    data = {"baseline": dict(baseline.meta), "candidate": dict(candidate.meta), **verdict.to_dict()}
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    try:
        write_atomic(path.resolve(), text)
    except OutputError as exc:
        cause = exc.__cause__
        detail = (cause.strerror or cause) if isinstance(cause, OSError) else exc
        raise BadInput(f"{path}: cannot write the comparison ({detail})") from exc




def _fmt_ci(row: Row) -> str:
    if row.ci is None:
        return "—"
    if row.metric == "error_rate":
        return f"[{row.ci[0]:+.2%}, {row.ci[1]:+.2%}]"
    return f"[{row.ci[0]:+.3f}, {row.ci[1]:+.3f}] {row.unit}"
