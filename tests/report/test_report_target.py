"""The report's target-metrics section (issue 21): the target's own series under the run's TTFT
on one time axis, counters as rates, at most 8 series, the scrape failures as a warning."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from support.rundir_factory import RunFacts, make_run_dir

from loadtest.errors import BadInput
from loadtest.report.html import render_report
from loadtest.report.target import MAX_SERIES
from loadtest.rundir.targetmetrics import TARGET_METRICS_CSV, write_target_metrics

STALL_S = 8
HOSTILE = "<script>alert(1)</script>"


def figures_of(page: str) -> dict[str, Any]:
    match = re.search(r"var figures = (\{.*?\});\n", page, re.S)
    assert match, "no figures in the page"
    return json.loads(match.group(1))


def _scraped_rows(seconds: int) -> list[dict[str, Any]]:
    """A target scraped at t = -0.2, 0.8, 1.8, … : a queue that fills in the stalled second, a
    counter served at 20 a second, a histogram, runtime noise, and many families."""
    rows: list[dict[str, Any]] = []
    for k in range(seconds + 1):
        t = round(k - 0.2, 3)

        def add(metric: str, value: float, labels: str = "", target: int = 0, t: float = t) -> None:
            rows.append({"t_s": t, "target": target, "metric": metric, "labels": labels, "value": value})

        add("mock_queue_depth", 12.0 if k == STALL_S + 1 else 0.0)
        add("mock_gens_served_total", 20.0 * k)
        add("mock_active_streams", 4.0)
        for le, n in (("0.1", k), ("+Inf", 2 * k)):
            add("mock_latency_seconds_bucket", n, f'{{le="{le}"}}')
        add("mock_latency_seconds_sum", 0.5 * k)
        add("process_cpu_seconds_total", 0.1 * k)
        add("python_gc_objects_collected_total", 7.0 * k, '{generation="0"}')
        for i in range(12):  # more families than fit
            add(f"other_{i}", float(i))
        add("hostile", 1.0, f'{{path="{HOSTILE}"}}')
    return rows


def _status(failed: int = 0, error: str | None = None, urls: tuple[str, ...] = ("http://127.0.0.1:9/metrics",)
            ) -> dict[str, Any]:  # fmt: skip
    return {"urls": list(urls), "scrapes": dict.fromkeys(urls, 21), "failed": dict.fromkeys(urls, failed),
            "last_error": dict.fromkeys(urls, error), "samples": 100}  # fmt: skip


def _scraped_run(tmp_path: Path, *, rows: list[dict[str, Any]] | None = None,
                 status: dict[str, Any] | None = None) -> RunFacts:  # fmt: skip
    run = make_run_dir(tmp_path / "scraped-20261128T000000Z", duration_s=20, stall=(STALL_S, 900.0))
    write_target_metrics(run.path, _scraped_rows(20) if rows is None else rows)
    if status is not None:
        summary = json.loads((run.path / "summary.json").read_text())
        summary["live"] = {"scrape": status}
        (run.path / "summary.json").write_text(json.dumps(summary))
    return run


def _by_name(fig: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in fig["data"]}


def test_no_scrape_no_section(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "plain-20261128T000000Z")
    page = render_report([run.path])
    assert 'id="target-metrics"' not in page
    assert "chart-target" not in figures_of(page)


def test_the_targets_series_are_drawn_under_the_ttft_on_one_time_axis(tmp_path: Path) -> None:
    run = _scraped_run(tmp_path)
    page = render_report([run.path])
    assert 'id="target-metrics"' in page
    fig = figures_of(page)["chart-target"]
    traces = _by_name(fig)
    # on top: the run's TTFT p99 per second, as timeseries.csv has it
    ttft = fig["data"][0]
    assert ttft["name"] == "TTFT p99" and ttft["yaxis"] == "y"
    timeseries = (run.path / "timeseries.csv").read_text().splitlines()
    head = timeseries[0].split(",")
    p99 = [float(r.split(",")[head.index("ttft_p99_ms")]) for r in timeseries[1:]]
    assert ttft["y"] == pytest.approx(p99) and ttft["x"] == list(range(len(p99)))
    # the queue depth as it was scraped, at the times of the scrapes: its step lines up with TTFT's
    queue = traces["mock_queue_depth"]
    assert queue["x"][STALL_S + 1] == pytest.approx(STALL_S + 0.8)
    assert queue["y"][STALL_S + 1] == 12 and max(queue["y"]) == 12
    ttft_peak = ttft["x"][ttft["y"].index(max(ttft["y"]))]
    assert max(ttft["y"]) > 3 * sorted(ttft["y"])[len(p99) // 2]  # the stalled second stands out
    assert abs(ttft_peak - queue["x"][queue["y"].index(12)]) < 1.0
    # a counter as a rate per second between scrapes (none before the first)
    served = traces["mock_gens_served_total / s"]
    assert served["y"][0] is None
    assert served["y"][1:] == pytest.approx([20.0] * 20)
    # one shared x axis; each target metric its own y axis, below the TTFT's
    assert all("xaxis" not in t for t in fig["data"])
    assert not any(k.startswith("xaxis") and k != "xaxis" for k in fig["layout"])
    axes = [t["yaxis"] for t in fig["data"][1:]]
    assert "y" not in axes
    top = fig["layout"]["yaxis"]["domain"]
    assert all(fig["layout"][f"yaxis{a[1:]}"]["domain"][1] < top[0] for a in set(axes))


def test_at_most_eight_series_chosen_and_the_noise_left_out(tmp_path: Path) -> None:
    fig = figures_of(render_report([_scraped_run(tmp_path).path]))["chart-target"]
    names = [t["name"] for t in fig["data"][1:]]
    assert len(names) == MAX_SERIES
    assert {"mock_queue_depth", "mock_gens_served_total / s", "mock_active_streams"} <= set(names)
    assert not [n for n in names if "_bucket" in n or "_sum" in n or n.startswith(("process_", "python_"))]


def test_scrape_failures_are_a_warning_with_their_counts(tmp_path: Path) -> None:
    run = _scraped_run(tmp_path, status=_status(failed=3, error=f"answered HTML {HOSTILE}"))
    page = render_report([run.path])
    section = page[page.index('id="target-metrics"'):]
    warning = re.search(r'<li data-warning="scrape-failed">(.*?)</li>', section, re.S)
    assert warning is not None
    assert "3 scrape(s)" in warning.group(1) and "http://127.0.0.1:9/metrics" in warning.group(1)
    table = section[section.index("<table"):section.index("</table>")]
    assert "<td>21</td>" in table and '<span class="bad">3</span>' in table
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in section


def test_scrapes_that_all_answered_are_no_warning(tmp_path: Path) -> None:
    page = render_report([_scraped_run(tmp_path, status=_status()).path])
    assert 'data-warning="scrape-failed"' not in page
    assert "<td>21</td>" in page[page.index('id="target-metrics"'):]


def test_every_scrape_failed_shows_the_table_and_no_chart(tmp_path: Path) -> None:
    run = _scraped_run(tmp_path, rows=[], status=_status(failed=20, error="connection refused"))
    page = render_report([run.path])
    assert "chart-target" not in figures_of(page)
    assert 'data-warning="scrape-failed"' in page and "connection refused" in page


def test_several_targets_are_named_in_their_panels(tmp_path: Path) -> None:
    rows = [{"t_s": float(k), "target": tgt, "metric": "queue_depth", "labels": "", "value": float(k * (tgt + 1))}
            for tgt in (0, 1) for k in range(5)]  # fmt: skip
    fig = figures_of(render_report([_scraped_run(tmp_path, rows=rows).path]))["chart-target"]
    titles = [a["text"] for a in fig["layout"]["annotations"]]
    assert titles == ["queue_depth [target 0]", "queue_depth [target 1]"]
    assert [t["y"] for t in fig["data"][1:]] == [[0, 1, 2, 3, 4], [0, 2, 4, 6, 8]]


def test_a_damaged_target_metrics_file_is_bad_input(tmp_path: Path) -> None:
    run = _scraped_run(tmp_path)
    (run.path / TARGET_METRICS_CSV).write_text("t_s,metric,labels,value\nsoon,up,,1\n")
    with pytest.raises(BadInput, match=TARGET_METRICS_CSV):
        render_report([run.path])


def test_a_comparison_shows_each_runs_scrape_table_without_a_chart(tmp_path: Path) -> None:
    a = _scraped_run(tmp_path / "a", status=_status())
    b = make_run_dir(tmp_path / "b" / "plain-20261128T000000Z")
    page = render_report([a.path, b.path])
    assert page.count('id="target-metrics"') == 1
    assert not [k for k in figures_of(page) if "target" in k]
