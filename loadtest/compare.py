"""``loadtest compare``: judge a candidate run against a baseline, from run directories alone.

Two parts. The judgement is pure and lives in :mod:`loadtest.judge` (:func:`judge`,
:class:`Thresholds`, the bootstrap and interval statistics; the rules are in its docstring);
this module re-exports it. :func:`load_run`, :func:`render_table` and :func:`write_json` are
the I/O and presentation around it (docs/run-directory.md is the contract they read).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from loadtest.errors import BadInput
from loadtest.hlog import read_hlog
from loadtest.judge import (
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
    _Stack,  # noqa: F401 - re-exported for the tests, which import it from here
    judge,
    parse_checks,
)
from loadtest.metrics import Recorder
from loadtest.report import read_summary

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
    latency = {k: v for k, v in summary["latency_ms"].items() if isinstance(v, dict)}
    intervals: dict[str, list[Recorder]] = {}
    for metric in metrics:
        hlog = path / f"{metric}.hlog"
        if not hlog.exists():
            continue
        try:
            intervals[metric] = [rec for _, _, rec in read_hlog(hlog)]
        except Exception as exc:  # hdrh raises TypeError, zlib.error, HdrCookieException…
            # a corrupted file is bad input (exit 2), as in `loadtest report`, never a bug
            detail = str(exc) or type(exc).__name__
            raise BadInput(f"{hlog}: not a readable HdrHistogram interval log ({detail[:200]})") from None
    fingerprint = summary.get("fingerprint")
    throughput = summary.get("throughput")
    generator = summary.get("generator")
    warnings = []
    if isinstance(generator, dict) and generator.get("saturated"):
        reasons = "; ".join(str(r) for r in generator.get("reasons") or [])
        warnings.append(f"the load generator was saturated ({reasons or 'see its report'}): its "
                        "latencies may be the generator's, not the target's")  # fmt: skip
    if summary.get("interrupted"):
        warnings.append("the run was interrupted: partial results")
    requests = summary.get("requests")
    counts = None
    if isinstance(requests, dict):
        bad = [requests.get(k, 0) for k in ("failed", "dropped")]
        good = requests.get("completed", 0)
        if all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (*bad, good)):
            counts = (sum(bad), sum(bad) + good)
    # summary.json's error_rate; older runs without it: computed the same way (loadtest.slo)
    error_rate = _num(summary.get("error_rate"))
    if error_rate is None and counts and counts[1]:
        error_rate = counts[0] / counts[1]
    meta = {k: summary.get(k) for k in ("scenario", "started_at", "target", "mode", "measure_s")}
    return RunData(
        label=str(path),
        fingerprint=fingerprint if isinstance(fingerprint, str) else None,
        intervals=intervals,
        summary_ms=latency,
        error_rate=error_rate,
        error_counts=counts,
        requests_per_s=_num(throughput.get("requests_per_s")) if isinstance(throughput, dict) else None,
        completions_per_s=_completions(path / "timeseries.csv", _window_end_s(summary)),
        warnings=tuple(warnings),
        meta={"path": str(path), **meta},
    )


def _window_end_s(summary: dict[str, object]) -> float | None:
    """End of the measured window in seconds since t0 (schema 2), else the run's duration."""
    window = summary.get("window")
    if isinstance(window, dict) and _num(window.get("end_s")) is not None:
        return _num(window.get("end_s"))
    return _num(summary.get("duration_s"))


def _completions(path: Path, duration_s: float | None) -> list[float]:
    """Completions in each whole second of the measured window in timeseries.csv; ``[]`` when
    it is absent.

    Only ``measure`` rows (the drain after the window has rows of its own), and only whole
    seconds inside the window (``t_s + 1 <= duration_s``, the window's end): a partial
    second would pass for a slow one.
    """
    try:
        with path.open(encoding="utf-8", newline="") as fp:
            rows = list(csv.DictReader(fp))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadInput(f"{path}: not a readable CSV file ({exc})") from exc
    try:
        return [float(r["completions"]) for r in rows if r.get("phase") == "measure"
                and (duration_s is None or float(r["t_s"]) + 1 <= duration_s)]  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInput(f"{path}: no usable 'completions' column ({exc!r})") from exc


# ---- presentation --------------------------------------------------------------------------


def render_table(verdict: Verdict, baseline: RunData, candidate: RunData) -> str:
    """The comparison as plain text: a table, notes, and the one-line verdict last."""
    level = f"{verdict.thresholds.confidence:.0%}"
    head = ("check", "baseline", "candidate", "change", f"{level} CI of diff", "verdict")
    table = [head] + [
        (r.name, _fmt(r.baseline, r), _fmt(r.candidate, r), _signed_pct(r.change), _fmt_ci(r), r.verdict)
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
    target = path.resolve()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fp:
            fp.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        raise BadInput(f"{path}: cannot write the comparison ({exc.strerror or exc})") from exc


def _fmt(v: float | None, row: Row) -> str:
    if v is None:
        return "—"
    if row.metric == "error_rate":
        return f"{v:.2%}"
    return f"{v:,.3f} {row.unit}" if v < 100 else f"{v:,.1f} {row.unit}"


def _fmt_ci(row: Row) -> str:
    if row.ci is None:
        return "—"
    if row.metric == "error_rate":
        return f"[{row.ci[0]:+.2%}, {row.ci[1]:+.2%}]"
    return f"[{row.ci[0]:+.3f}, {row.ci[1]:+.3f}] {row.unit}"
