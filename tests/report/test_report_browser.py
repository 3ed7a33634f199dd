"""The report in headless Chromium: it draws every chart offline, quietly, and runs nothing
that came from the run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.rundir_factory import make_run_dir

from loadtest.report.html import build_report

CHROMIUM = Path("/usr/bin/chromium")
CHARTS = 8  # 3 spectra, TTFT, rate, chunks/s, errors, chunks per answer

# Outside CI a missing Chromium skips these tests; in CI (CI=true, where scripts/test.sh
# installs it) a missing browser is a failure, so the browser checks can never silently vanish.
pytestmark = [
    pytest.mark.realtime,
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists() and os.environ.get("CI") != "true",
        reason=f"{CHROMIUM} not installed (apt-get install chromium)",
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
            ],
        )
        yield browser
        browser.close()


@dataclass
class Loaded:
    page: object
    network: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


@pytest.fixture
def load(browser) -> Iterator:
    contexts = []

    def _load(report: Path) -> Loaded:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        loaded = Loaded(page)

        def block(route) -> None:
            if not route.request.url.startswith("file://"):
                loaded.network.append(route.request.url)
                route.abort()
            else:
                route.continue_()

        context.route("**/*", block)
        page.on(
            "request",
            lambda r: None if r.url.startswith(("file:", "data:")) else loaded.network.append(r.url),
        )
        page.on("console", lambda m: loaded.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: loaded.console_errors.append(str(exc)))
        page.goto(report.as_uri(), wait_until="load")
        page.wait_for_function(
            "n => document.querySelectorAll('.js-plotly-plot .main-svg').length >= n", arg=1, timeout=15_000
        )
        page.wait_for_timeout(300)  # let the responsive relayout settle
        return loaded

    yield _load
    for context in contexts:
        context.close()


def _chart_boxes(page) -> list[dict]:
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => {
             const r = el.getBoundingClientRect();
             return {id: el.id, w: r.width, h: r.height, svg: el.querySelectorAll('svg.main-svg').length,
                     traces: el.querySelectorAll('.trace').length};
           })"""
    )


def test_single_run_report_draws_every_chart_offline(tmp_path: Path, load) -> None:
    run = make_run_dir(tmp_path / "smoke-20261128T000000Z", duration_s=30, saturated=True, dropped=4)
    loaded = load(build_report([run.path]))
    page = loaded.page
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000  # a drawn page, not a blank one
    boxes = _chart_boxes(page)
    assert len(boxes) == CHARTS
    for box in boxes:
        assert box["w"] > 300 and box["h"] > 200, box
        assert box["svg"] >= 1 and box["traces"] >= 1, box
    assert loaded.network == []
    assert loaded.console_errors == []
    assert page.locator(".verdict").inner_text().startswith("PASS")
    assert page.locator("[data-warning]").count() == 2
    # the spectrum's x axis reads in percentiles
    ticks = page.locator("#chart-spectrum-ttft .xtick text").all_text_contents()
    assert {"50%", "90%", "99%"} <= set(ticks)


def test_comparison_report_overlays_the_runs(tmp_path: Path, load) -> None:
    a = make_run_dir(tmp_path / "base", seed=1)
    b = make_run_dir(tmp_path / "candidate", seed=2, ttft_ms=180)
    loaded = load(build_report([a.path, b.path], out=tmp_path / "compare.html"))
    boxes = {box["id"]: box for box in _chart_boxes(loaded.page)}
    assert len(boxes) == CHARTS
    for metric in ("ttft", "itl", "e2e"):
        assert boxes[f"chart-spectrum-{metric}"]["traces"] == 2
    assert loaded.page.locator("#chart-spectrum-ttft .legendtext").all_text_contents() == [
        "base",
        "candidate",
    ]
    assert loaded.network == [] and loaded.console_errors == []


def test_strings_from_the_run_are_shown_not_run(tmp_path: Path, load) -> None:
    script = "<script>window.__pwned=1</script>"
    img = '<img src=x onerror="window.__pwned=1">'
    run = make_run_dir(tmp_path / "evil", name=script + img, error_message=script + img, prompt=img + script,
                       failure_rate=0.2)  # fmt: skip
    loaded = load(build_report([run.path]))
    page = loaded.page
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("img").count() == 0
    assert script + img in page.locator("h1").inner_text()
    assert img + script in page.locator("pre.scenario").inner_text()
    assert (
        script + img in page.locator("ul.samples").first.inner_text()
        or script + img in page.locator("table.errors").inner_text()
    )
    assert loaded.network == []  # img src=x would have been a request
    assert len(_chart_boxes(page)) == CHARTS


def test_capacity_report_draws_its_curve_offline(tmp_path: Path, load, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: capacity.html, checked like report.html (a sweep driven by faked steps)."""
    from support.fakesweep import fake_steps, run_faked_sweep

    fake_steps(monkeypatch, [0.0])
    _, cap = run_faked_sweep(tmp_path, [0.0])
    loaded = load(tmp_path / "out" / "capacity.html")
    page = loaded.page
    boxes = _chart_boxes(page)
    assert len(boxes) >= 2  # latency vs load (SLO line, answer band, knee), throughput vs load (USL fit)
    for box in boxes:
        assert box["w"] > 300 and box["h"] > 200 and box["svg"] >= 1 and box["traces"] >= 1, box
    assert cap["answer"]["line"] in page.locator("body").inner_text()
    assert loaded.network == [] and loaded.console_errors == []


def test_request_classes_draw_offline(tmp_path: Path, load) -> None:
    """Issue 19: the per-tag TTFT bars (two-level axis) and the per-key spectra draw, quietly."""
    run = make_run_dir(tmp_path / "tagged", tags={"web_search": ["false", "true"], "step": ["ask", "gen2"]},
                       tag_delay_ms={"web_search=true": 400}, slo_by_tag={"tools=true": {"ttft_p99_ms": 1}},
                       goodput_ttft_ms=300, tokens_per_chunk=3)  # fmt: skip
    loaded = load(build_report([run.path]))
    page = loaded.page
    boxes = {box["id"]: box for box in _chart_boxes(page)}
    assert len(boxes) == CHARTS + 3  # TTFT by tag, a spectrum per key
    assert boxes["chart-ttft-by-tag"]["traces"] == 3
    assert boxes["chart-ttft-spectrum-0"]["traces"] == boxes["chart-ttft-spectrum-1"]["traces"] == 2
    for box in boxes.values():
        assert box["w"] > 300 and box["h"] > 200 and box["svg"] >= 1, box
    # the axis reads by key, then value; the table fits its card
    ticks = page.locator("#chart-ttft-by-tag .xtick text, #chart-ttft-by-tag .xtick2 text").all_text_contents()
    assert {"ask", "gen2", "false", "true", "step", "web_search"} <= set(ticks), ticks
    card, table = page.locator("#classes").bounding_box(), page.locator("#classes table").bounding_box()
    assert table["width"] <= card["width"]
    assert page.locator('#classes tr[data-tag="tools=true"] [data-pass="false"]').inner_text().startswith("FAIL")
    assert loaded.network == [] and loaded.console_errors == []
