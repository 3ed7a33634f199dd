"""The HTML report, without a browser: content, escaping, warnings, errors, size."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from support.rundir_factory import make_run_dir

from loadtest.errors import BadInput
from loadtest.report.charts import spectrum_from_histogram
from loadtest.report.html import build_report, render_report
from loadtest.rundir import read_hlog_total

VENDOR = Path(__file__).parents[2] / "loadtest" / "report" / "vendor"
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"


def figures_of(page: str) -> dict:
    """The figures JSON the page hands to Plotly.newPlot."""
    match = re.search(r"var figures = (\{.*?\});\n", page, re.S)
    assert match, "no figures in the page"
    return json.loads(match.group(1))


@pytest.fixture
def run(tmp_path: Path):
    return make_run_dir(tmp_path / "smoke-20261128T000000Z")


def get_plotlyjs() -> str:
    return (VENDOR / "plotly.min.js").read_text(encoding="utf-8")


def test_the_vendored_plotly_js_is_the_one_its_record_names() -> None:
    """The bundle is the npm release plotly.json names (sha256, version banner), with its licence."""
    record = json.loads((VENDOR / "plotly.json").read_text(encoding="utf-8"))
    data = (VENDOR / record["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == record["sha256"]
    assert data[:200].decode().splitlines()[1] == f"* plotly.js v{record['version']}"
    assert record["source"].endswith(f"/{record['package']}-{record['version']}.tgz")
    assert (VENDOR / "plotly-LICENSE.txt").read_text(encoding="utf-8").startswith("MIT License")


def test_plotly_is_inlined_exactly_once_and_nothing_is_fetched(run) -> None:
    page = render_report([run.path])
    bundle = get_plotlyjs()
    assert page.count(bundle[:2000]) == 1
    assert page.count(bundle[-2000:]) == 1
    assert len(page) > len(bundle)
    assert not re.search(
        r"""<(script|link|img|iframe|source)\b[^>]*\b(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I
    )
    assert "@import" not in page
    assert "default-src 'none'" in page  # the CSP forbids fetches even if something slipped in


def test_headline_shows_the_summary_figures(run) -> None:
    s = run.summary
    page = render_report([run.path])
    req = s["requests"]
    assert f">{req['started']:,}<" in page
    assert f"{req['completed']:,} ok · {req['failed']:,} failed · {req['dropped']:,} dropped" in page
    assert f"{req['failed'] / req['started']:.2%}" in page
    assert f"{s['throughput']['requests_per_s']:,.1f}" in page
    assert f"{s['throughput']['chunks_per_s']:,.0f}" in page
    assert f"{s['throughput']['chars_per_s']:,.0f} chars / s" in page
    assert f"{s['latency_ms']['ttft']['p99']:,.0f} <small>ms</small>" in page
    assert s["started_at"] in page and s["target"] in page.replace("&amp;", "&")
    assert 'data-verdict="pass"' in page and s["passed"]
    assert f"<td>{s['slo']['ttft_p99_ms']['limit']:,.0f}</td>" in page
    assert page.count('class="pill pill-pass">PASS<') == len(s["slo"])


def test_a_failed_slo_is_shown_as_fail(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "r", slo_ttft_p99_ms=50)
    page = render_report([run.path])
    assert not run.summary["passed"]
    assert 'data-verdict="fail"' in page and "FAIL" in page
    assert page.count('class="pill pill-fail">FAIL<') == 1


def test_every_string_from_the_run_is_escaped(tmp_path: Path) -> None:
    evil = SCRIPT + IMG
    run = make_run_dir(tmp_path / IMG, name=evil, error_message=evil, prompt=evil, target="ws://h/" + evil)
    other = make_run_dir(tmp_path / "other")
    for page in (render_report([run.path]), render_report([run.path, other.path])):
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page
        # the figures JSON carries the directory name as a trace label: no "<" may survive
        script = re.search(r"var figures = (.*?);\n", page, re.S).group(1)
        assert "<" not in script and ">" not in script


def test_the_figures_json_cannot_close_its_script(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "a<b>&amp;<!--")  # a directory name cannot hold "/"
    other = make_run_dir(tmp_path / "b")
    page = render_report([run.path, other.path])
    names = {t["name"] for fig in figures_of(page).values() for t in fig["data"] if "name" in t}
    assert "a&lt;b&gt;&amp;amp;&lt;!--" in names  # HTML-escaped for plotly, JSON-escaped for <script>
    assert "\\u003cb\\u003e\\u0026amp;" not in page  # escaped for HTML first: no raw "<" left to escape
    assert "a\\u0026lt;b\\u0026gt;\\u0026amp;amp;\\u0026lt;!--" in page
    assert page.count("</script>") == 2  # the plotly bundle's and the figures'


