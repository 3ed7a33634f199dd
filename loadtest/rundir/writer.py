"""Writing a run's directory (docs/run-directory.md); :mod:`loadtest.rundir` reads it back.

Every file is written through :func:`loadtest.rundir.write_atomic` (a temporary name in the
same directory, then ``os.replace``), so a reader (or a crash) never sees half a file;
summary.json is checked against :class:`loadtest.rundir.Summary`, the model its readers use. ``requests.csv``
is streamed while the run goes on (``requests.csv.partial``) so no measured request is
held only in memory, and renamed when the run is written.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtest.engine.result import RunResult
from loadtest.errors import (
    ERROR_CATEGORIES,
    OutputError,
    redact,
)
from loadtest.metrics.record import OFFERED_OUTCOMES
from loadtest.metrics.tags import TAG_METRICS, tag_dir_name
from loadtest.rundir import SCHEMA, Summary, classes, summary_text, write_atomic
from loadtest.rundir.hlog import write_hlog
from loadtest.rundir.noresult import VERDICT_EXIT_CODES, write_no_result
from loadtest.rundir.outdir import prepare_output_dir, prepare_output_file, signals_ignored
from loadtest.rundir.requests import REQUEST_COLUMNS, RequestCsv, request_row
from loadtest.slo import error_rate, evaluate, evaluate_by_tag, step_error_rate

__all__ = [
    "REQUEST_COLUMNS",
    "SCHEMA",
    "VERDICT_EXIT_CODES",
    "RequestCsv",
    "build_summary",
    "default_run_dir",
    "prepare_output_dir",
    "prepare_output_file",
    "prepare_run_dir",
    "request_row",
    "signals_ignored",
    "write_atomic",
    "write_no_result",
    "write_run_dir",
]

_NS = 1e9

def default_run_dir(scenario_name: str, root: Path = Path("reports")) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", scenario_name) or "run"
    path = root / f"{safe}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{safe}-{stamp}-{n}"
    return path


def prepare_run_dir(run_dir: Path) -> None:
    """:func:`prepare_output_dir` for one run's directory."""
    prepare_output_dir(run_dir, what="run directory")


