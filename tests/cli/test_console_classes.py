"""What the console prints of request classes (issue 19): a per-tag table only when the run had
more than one class, every per-tag SLO with its tag, goodput and tokens only when measured."""

from __future__ import annotations

import io
from typing import Any

from loadtest.console import print_summary
from loadtest.rundir.classes import classes_shown


def _tag(offered: int, ttft_p99: float, share: float | None) -> dict[str, Any]:
    return {"requests": {"offered": offered, "completed": offered, "failed": 0, "dropped": 0, "cancelled": 0},
            "latency_ms": {"ttft": {"p50": ttft_p99 / 2, "p99": ttft_p99}, "e2e": {"p99": 2 * ttft_p99}},
            "throughput": {"requests_per_s": offered / 10},
            "goodput": None if share is None else {"share": share}, "tokens": None}


def _summary(by_tag: dict[str, Any], slo_by_tag: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"scenario": "s", "target": "ws://x", "mode": "closed", "measure_s": 10.0,
            "requests": {"completed": 10, "failed": 0, "dropped": 0, "cancelled": 0, "offered": 10},
            "throughput": {"requests_per_s": 1.0, "chunks_per_s": 10.0, "chars_per_s": 50.0},
            "errors": {}, "latency_ms": {}, "generator": {"reasons": []}, "slo": {},
            "by_tag": by_tag, "slo_by_tag": slo_by_tag, "verdict": "failed", "passed": False, **extra}


def _printed(summary: dict[str, Any]) -> str:
    out = io.StringIO()
    print_summary(summary, "runs/x", stream=out)
    return out.getvalue()


def test_one_class_prints_no_table() -> None:
    one = {"step=gen1": _tag(10, 100, None), "tools=false": _tag(10, 100, None), "web_search=false": _tag(10, 100, None)}
    assert classes_shown(_summary(one, {})) == []
    assert "by tag" not in _printed(_summary(one, {}))


def test_two_classes_print_each_value_of_the_keys_that_vary() -> None:
    by_tag = {"step=gen1": _tag(10, 100, 0.5), "web_search=false": _tag(8, 100, 1.0),
              "web_search=true": _tag(2, 3100.5, 0.0)}
    assert classes_shown(_summary(by_tag, {})) == ["web_search=false", "web_search=true"]
    text = _printed(_summary(by_tag, {}))
    row = next(line for line in text.splitlines() if line.lstrip().startswith("web_search=true"))
    assert "3,100.5" in row or "3100.5" in row, row
    assert "0.0%" in row
    assert not any(line.lstrip().startswith("step=gen1") for line in text.splitlines())


def test_every_tag_slo_is_printed_with_its_tag_and_nothing_matched_is_a_fail() -> None:
    slo_by_tag = {"web_search=true": {"ttft_p99_ms": {"limit": 3000.0, "value": 3100.5, "pass": False}},
                  "step=rare": {"ttft_p99_ms": {"limit": 500.0, "value": None, "pass": False,
                                                "reason": "no requests carried this tag"}}}
    text = _printed(_summary({}, slo_by_tag))
    assert "SLO by_tag web_search=true ttft_p99_ms: 3100.5 (limit 3000) FAIL" in text
    assert "SLO by_tag step=rare ttft_p99_ms: no requests carried this tag FAIL" in text


def test_tokens_are_printed_only_when_counted() -> None:
    tokens = {"tokenizer": "[tok].json", "output_total": 5440, "output_per_s": 1343.0, "prompt_total": 400,
              "per_chunk_mean": 3.4}
    text = _printed(_summary({}, {}, tokens=tokens, goodput={"good": 9, "offered": 10, "share": 0.9,
                                                            "per_s": 0.9, "rule": {"ttft_ms": 500.0}}))
    assert "1,343 output tokens/s" in text and "3.40 a chunk" in text and "[tok].json" in text
    assert "9 of 10 requests good (90.0 %)" in text
    assert "token" not in _printed(_summary({}, {}, tokens=None, goodput=None))