@pytest.mark.parametrize(
    ("saturated", "dropped", "interrupted", "insecure"),
    [(False, 0, False, False), (True, 0, False, False), (False, 5, False, True), (True, 3, True, False)],
)
def test_warnings_appear_exactly_when_flagged(
    tmp_path: Path, saturated, dropped, interrupted, insecure
) -> None:
    run = make_run_dir(tmp_path / "r", saturated=saturated, dropped=dropped, interrupted=interrupted,
                       tls_insecure=insecure)  # fmt: skip
    page = render_report([run.path])
    assert page.count('data-warning="saturated"') == int(saturated)
    assert page.count('data-warning="dropped"') == int(dropped > 0)
    assert page.count('data-warning="interrupted"') == int(interrupted)
    assert page.count('data-warning="tls-insecure"') == int(insecure)
    assert ('class="warnings"' in page) == (saturated or dropped > 0 or interrupted or insecure)
    if saturated:
        assert "event-loop lag p99 55.0 ms &gt; 50 ms" in page
    if dropped:
        assert f"<b>{run.summary['requests']['dropped']:,} requests were dropped</b>" in page


def test_comparison_overlays_both_runs(tmp_path: Path) -> None:
    a = make_run_dir(tmp_path / "baseline-run", name="smoke-baseline", seed=1)
    b = make_run_dir(tmp_path / "candidate-run", name="smoke-candidate", seed=2, ttft_ms=200, saturated=True)
    out = build_report([a.path, b.path], out=tmp_path / "compare.html")
    page = out.read_text(encoding="utf-8")
    for name in ("smoke-baseline", "smoke-candidate", "baseline-run", "candidate-run"):
        assert name in page
    figures = figures_of(page)
    assert len(figures) == 8
    for metric in ("ttft", "itl", "e2e"):
        assert [t["name"] for t in figures[f"chart-spectrum-{metric}"]["data"]] == [
            "baseline-run",
            "candidate-run",
        ]
    assert page.count('data-warning="saturated"') == 1
    assert "<code>candidate-run</code>: <b>The load generator was saturated" in page
    with pytest.raises(BadInput, match="output path"):
        build_report([a.path, b.path])


def test_spectrum_merges_every_interval_of_the_hlog(run) -> None:
    ttft = run.summary["latency_ms"]["ttft"]
    total = read_hlog_total(run.path / "ttft.hlog")
    assert total.percentile_us(99) / 1000 == ttft["p99"]
    spectrum = spectrum_from_histogram(total)
    assert spectrum.count == ttft["count"]
    assert spectrum.values_ms[-1] == ttft["max"]
    assert list(spectrum.values_ms) == sorted(spectrum.values_ms)
    assert spectrum.percentiles[0] == 0 and spectrum.values_ms[0] == pytest.approx(ttft["min"], rel=1e-3)
    fig = figures_of(render_report([run.path]))["chart-spectrum-ttft"]
    xs = fig["data"][0]["x"]
    # the maximum sits at the last sample, 1/(1 - (N-1)/N) = N or beyond, never at x = ∞
    assert xs[0] == 1 and xs[-1] >= ttft["count"] - 1e-6 and fig["data"][0]["y"][-1] == ttft["max"]
    assert fig["layout"]["xaxis"]["type"] == "log"
    assert fig["layout"]["xaxis"]["ticktext"][:4] == ["50%", "90%", "99%", "99.9%"]


def test_missing_hlog_falls_back_to_summary_then_says_no_data(run) -> None:
    (run.path / "itl.hlog").unlink()
    figures = figures_of(render_report([run.path]))
    assert figures["chart-spectrum-itl"]["data"][0]["name"].endswith("(summary percentiles)")
    assert figures["chart-spectrum-itl"]["data"][0]["y"][1] == run.summary["latency_ms"]["itl"]["p50"]
    summary = json.loads((run.path / "summary.json").read_text())
    summary["latency_ms"]["itl"] = {"count": 0} | dict.fromkeys(("min", "mean", "p50", "p99", "max"))
    (run.path / "summary.json").write_text(json.dumps(summary))
    page = render_report([run.path])
    assert "chart-spectrum-itl" not in figures_of(page) and len(figures_of(page)) == 7
    assert '<div class="chart chart-empty"><h3>itl latency by percentile</h3><p>no data</p></div>' in page