def build_summary(result: RunResult, *, fingerprint: str, slo_limits: dict[str, float]) -> dict[str, Any]:
    """summary.json (docs/run-directory.md, schema 2). Every rate is events inside the
    measured window over its length; the drain after it is reported on its own."""
    c = result.figures
    sc = result.scenario
    latency = {name: rec.summary_ms() for name, rec in c.metrics.totals.items() if rec.count}
    window_s = result.measure_s
    lag = c.metrics.totals["loop_lag"].summary_ms()
    cpu = sorted(result.cpu_percents)
    requests = {"offered": sum(getattr(c, k) for k in OFFERED_OUTCOMES), "started": c.started,
                "completed": c.completed, "failed": c.failed, "dropped": c.dropped, "cancelled": c.cancelled,
                "abandoned": c.abandoned}
    summary: dict[str, Any] = {
        "schema": SCHEMA,
        "scenario": sc.name,
        "fingerprint": fingerprint,
        "seed": sc.load.seed,
        "mock_seed": result.mock_seed,
        "target": result.target,
        "started_at": result.started_at,
        "duration_s": round(result.duration_s, 3),
        "measure_s": round(window_s, 3),
        "window": {"start_s": round(float(sc.load.warmup_s), 3),
                   "end_s": round(float(sc.load.warmup_s) + window_s, 3)},
        "drain": {"drain_s": round(result.drain_s, 3), **c.drain},
        "mode": sc.load.mode,
        "requests": requests,
        "errors": {**{k: c.errors.get(k, 0) for k in ERROR_CATEGORIES}, "unknown_events": c.unknown_events},
        "error_samples": c.error_samples,
        "reconnects": c.reconnects,
        "session": {"steps": c.steps, "failed": c.steps_failed},
        "latency_ms": latency,
        "latency_from_failed": {"ttft": c.failed_samples.get("ttft", 0), "itl": c.failed_samples.get("itl", 0)},
        "throughput": {
            "requests_per_s": classes.rate(c.ok_in_window, window_s),
            "chunks_per_s": classes.rate(c.chunks, window_s),
            "chars_per_s": classes.rate(c.chars, window_s),
        },
        "schedule": {
            "offered_rate": None if result.offered_rate is None else round(result.offered_rate, 3),
            "achieved_rate": None if result.achieved_rate is None else round(result.achieved_rate, 3),
            "sent_after_window": c.sent_after_window,
            # not sent in the window because every connection was busy (the target was slow)
            "behind": [(f"worker {h.index}: " if len(result.workers) > 1 else "") + h.behind
                       for h in result.workers if h.behind],
            "early_sends": c.early_sends,
        },
        "generator": {
            # the event loop(s) the workers ran on: uvloop, or the standard loop where it is missing
            "loop": ", ".join(sorted({h.loop for h in result.workers if h.loop != "?"})) or None,
            "loop_lag_ms": {"p50": lag["p50"], "p99": lag["p99"], "max": lag["max"]},
            "cpu_percent": round(cpu[len(cpu) // 2], 1) if cpu else None,
            "saturated": bool(result.saturation),
            "reasons": result.saturation,
            "host_steal_percent": result.host_steal_percent,
        },
        "chunks_per_answer": {str(k): v for k, v in sorted(c.chunks_per_answer.items())},
        "goodput": classes.goodput(sc.slo.goodput, c.counts, requests["offered"], window_s),
        "tokens": classes.tokens(sc.target.tokenizer, c.counts, window_s),
        "by_tag": classes.by_tag(c, window_s, sc.slo.goodput, sc.target.tokenizer),
        "tags_folded": dict(c.tags_folded),
        "conversations": classes.conversations(c, window_s, sc.session.conversation is not None),
        "tls": {"insecure": result.insecure},
        "interrupted": result.interrupted,
    }
    summary["error_rate"] = round(error_rate(requests), 6)
    summary["session_error_rate"] = round(step_error_rate(c.steps, c.steps_failed), 6)
    summary["slo"] = evaluate(slo_limits, summary)
    summary["slo_by_tag"] = evaluate_by_tag(sc.slo.by_tag, summary["by_tag"])
    slo_pass = (all(v["pass"] for v in summary["slo"].values())
                and all(v["pass"] for per in summary["slo_by_tag"].values() for v in per.values()))
    # an interrupted run is never a pass: its SLO values are shown, its verdict is "interrupted"
    summary["workers"] = {
        "planned": len(result.workers), "finished": sum(1 for h in result.workers if not h.lost),
        "lost": list(result.lost),
        "each": [dataclasses.asdict(h) | {"saturation": list(h.saturation)} for h in result.workers],
    }
    # never a pass when cut short (a signal) or when a worker's data stops early (a lost worker)
    summary["verdict"] = ("interrupted" if result.interrupted else "incomplete" if result.lost
                          else "passed" if slo_pass else "failed")
    summary["passed"] = summary["verdict"] == "passed"
    summary["exit_code"] = VERDICT_EXIT_CODES[summary["verdict"]]  # what `loadtest run` returns
    if result.live is not None:  # last: an extra key of the model, which dumps extras after its fields
        summary["live"] = result.live
    Summary.model_validate(summary)  # the model every reader reads it with (loadtest.rundir)
    return summary


def _csv_text(columns: tuple[str, ...] | list[str], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def write_run_dir(
    run_dir: Path,
    result: RunResult,
    *,
    requests_csv: RequestCsv,
    scenario_yaml: str,
    fingerprint: str,
    slo_limits: dict[str, float],
    secret: str | None = None,
) -> dict[str, Any]:
    """Write every file of the run directory; returns the summary.

    A file that cannot be written (disk full, I/O error) does not stop the others; then
    :class:`OutputError` (exit 74) names every failure and says what was kept. summary.json
    and scenario.yaml are written as built: they hold no key (the target in the result is
    redacted at the source, the scenario never carries one), so they are not rewritten
    here; only stray ``apikey=`` values would be masked.
    """
    from loadtest.metrics.seconds import TIMESERIES_COLUMNS

    requests_csv.finish()
    summary = build_summary(result, fingerprint=fingerprint, slo_limits=slo_limits)
    c = result.figures
    failures: list[str] = []
    line = requests_csv.failure()
    if line:
        failures.append(line)

    def put(name: str, text: str) -> None:
        try:
            write_atomic(run_dir / name, text)
        except OutputError as exc:
            failures.append(str(exc))

    put("timeseries.csv", _csv_text(TIMESERIES_COLUMNS, c.timeseries()))
    def hlog_text(snaps: list[Any], name: str, what: str) -> str | None:
        """The interval log of metric ``name`` over ``snaps`` (None: no samples)."""
        intervals = [(s.start_s, s.end_s, s.histograms[name]) for s in snaps if name in s.histograms]
        if not intervals:
            return None
        buf = io.StringIO()
        write_hlog(buf, intervals, start_time_s=_epoch(result.started_at),
                   comment=f"loadtest {summary['scenario']} {what} (microseconds)")
        return buf.getvalue()

    for name in c.metrics.totals:
        if (text := hlog_text(c.intervals, name, name)) is not None:
            put(f"{name}.hlog", text)
    for tag, tf in sorted(c.tags.items()):
        for name in TAG_METRICS:
            if (text := hlog_text(tf.intervals, name, f"{name} {tag}")) is None:
                continue
            folder = run_dir / "by_tag" / tag_dir_name(tag)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                failures.append(f"cannot create {folder}: {exc.strerror or exc}")
                continue
            put(f"by_tag/{tag_dir_name(tag)}/{name}.hlog", text)
    put("scenario.yaml", redact(scenario_yaml))
    put("summary.json", redact(summary_text(summary)))
    if failures:
        raise OutputError(_output_failure(run_dir, failures))
    return summary


def _output_failure(run_dir: Path, failures: list[str]) -> str:
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    return f"the run directory {run_dir} is incomplete: {failures[0]}{more}; the files written are kept"


def _epoch(iso: str) -> float:
    """Seconds since the epoch of ``started_at`` (``...T12:00:00.123Z``; schema 1 had no ms)."""
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if "." in iso else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.strptime(iso, fmt).replace(tzinfo=UTC).timestamp()
