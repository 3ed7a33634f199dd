"""Build a realistic synthetic run directory that follows docs/run-directory.md exactly.

The requests are drawn from seeded distributions (Poisson arrivals, lognormal TTFT and
inter-chunk gaps, a few failures); every other file is derived from them the way the runner
derives it, so the figures agree across files: the hlog intervals merged give the
``latency_ms`` of summary.json, timeseries.csv counts what requests.csv lists, and so on.

    run = make_run_dir(tmp_path / "smoke-20261128T000000Z", duration_s=20, rate_per_s=20)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogWriter

from loadtest.errors import ERROR_CATEGORIES
from loadtest.metrics.recorder import METRICS, _mean
from loadtest.metrics.tags import tag_dir_name
from loadtest.slo import error_rate as error_rate_of
from loadtest.slo import evaluate_by_tag

__all__ = ["METRICS", "RunFacts", "make_run_dir"]

_CATEGORIES = ERROR_CATEGORIES
_HIGHEST_US = 3600 * 1_000_000
_STARTED_EPOCH = 1795824000.0  # 2026-11-28T00:00:00Z


@dataclass(frozen=True)
class RunFacts:
    """What the factory wrote, for tests to compare the report against."""

    path: Path
    summary: dict
    requests: int


def _hist() -> HdrHistogram:
    return HdrHistogram(1, _HIGHEST_US, 3)


def _record(hist: HdrHistogram, values_us: np.ndarray) -> None:
    values = np.clip(np.asarray(values_us, dtype=np.int64), 1, _HIGHEST_US)
    # Round down to the bucket's lowest equivalent value (3 significant digits: 2048 sub-buckets)
    # so that np.unique leaves few values to record; the histogram is the same.
    shift = np.maximum(0, np.floor(np.log2(values)).astype(np.int64) - 10)
    values = (values >> shift) << shift
    for value, count in zip(*np.unique(values, return_counts=True), strict=True):
        hist.record_value(int(value), int(count))


def _figures(hist: HdrHistogram) -> dict:
    if hist.get_total_count() == 0:
        return {k: None for k in ("min", "mean", "p50", "p90", "p95", "p99", "p999", "max")} | {
            "count": 0,
            "out_of_range": 0,
        }
    pct = hist.get_percentile_to_value_dict([50, 90, 95, 99, 99.9])
    return {
        "count": hist.get_total_count(),
        "min": hist.get_min_value() / 1000,
        "mean": round(_mean(hist) / 1000, 3),  # hdrh's get_mean_value walks every bucket (0.3 s)
        "p50": pct[50] / 1000,
        "p90": pct[90] / 1000,
        "p95": pct[95] / 1000,
        "p99": pct[99] / 1000,
        "p999": pct[99.9] / 1000,
        "max": hist.get_max_value() / 1000,
        "out_of_range": 0,
    }


def _write_hlog(path: Path, intervals: list[tuple[int, HdrHistogram]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        writer = HistogramLogWriter(f)
        writer.output_log_format_version()
        # HistogramLogWriter.output_start_time is broken in hdrh 0.10 (calls iso_format); the
        # line it would write is the Java one, so write that by hand.
        f.write(f"#[StartTime: {_STARTED_EPOCH:.3f} (seconds since epoch), 2026-11-28 00:00:00]\n")
        writer.output_legend()
        for second, hist in intervals:
            writer.output_interval_histogram(
                hist, start_time_stamp_sec=float(second), end_time_stamp_sec=float(second + 1),
                max_value_unit_ratio=1000.0,
            )  # fmt: skip


def _pct(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def make_run_dir(
    path: Path,
    *,
    name: str = "smoke",
    duration_s: int = 20,
    warmup_s: int = 2,
    rate_per_s: float = 20.0,
    seed: int = 1,
    ttft_ms: float = 120.0,
    failure_rate: float = 0.02,
    dropped: int = 0,
    saturated: bool = False,
    interrupted: bool = False,
    tls_insecure: bool = False,
    error_message: str = "upstream overloaded, retry later",
    prompt: str = "Explain artificial intelligence",
    target: str = "ws://127.0.0.1:4321/v2/chat?apikey=***",
    slo_ttft_p99_ms: float = 1000.0,
    hlog_metrics: Iterable[str] | None = None,
    stall: tuple[int, float] | None = None,
    tags: Mapping[str, Sequence[str]] | None = None,
    tag_delay_ms: Mapping[str, float] | None = None,
    slo_by_tag: Mapping[str, Mapping[str, float]] | None = None,
    goodput_ttft_ms: float | None = None,
    tokens_per_chunk: int | None = None,
) -> RunFacts:
    """Write an open-loop run of ``duration_s`` seconds at ``rate_per_s`` into ``path``.

    ``dropped`` requests are marked dropped (never sent); ``error_message`` is the message of
    every ``server_error`` failure (and a sample in summary.json); ``prompt`` goes into
    scenario.yaml. ``hlog_metrics`` limits which metrics get an hlog (default: all with samples).
    ``stall=(second, ms)``: every request sent in that second waits ``ms`` longer for its first
    token (one stalled second of the target).

    Request classes (issue 19), all off by default (then the files are those of a run written
    before classes existed: no ``by_tag``, ``goodput`` or ``tokens`` in summary.json, no
    ``tags`` column, no ``by_tag/`` folder). ``tags={"web_search": ["false", "true"]}``: each
    request carries one value of each key, drawn uniformly (a separate seeded stream, so the
    other draws stay as they were); summary.json gets ``by_tag`` with the same figures as the
    run's, from per-tag histograms also written to ``by_tag/<tag_dir_name>/<metric>.hlog``.
    ``tag_delay_ms={"web_search=true": 800}``: requests carrying that tag wait that much longer
    for their first token. ``slo_by_tag`` is judged by :func:`loadtest.slo.evaluate_by_tag`
    (a tag no request carried fails). ``goodput_ttft_ms``: a good request completed within that
    TTFT (``goodput`` in total and per tag). ``tokens_per_chunk``: every chunk is that many
    output tokens, each prompt word one token (``tokens`` in total and per tag).
    """
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)

    # --- requests -------------------------------------------------------------------------
    n = int(rng.poisson(rate_per_s * duration_s))
    t_intended = np.sort(rng.uniform(0, duration_s, n))
    queue = rng.exponential(0.3, n)  # ms
    t_send = t_intended + queue / 1000
    ttft_unc = rng.lognormal(math.log(ttft_ms), 0.35, n)  # ms, from t_send
    if stall is not None:
        ttft_unc[np.floor(t_send).astype(int) == stall[0]] += stall[1]
    carried: dict[str, np.ndarray] = {}  # "key=value" -> which requests carry it
    if tags:
        tag_rng = np.random.default_rng(seed + 7919)
        for key, key_values in tags.items():
            drawn = tag_rng.integers(0, len(key_values), n)
            for i, value in enumerate(key_values):
                carried[f"{key}={value}"] = drawn == i
        for tag, delay in (tag_delay_ms or {}).items():
            ttft_unc[carried.get(tag, np.zeros(n, dtype=bool))] += delay
    chunks = np.clip(rng.normal(40, 8, n).round(), 1, None).astype(int)
    gaps = rng.lognormal(math.log(8.0), 0.4, int(chunks.sum())).round(1)
    bounds = np.concatenate(([0], np.cumsum(chunks)))
    # the first chunk of each answer has no gap before it: drop gaps[b] of each answer
    itl_per_answer = np.add.reduceat(gaps, bounds[:-1]) - gaps[bounds[:-1]]
    t_first = t_send + ttft_unc / 1000
    t_last = t_first + itl_per_answer / 1000
    t_stop = t_last + 0.001
    outcome = np.full(n, "ok", dtype=object)
    category = np.full(n, "", dtype=object)
    message = np.full(n, "", dtype=object)
    failed = rng.random(n) < failure_rate
    cats = rng.choice(["server_error", "timeout", "disconnect"], size=n, p=[0.6, 0.25, 0.15])
    outcome[failed] = "failed"
    category[failed] = cats[failed]
    message[failed & (cats == "server_error")] = error_message
    message[failed & (cats == "timeout")] = "no first token within 30s"
    message[failed & (cats == "disconnect")] = "connection closed by peer (code 1006)"
    if dropped:
        drop_idx = np.linspace(n // 2, n - 1, dropped).astype(int)
        outcome[drop_idx] = "dropped"
        category[drop_idx] = ""
    ok = outcome == "ok"
    sent = outcome != "dropped"
    measure = t_intended >= warmup_s
    ttft = (t_first - t_intended) * 1000
    e2e = (t_stop - t_intended) * 1000
    e2e_unc = (t_stop - t_send) * 1000
    tpot = np.where(chunks > 1, itl_per_answer / np.maximum(chunks - 1, 1), np.nan)

    def blank(values: np.ndarray, where: np.ndarray) -> list:
        return [round(float(v), 6) if w else None for v, w in zip(values, where, strict=True)]

    rows = pd.DataFrame(
        {
            "request_id": np.arange(n),
            "user": np.arange(n) % 64,
            "connection": np.arange(n) % 32,
            "phase": np.where(measure, "measure", "warmup"),
            "t_intended_s": t_intended.round(6),
            "t_send_s": blank(t_send, sent),
            "t_conv_s": blank(t_send + 0.0004, sent),
            "t_first_s": blank(t_first, ok),
            "t_last_s": blank(t_last, ok),
            "t_stop_s": blank(t_stop, sent),
            "ttft_ms": blank(ttft, ok),
            "ttft_uncorrected_ms": blank(ttft_unc, ok),
            "e2e_ms": blank(e2e, ok),
            "e2e_uncorrected_ms": blank(e2e_unc, ok),
            "tpot_ms": blank(tpot, ok & (chunks > 1)),
            "queue_ms": blank(queue, sent),
            "chunks": np.where(ok, chunks, 0),
            "chars": np.where(ok, chunks * 5, 0),
            "unknown_events": 0,
            "outcome": outcome,
            "error_category": category,
            "error_message": message,
            "conversation_id": [f"conv-{i}" if s else "" for i, s in enumerate(sent)],
            "message_id": [f"msg-{i}" if o else "" for i, o in enumerate(ok)],
            "prompt_chars": len(prompt),
        }
    )
    if carried:
        rows["tags"] = [";".join(t for t in sorted(carried) if carried[t][i]) for i in range(n)]
    rows.to_csv(path / "requests.csv", index=False)

    # --- hlog intervals (measured phase, by the second the request ended) ------------------
    end_s = np.floor(t_stop).astype(int)
    last_s = int(end_s.max()) if n else duration_s - 1
    seconds = list(range(warmup_s, last_s + 1))
    m_ok = ok & measure
    per_request = {
        "ttft": ttft,
        "ttft_uncorrected": ttft_unc,
        "tpot": tpot,
        "e2e": e2e,
        "e2e_uncorrected": e2e_unc,
        "queue": queue,
        "schedule_lag": queue * 0.2,
    }
    wanted = set(METRICS if hlog_metrics is None else hlog_metrics)
    samples_by_s: dict[str, list[tuple[int, np.ndarray]]] = {m: [] for m in METRICS}
    answer_of_gap = np.repeat(np.arange(n), chunks)
    first_gap = np.zeros(len(gaps), dtype=bool)
    first_gap[bounds[:-1]] = True
    itl_keep = np.flatnonzero(m_ok[answer_of_gap] & ~first_gap)
    itl_keep = itl_keep[np.argsort(end_s[answer_of_gap[itl_keep]], kind="stable")]
    itl_sec = end_s[answer_of_gap[itl_keep]]
    for s in seconds:
        in_s = m_ok & (end_s == s)
        sample = {m: v[in_s & ~np.isnan(v)] * 1000 for m, v in per_request.items()}
        lo, hi = np.searchsorted(itl_sec, [s, s + 1])
        sample["itl"] = gaps[itl_keep[lo:hi]] * 1000
        sample["loop_lag"] = rng.lognormal(math.log(0.25 if not saturated else 20), 0.5, 10) * 1000
        sample["ping_rtt"] = rng.lognormal(math.log(0.4), 0.2, 1) * 1000
        if s == warmup_s:
            sample["connect"] = rng.lognormal(math.log(2.0), 0.2, 32) * 1000
            sample["auth"] = rng.lognormal(math.log(1.0), 0.2, 32) * 1000
        for metric, values in sample.items():
            samples_by_s[metric].append((s, values))
    totals = {m: _hist() for m in METRICS}
    for metric, per_s in samples_by_s.items():
        if not per_s:
            continue
        if metric not in wanted:
            _record(totals[metric], np.concatenate([v for _, v in per_s]))
            continue
        intervals = []
        for s, values in per_s:
            hist = _hist()
            _record(hist, values)
            totals[metric].add(hist)
            intervals.append((s, hist))
        if totals[metric].get_total_count():
            _write_hlog(path / f"{metric}.hlog", intervals)

    # --- timeseries.csv --------------------------------------------------------------------
    width = last_s + 1
    intended_s = np.floor(t_intended).astype(int)
    send_s = np.floor(t_send).astype(int)

    def per_second(where: np.ndarray, at: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        w = None if weights is None else weights[where]
        return np.bincount(at[where], weights=w, minlength=width)[:width].astype(int)

    grid = np.arange(width)
    in_flight = np.searchsorted(np.sort(t_send[sent]), grid, side="right") - np.searchsorted(
        np.sort(t_stop[sent]), grid, side="right"
    )
    done_chunks = per_second(ok, end_s, chunks)
    series = pd.DataFrame(
        {
            "t_s": grid,
            "phase": np.where(grid >= warmup_s, "measure", "warmup"),
            "offered": per_second(np.ones(n, dtype=bool), intended_s),
            "achieved": per_second(sent, send_s),
            "active_sessions": in_flight,
            "in_flight": in_flight,
            "completions": per_second(ok, end_s),
            "failures": per_second(outcome == "failed", end_s),
            "dropped": per_second(outcome == "dropped", intended_s),
        }
        | {f"err_{cat}": per_second(sent & (category == cat), end_s) for cat in _CATEGORIES}
        | {"unknown_events": 0, "chunks": done_chunks, "chars": done_chunks * 5}
    )
    order = np.argsort(end_s, kind="stable")
    order = order[ok[order]]
    cuts = np.searchsorted(end_s[order], np.arange(width + 1))
    for col, values, q in (("ttft_p50_ms", ttft, 50), ("ttft_p99_ms", ttft, 99), ("e2e_p99_ms", e2e, 99)):
        series[col] = [_pct(values[order[cuts[i] : cuts[i + 1]]], q) for i in range(width)]
    series["loop_lag_p99_ms"] = 0.4 if not saturated else 55.0
    series.to_csv(path / "timeseries.csv", index=False)

    # --- scenario.yaml ---------------------------------------------------------------------
    scenario = {
        "name": name,
        "target": {"url": target.split("?")[0], "api_key_env": "LOADTEST_API_KEY", "model": None},
        "load": {"mode": "open", "rate": rate_per_s, "duration": f"{duration_s}s", "warmup": f"{warmup_s}s",
                 "seed": seed},
        "session": {"steps": ["ping", {"gen": {"prompt": prompt, "temperature": 0.2}}]},
        "timeouts": {"connect": "10s", "first_token": "30s", "stream": "120s"},
        "slo": {"ttft_p99_ms": slo_ttft_p99_ms, "error_rate": 0.05},
    }  # fmt: skip
    (path / "scenario.yaml").write_text(yaml.safe_dump(scenario, sort_keys=False), encoding="utf-8")

    # --- summary.json ----------------------------------------------------------------------
    mr = measure
    measure_s = float(last_s + 1 - warmup_s)
    n_failed = int((mr & (outcome == "failed")).sum())
    n_completed = int((mr & ok).sum())
    n_dropped = int((mr & (outcome == "dropped")).sum())
    started = int(mr.sum())
    errors = {c: int((mr & (category == c)).sum()) for c in _CATEGORIES} | {"unknown_events": 0}
    samples: dict[str, list[str]] = {}
    for c in _CATEGORIES:
        msgs = list(dict.fromkeys(message[mr & (category == c)]))[:5]
        if msgs:
            samples[c] = msgs
    latency = {m: _figures(totals[m]) for m in METRICS}
    error_rate = n_failed / started if started else 0.0
    slo = {
        "ttft_p99_ms": {"limit": slo_ttft_p99_ms, "value": latency["ttft"]["p99"]},
        "error_rate": {"limit": 0.05, "value": round(error_rate, 5)},
    }
    for entry in slo.values():
        entry["pass"] = entry["value"] is not None and entry["value"] <= entry["limit"]
    cpa = pd.Series(chunks[mr & ok]).value_counts().sort_index()
    reasons = ["event-loop lag p99 55.0 ms > 50 ms", "CPU 97% > 90% of one core"] if saturated else []
    summary = {
        "schema": 1,
        "scenario": name,
        "fingerprint": "3f" * 32,
        "target": target,
        "started_at": "2026-11-28T00:00:00Z",
        "duration_s": round(float(t_stop.max()) if n else float(duration_s), 3),
        "measure_s": measure_s,
        "mode": "open",
        "requests": {"started": started, "completed": n_completed, "failed": n_failed, "dropped": n_dropped},
        "errors": errors,
        "error_samples": samples,
        "reconnects": 0,
        "latency_ms": latency,
        "throughput": {
            "requests_per_s": round(n_completed / measure_s, 3),
            "chunks_per_s": round(float(chunks[mr & ok].sum()) / measure_s, 3),
            "chars_per_s": round(float(chunks[mr & ok].sum() * 5) / measure_s, 3),
        },
        "schedule": {
            # the arrivals the schedule intended in the window (a Poisson draw, not the nominal rate)
            "offered_rate": round(int(mr.sum()) / measure_s, 3),
            "achieved_rate": round(int((mr & sent).sum()) / measure_s, 3),
        },
        "generator": {
            "loop_lag_ms": {k: latency["loop_lag"][k] for k in ("p50", "p99", "max")},
            "cpu_percent": 97.0 if saturated else 23.5,
            "saturated": saturated,
            "reasons": reasons,
        },
        "chunks_per_answer": {str(int(k)): int(v) for k, v in cpa.items()},
        "slo": slo,
        "passed": all(e["pass"] for e in slo.values()),
        "tls": {"insecure": tls_insecure},
        "interrupted": interrupted,
    }
    if tags or slo_by_tag or goodput_ttft_ms is not None or tokens_per_chunk is not None:
        good = ok & (ttft <= goodput_ttft_ms) if goodput_ttft_ms is not None else None

        def classes(where: np.ndarray) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
            cohort = mr & where
            offered = int(cohort.sum())
            gp = None if good is None else {
                "good": int((cohort & good).sum()), "offered": offered,
                "share": round(int((cohort & good).sum()) / offered, 6) if offered else None,
                "per_s": round(int((cohort & good).sum()) / measure_s, 3), "rule": {"ttft_ms": goodput_ttft_ms}}
            out = int(chunks[cohort & ok].sum()) * tokens_per_chunk if tokens_per_chunk else 0
            tok = None if tokens_per_chunk is None else {
                "tokenizer": "tok.json", "output_total": out, "output_per_s": round(out / measure_s, 3),
                "prompt_total": int((cohort & sent).sum()) * len(prompt.split()),
                "per_chunk_mean": float(tokens_per_chunk), "answers": int((cohort & ok).sum()),
                "prompt": "client-sent"}
            return gp, tok

        summary["goodput"], summary["tokens"] = classes(np.ones(n, dtype=bool))
        by_tag: dict[str, dict[str, Any]] = {}
        summary["by_tag"] = by_tag
        for tag in sorted(carried):
            where = carried[tag]
            hists = _tag_hlogs(path / "by_tag" / tag_dir_name(tag), per_request, m_ok & where, end_s, seconds)
            cohort = mr & where
            req = {"offered": int(cohort.sum()), "completed": int((cohort & ok).sum()),
                   "failed": int((cohort & (outcome == "failed")).sum()),
                   "dropped": int((cohort & (outcome == "dropped")).sum()), "cancelled": 0}
            gp, tok = classes(where)
            by_tag[tag] = {
                "requests": req,
                "errors": {c: int((cohort & (category == c)).sum()) for c in _CATEGORIES},
                "error_rate": round(error_rate_of(req), 6),
                "latency_ms": {m: _figures(h) for m, h in hists.items() if h.get_total_count()},
                "throughput": {"requests_per_s": round(req["completed"] / measure_s, 3),
                               "chunks_per_s": round(float(chunks[cohort & ok].sum()) / measure_s, 3),
                               "chars_per_s": round(float(chunks[cohort & ok].sum() * 5) / measure_s, 3)},
                "goodput": gp,
                "tokens": tok,
            }  # fmt: skip
        summary["tags_folded"] = {}
        verdicts = evaluate_by_tag(slo_by_tag or {}, by_tag)
        summary["slo_by_tag"] = verdicts
        summary["passed"] = summary["passed"] and all(v["pass"] for per in verdicts.values() for v in per.values())
    (path / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return RunFacts(path=path, summary=summary, requests=n)


def _tag_hlogs(folder: Path, per_request: Mapping[str, np.ndarray], where: np.ndarray, end_s: np.ndarray,
               seconds: list[int]) -> dict[str, HdrHistogram]:
    """One tag's per-request histograms (its requests in ``where``, by the second they ended),
    written as ``folder/<metric>.hlog``; returns each metric's total."""
    totals = {}
    for metric in ("ttft", "ttft_uncorrected", "tpot", "e2e", "e2e_uncorrected"):
        values = per_request[metric]
        totals[metric], intervals = _hist(), []
        for s in seconds:
            hist = _hist()
            _record(hist, values[where & (end_s == s) & ~np.isnan(values)] * 1000)
            totals[metric].add(hist)
            intervals.append((s, hist))
        if totals[metric].get_total_count():
            folder.mkdir(parents=True, exist_ok=True)
            _write_hlog(folder / f"{metric}.hlog", intervals)
    return totals