def test_chunks_per_answer_is_counted_from_requests_csv_when_summary_lacks_it(run) -> None:
    expected = {int(k): v for k, v in run.summary["chunks_per_answer"].items()}
    summary = json.loads((run.path / "summary.json").read_text())
    del summary["chunks_per_answer"]
    (run.path / "summary.json").write_text(json.dumps(summary))
    bars = figures_of(render_report([run.path]))["chart-chunks-per-answer"]["data"][0]
    assert dict(zip(bars["x"], bars["y"], strict=True)) == expected
    (run.path / "requests.csv").unlink()
    assert "chart-chunks-per-answer" not in figures_of(render_report([run.path]))


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("summary.json", None, r"summary\.json: missing"),
        ("summary.json", "{not json", r"summary\.json: not valid JSON \(line 1"),
        ("summary.json", '{"scenario": "x"}', r"summary\.json: field 'started_at' is missing"),
        ("timeseries.csv", None, r"timeseries\.csv: missing"),
        ("timeseries.csv", "t_s,phase\n0,warmup\n", r"timeseries\.csv: missing column\(s\) offered"),
        ("timeseries.csv", b"\xff\xfe\x00garbage", r"timeseries\.csv"),
        ("scenario.yaml", None, r"scenario\.yaml: missing"),
        (
            "itl.hlog",
            "0.0,1.0,2.0,HISTFAAAnotbase64!!\n",
            r"itl\.hlog: line 1 is not an HdrHistogram interval",
        ),
    ],
)
def test_a_broken_run_directory_is_bad_input_naming_the_file(run, name, damage, message) -> None:
    target = run.path / name
    if damage is None:
        target.unlink()
    elif isinstance(damage, bytes):
        target.write_bytes(damage)
    else:
        target.write_text(damage)
    with pytest.raises(BadInput, match=message) as info:
        build_report([run.path])
    assert info.value.exit_code == 2
    assert not (run.path / "report.html").exists()


def test_no_such_run_directory(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="not a run directory"):
        render_report([tmp_path / "nope"])
    with pytest.raises(BadInput, match="no run directory"):
        render_report([])


def test_build_writes_the_report_atomically_into_the_run_directory(run) -> None:
    (run.path / "report.html").write_text("old")
    path = build_report([run.path])
    assert path == run.path / "report.html"
    assert path.read_text(encoding="utf-8") == render_report([run.path])
    assert sorted(p.name for p in run.path.iterdir() if p.name.startswith(".")) == []
    with pytest.raises(BadInput, match="not a directory"):
        build_report([run.path], out=run.path / "no" / "such" / "report.html")


@pytest.fixture(scope="module")
def ten_minute_run(tmp_path_factory):
    """600 s at 100 req/s: 600 timeseries rows, ~60,000 requests, 600 intervals per hlog."""
    path = tmp_path_factory.mktemp("big") / "long-20261128T000000Z"
    run = make_run_dir(path, duration_s=602, warmup_s=2, rate_per_s=100, hlog_metrics=("ttft", "itl", "e2e"))
    yield run
    shutil.rmtree(path)


@pytest.mark.realtime
@pytest.mark.slow  # builds a 60,000-row run directory: ~5 s, so not in the fast tier
def test_a_ten_minute_run_at_100_per_second_stays_under_10_mb(ten_minute_run) -> None:
    path = ten_minute_run.path
    assert ten_minute_run.requests > 58_000
    assert len((path / "timeseries.csv").read_text().splitlines()) - 1 >= 600
    assert sum(1 for line in (path / "itl.hlog").read_text().splitlines() if line[0].isdigit()) >= 600
    page = build_report([path]).read_text(encoding="utf-8")
    assert len(page.encode()) < 10_000_000
    # per-request data is aggregated, never embedded: everything but plotly.js stays small
    assert len(page) - len(get_plotlyjs()) < 1_500_000
    assert figures_of(page)["chart-spectrum-itl"]["data"][0]["x"][-1] > 100_000  # ~2.4M gaps merged


def test_cancelled_requests_are_shown_and_warned(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "r")
    summary = json.loads((run.path / "summary.json").read_text())
    summary["requests"]["cancelled"] = 7
    (run.path / "summary.json").write_text(json.dumps(summary))
    page = render_report([run.path])
    assert page.count('data-warning="cancelled"') == 1
    assert "<b>7 requests were cancelled</b>" in page and " · 7 cancelled" in page
    summary["requests"]["cancelled"] = 0
    (run.path / "summary.json").write_text(json.dumps(summary))
    assert 'data-warning="cancelled"' not in render_report([run.path])


def test_host_steal_is_shown_when_measured(run) -> None:
    assert "host steal" not in render_report([run.path])  # not in the summary: not shown
    summary = json.loads((run.path / "summary.json").read_text())
    summary["generator"]["host_steal_percent"] = 12.5
    (run.path / "summary.json").write_text(json.dumps(summary))
    assert "host steal 12.5 %" in render_report([run.path])
