"""summary.json's figures of request classes, goodput and tokens, from a run's Figures.

``by_tag`` holds, for each ``key=value``, the same fields with the same definitions as the
run's totals (requests, errors, error_rate, latency_ms, throughput, goodput, tokens): rates
over the measured window, latencies from the tag's own histograms (merged exactly across
workers). ``goodput`` is null without ``slo.goodput``, ``tokens`` null without a tokenizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loadtest.errors import ERROR_CATEGORIES
from loadtest.metrics.figures import Figures
from loadtest.metrics.goodput import GoodputRule
from loadtest.metrics.record import OFFERED_OUTCOMES
from loadtest.metrics.tags import TagFigures
from loadtest.slo import error_rate

__all__ = ["by_tag", "classes_shown", "conversations", "goodput", "offered_of", "rate", "tokens"]


def rate(n: int, window_s: float) -> float:
    """Events per second of the measured window (every rate of summary.json), 3 decimals."""
    return round(n / window_s, 3) if window_s > 0 else 0.0


def goodput(rule: GoodputRule | None, counts: Mapping[str, int], offered: int, window_s: float) -> dict[str, Any] | None:
    """``{good, offered, share, per_s, rule}``: the good requests of the cohort (those intended
    inside the window) and their share of its offered requests; ``per_s``: good answers that
    ended inside the window, per second of it (like every rate, and ``throughput.requests_per_s``
    of which it is the good part). None without a rule."""
    if rule is None:
        return None
    good = int(counts.get("good", 0))
    return {"good": good, "offered": offered, "share": round(good / offered, 6) if offered else None,
            "per_s": rate(int(counts.get("good_in_window", 0)), window_s), "rule": rule.to_dict()}


def tokens(name: str | None, counts: Mapping[str, int], window_s: float) -> dict[str, Any] | None:
    """``{tokenizer, output_total, output_per_s, prompt_total, per_chunk_mean, answers, prompt}``
    over the cohort's completed answers (output tokens per second: by the arrival of their
    chunk inside the window). None without a tokenizer: nothing about tokens is guessed."""
    if name is None:
        return None
    chunks = int(counts.get("tokenized_chunks", 0))
    output = int(counts.get("output_tokens", 0))
    return {"tokenizer": name, "output_total": output,
            "output_per_s": rate(int(counts.get("output_tokens_in_window", 0)), window_s),
            "prompt_total": int(counts.get("prompt_tokens", 0)),
            "per_chunk_mean": round(output / chunks, 4) if chunks else None,
            "answers": int(counts.get("answers_tokenized", 0)),
            "prompt": "client-sent"}


def _one(tf: TagFigures, window_s: float, rule: GoodputRule | None, tokenizer: str | None) -> dict[str, Any]:
    c = tf.counts
    requests = {"offered": tf.offered,
                **{k: int(c.get(k, 0)) for k in OFFERED_OUTCOMES}}
    latency = {name: rec.summary_ms() for name, rec in tf.metrics().totals.items() if rec.count}
    return {
        "requests": requests,
        "errors": {k: int(tf.errors.get(k, 0)) for k in ERROR_CATEGORIES},
        "error_rate": round(error_rate(requests), 6),
        "latency_ms": latency,
        "throughput": {"requests_per_s": rate(int(c.get("ok_in_window", 0)), window_s),
                       "chunks_per_s": rate(int(c.get("chunks", 0)), window_s),
                       "chars_per_s": rate(int(c.get("chars", 0)), window_s)},
        "goodput": goodput(rule, c, tf.offered, window_s),
        "tokens": tokens(tokenizer, c, window_s),
    }


def by_tag(figures: Figures, window_s: float, rule: GoodputRule | None, tokenizer: str | None) -> dict[str, Any]:
    """summary.json's ``by_tag``: one entry per ``key=value`` that any request carried, keys sorted.
    A tag seen only in the warmup (no request of the window) is left out."""
    return {tag: _one(tf, window_s, rule, tokenizer) for tag, tf in sorted(figures.tags.items())
            if tf.offered or any(tf.counts.values())}


def offered_of(requests: Mapping[str, Any]) -> int:
    """``requests.offered``, or (a summary written before the field) the sum it stands for."""
    offered = requests.get("offered")
    if isinstance(offered, int):
        return offered
    return sum(v for k, v in requests.items() if k in OFFERED_OUTCOMES and isinstance(v, int))


def classes_shown(summary: Mapping[str, Any]) -> list[str]:
    """The tags that are classes of their own (the console's and the report's rows), sorted by
    key then value; empty when the run had one class.

    A tag is a class of its own when its key took two or more values (``web_search=true`` and
    ``web_search=false``), or when fewer requests carried it than the run offered (a
    ``tier=free`` set on one step only). A key with one value that every request carried
    (``tools=false`` when no step has tools) describes the whole run again, unless a per-tag
    SLO names it. A per-tag SLO's tag is always shown, carried by a request or not."""
    raw = summary.get("by_tag")
    by_tag = {t: f for t, f in raw.items() if isinstance(f, dict)} if isinstance(raw, dict) else {}
    run_offered = offered_of(summary.get("requests") or {})
    values: dict[str, int] = {}
    for tag in by_tag:
        key = tag.partition("=")[0]
        values[key] = values.get(key, 0) + 1
    own = {t for t, f in by_tag.items()
           if values[t.partition("=")[0]] > 1 or offered_of(f.get("requests") or {}) < run_offered}  # fmt: skip
    slo = summary.get("slo_by_tag")
    named = {t for t, v in slo.items() if isinstance(v, dict)} if isinstance(slo, dict) else set()
    return sorted(own | named, key=lambda t: t.partition("=")[::2])


def conversations(figures: Figures, window_s: float, configured: bool) -> dict[str, Any] | None:
    """summary.json's ``conversations`` (issue 20; None without ``session.conversation``): the
    cohort's conversations by outcome (loadtest.metrics.conversations), ``per_s`` completed
    inside the window per second of it, the completed ones' durations, the turns run."""
    if not configured:
        return None
    c = figures.counts
    turns = figures.turns_per_conversation
    n = sum(turns.values())
    duration = figures.metrics.totals["conversation"].summary_ms()
    return {
        "started": int(c.get("conv_started", 0)),
        **{k: int(c.get(f"conv_{k}", 0)) for k in ("completed", "abandoned", "failed", "unfinished", "dropped")},
        "per_s": rate(int(c.get("conv_completed_in_window", 0)), window_s),
        "duration_ms": {k: duration[k] for k in ("count", "p50", "p90", "p99", "max")},
        "turns": {"mean": round(sum(t * k for t, k in turns.items()) / n, 3) if n else None,
                  "max": max(turns) if turns else None},
    }
