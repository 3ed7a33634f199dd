"""The report's request classes (issue 19): the per-tag table with its SLO verdicts, the per-tag
TTFT charts, goodput and tokens beside throughput; and old run directories without them."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from support.helpers import run_cli
from support.rundir_factory import make_run_dir

from loadtest.metrics.tags import tag_dir_name
from loadtest.report.html import build_report, render_report
from loadtest.rundir import read_hlog_total
from loadtest.slo import NO_REQUESTS

WEB = {"web_search": ["false", "true"]}


def figures_of(page: str) -> dict:
    match = re.search(r"var figures = (\{.*?\});\n", page, re.S)
    assert match, "no figures in the page"
    return json.loads(match.group(1))


def row(page: str, tag: str) -> dict[str, str]:
    """The cells of the classes table's row for ``tag``, by column id (their inner HTML)."""
    match = re.search(rf'<tr class="[^"]*" data-tag="{re.escape(html.escape(tag))}">(.*?)</tr>', page, re.S)
    assert match, f"no row for {tag}"
    return dict(re.findall(r'<td data-col="(\w+)">(.*?)</td>', match.group(1), re.S))


def ms(v: float) -> str:
    """A latency as the report prints it: 2 decimals under 10 ms, 1 under 100, none above."""
    return f"{v:,.2f}" if v < 10 else f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def text_of(page: str) -> str:
    """The page without its scripts (plotly.js holds every word there is)."""
    return re.sub(r"<script>.*?</script>", "", page, flags=re.S)


@pytest.fixture
def tagged(tmp_path: Path):
    return make_run_dir(tmp_path / "tagged", tags=WEB, tag_delay_ms={"web_search=true": 800}, goodput_ttft_ms=300,
                        tokens_per_chunk=3)  # fmt: skip


def test_each_row_shows_its_tags_own_figures(tagged) -> None:
    page = render_report([tagged.path])
    assert 'id="classes"' in page
    by_tag = tagged.summary["by_tag"]
    for tag in ("web_search=false", "web_search=true"):
        f, cells = by_tag[tag], row(page, tag)
        lat = f["latency_ms"]
        assert cells["offered"] == f"{f['requests']['offered']:,}"
        assert cells["completed"] == f"{f['requests']['completed']:,}"
        assert cells["failed"] == f"{f['requests']['failed']:,}"
        assert cells["error_rate"] == f"{f['error_rate']:.1%}"
        assert cells["ttft_p50"] == ms(lat["ttft"]["p50"])
        assert cells["ttft_p99"] == ms(lat["ttft"]["p99"])
        assert cells["tpot_p50"] == ms(lat["tpot"]["p50"])
        assert cells["e2e_p99"] == ms(lat["e2e"]["p99"])
        assert cells["answers_per_s"] == f"{f['throughput']['requests_per_s']:,.1f}"
        assert cells["goodput"] == f"{f['goodput']['share']:.1%}"
        assert cells["output_tokens_per_s"] == f"{f['tokens']['output_per_s']:,.0f}"
    # the classes really differ (800 ms of search): the rows are not the pooled figures
    assert by_tag["web_search=true"]["latency_ms"]["ttft"]["p50"] > by_tag["web_search=false"]["latency_ms"]["ttft"]["p99"]
    assert row(page, "web_search=true")["ttft_p99"] == "1,065"
    assert by_tag["web_search=true"]["goodput"]["share"] == 0 and row(page, "web_search=true")["goodput"] == "0.0%"
    # the whole run first, for comparison
    whole = re.search(r'<tr class="class-all">(.*?)</tr>', page, re.S).group(1)
    assert f'<td data-col="ttft_p99">{ms(tagged.summary["latency_ms"]["ttft"]["p99"])}</td>' in whole
    assert f'<td data-col="offered">{tagged.summary["requests"]["started"]:,}</td>' in whole


def test_the_section_is_absent_for_one_class_or_an_old_run(tmp_path: Path) -> None:
    # one key with one value that every request carried: the whole run again, no section
    one = make_run_dir(tmp_path / "one", tags={"web_search": ["false"]})
    assert list(one.summary["by_tag"]) == ["web_search=false"]
    # a run directory written before classes (no by_tag, goodput, tokens, slo_by_tag) still renders
    old = make_run_dir(tmp_path / "old")
    assert "by_tag" not in old.summary and "goodput" not in old.summary
    for run in (one, old):
        page = render_report([run.path])
        assert 'id="classes"' not in page and "data-tag=" not in page and "Request classes" not in page
        assert not any(k.startswith("chart-ttft-by-tag") for k in figures_of(page))
        assert len(figures_of(page)) == 8  # the run's own charts, as before


def test_a_tag_only_some_requests_carried_is_a_class(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "partial", tags={"tier": ["free"], "tools": ["false"]})
    assert 'id="classes"' not in render_report([run.path])
    summary = json.loads((run.path / "summary.json").read_text())
    summary["by_tag"]["tier=free"]["requests"]["offered"] -= 10  # a step without the tag
    (run.path / "summary.json").write_text(json.dumps(summary))
    page = render_report([run.path])
    assert row(page, "tier=free")["offered"] == f"{summary['by_tag']['tier=free']['requests']['offered']:,}"
    assert 'data-tag="tools=false"' not in page  # every request carried it: no row


def test_tag_slos_are_shown_and_a_tag_no_request_carried_fails(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "slo", tags=WEB, tag_delay_ms={"web_search=true": 800}, slo_ttft_p99_ms=5000,
                       slo_by_tag={"web_search=true": {"ttft_p99_ms": 400}, "web_search=false": {"ttft_p99_ms": 400},
                                   "tools=true": {"ttft_p99_ms": 400}})  # fmt: skip
    verdicts = run.summary["slo_by_tag"]
    assert verdicts["tools=true"]["ttft_p99_ms"] == {"limit": 400, "value": None, "pass": False, "reason": NO_REQUESTS}
    assert verdicts["web_search=true"]["ttft_p99_ms"]["pass"] is False
    assert verdicts["web_search=false"]["ttft_p99_ms"]["pass"] is True
    page = render_report([run.path])
    assert 'data-verdict="fail"' in page and not run.summary["passed"]
    # in the headline's SLO table: the run's two SLOs pass, two tag SLOs fail, one passes
    slo_table = re.search(r'<table class="slo">.*?</table>', page, re.S).group(0)
    assert slo_table.count("pill-fail") == 2 and slo_table.count("pill-pass") == len(run.summary["slo"]) + 1
    assert f'<span class="bad">{NO_REQUESTS}</span>' in slo_table
    value = verdicts["web_search=true"]["ttft_p99_ms"]["value"]
    assert '<code>ttft_p99_ms</code> <span class="muted">for</span> <code>web_search=true</code>' in slo_table
    assert f'<span class="bad">{value:,.3f}'.rstrip("0").rstrip(".") in slo_table
    # in the classes table: each tag's verdicts in its row; the tag nobody carried has a row
    true_slo = row(page, "web_search=true")["slo"]
    assert 'data-tag-slo="web_search=true/ttft_p99_ms" data-pass="false"' in true_slo and "FAIL" in true_slo
    assert 'data-pass="true"' in row(page, "web_search=false")["slo"]
    nobody = row(page, "tools=true")
    assert nobody["offered"] == "0"
    assert 'data-pass="false"' in nobody["slo"] and NO_REQUESTS in nobody["slo"] and "FAIL" in nobody["slo"]


def test_the_ttft_chart_draws_each_tags_percentiles(tagged) -> None:
    by_tag = tagged.summary["by_tag"]
    bars = figures_of(render_report([tagged.path]))["chart-ttft-by-tag"]
    assert [t["name"] for t in bars["data"]] == ["TTFT p50", "TTFT p90", "TTFT p99"]
    for trace in bars["data"]:
        assert trace["x"] == [["web_search", "web_search"], ["false", "true"]]  # grouped by key
        pct = trace["name"].split()[1]
        assert trace["y"] == [by_tag[t]["latency_ms"]["ttft"][pct] for t in ("web_search=false", "web_search=true")]
    assert bars["layout"]["xaxis"]["type"] == "multicategory"


def test_the_spectrum_per_key_merges_each_tags_hlog(tagged) -> None:
    by_tag = tagged.summary["by_tag"]
    spectrum = figures_of(render_report([tagged.path]))["chart-ttft-spectrum-0"]
    assert spectrum["layout"]["title"]["text"] == "TTFT by percentile, by web_search"
    assert [t["name"] for t in spectrum["data"]] == ["false", "true"]
    for trace, tag in zip(spectrum["data"], ("web_search=false", "web_search=true"), strict=True):
        ttft = by_tag[tag]["latency_ms"]["ttft"]
        total = read_hlog_total(tagged.path / "by_tag" / tag_dir_name(tag) / "ttft.hlog")
        assert total.count == ttft["count"] and total.percentile_us(99) / 1000 == ttft["p99"]
        assert trace["y"][-1] == ttft["max"] and trace["x"][-1] >= ttft["count"] - 1e-6
    # without the tag's hlog: summary.json's percentiles, said so
    (tagged.path / "by_tag" / "web_search=true" / "ttft.hlog").unlink()
    fallback = figures_of(render_report([tagged.path]))["chart-ttft-spectrum-0"]["data"][1]
    assert fallback["name"] == "true (summary percentiles)"
    assert fallback["y"][1] == by_tag["web_search=true"]["latency_ms"]["ttft"]["p50"]


def test_goodput_and_tokens_beside_throughput_only_when_present(tagged, tmp_path: Path) -> None:
    s = tagged.summary
    page = text_of(render_report([tagged.path]))
    gp, tok = s["goodput"], s["tokens"]
    assert f'<div class="tile-label">Goodput</div><div class="tile-value">{gp["share"]:.1%}</div>' in page
    assert f"{gp['good']:,} of {gp['offered']:,} good" in page and "ttft ≤ 300 ms" in page
    assert f'<div class="tile-label">Output tokens / s</div><div class="tile-value">{tok["output_per_s"]:,.0f}<' in page
    assert f"prompts {tok['prompt_total']:,}, client-sent" in page
    # without a tokenizer nothing about tokens (a chunk is not a token); without a rule no goodput
    plain = make_run_dir(tmp_path / "plain", tags=WEB)
    assert plain.summary["tokens"] is None and plain.summary["goodput"] is None
    for run in (plain, make_run_dir(tmp_path / "old")):
        text = text_of(render_report([run.path])).lower()
        assert "tokens" not in text and "tokenizer" not in text and "tpot_token" not in text
        assert "goodput" not in text


def test_tags_from_the_scenario_are_escaped(tmp_path: Path) -> None:
    evil = '<img src=x onerror="alert(1)">'
    run = make_run_dir(tmp_path / "evil", tags={"kind": [evil, "plain"]}, slo_by_tag={f"kind={evil}": {"ttft_p99_ms": 1}})
    page = render_report([run.path])
    assert "<img" not in page and html.escape(evil) in page
    script = re.search(r"var figures = (.*?);\n", page, re.S).group(1)
    assert "<" not in script and ">" not in script
    assert row(page, f"kind={evil}")["offered"] == f"{run.summary['by_tag'][f'kind={evil}']['requests']['offered']:,}"


def test_folded_tag_values_are_warned(tagged) -> None:
    summary = json.loads((tagged.path / "summary.json").read_text())
    summary["tags_folded"] = {"user": 12}
    (tagged.path / "summary.json").write_text(json.dumps(summary))
    page = render_report([tagged.path])
    assert page.count('data-warning="tags-folded"') == 1
    assert "12 more were counted together as <code>user=other</code>" in page


def test_a_comparison_shows_each_runs_classes_in_its_details(tagged, tmp_path: Path) -> None:
    old = make_run_dir(tmp_path / "old")
    page = build_report([old.path, tagged.path], out=tmp_path / "cmp.html").read_text(encoding="utf-8")
    assert page.count('id="classes"') == 1 and 'data-tag="web_search=true"' in page
    assert len(figures_of(page)) == 8  # the overlaid charts only: a closed <details> draws none
    assert re.search(r"<tr><td>goodput</td><td>—</td><td>[\d.]+%</td></tr>", page)
    assert f"<tr><td>output tokens / s</td><td>—</td><td>{tagged.summary['tokens']['output_per_s']:,.0f}</td></tr>" in page


# ---- a real run: the embedded mock, a word-level tokenizer, the CLI ------------------------


@pytest.mark.realtime
def test_a_real_runs_report_shows_its_classes(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    # the mock's answer words and the prompts' (an unknown word would still count as one token)
    words = ["Artificial", "intelligence", "is", "the", "study", "of", "systems", "that", "perceive", ",", "reason",
             "learn", "and", "act", ";", "modern", "models", "predict", "next", "token", "from", "vast", "corpora",
             "Explain", "artificial", "search"]  # fmt: skip
    vocab = {"[UNK]": 0} | {w: i + 1 for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tok.json"))
    (tmp_path / "sc.yaml").write_text("""
name: tagged
target: {url: mock, tokenizer: tok.json}
mock: {ttft_ms: 20, gap_ms: 2, chunks: 5, words_per_chunk: 3}
load: {mode: closed, concurrency: 2, duration: 2s, warmup: 0.5s, seed: 1}
session:
  steps:
    - gen: {name: ask, prompt: "Explain artificial intelligence", web_search_share: 0.5, enableWebSearch: true}
    - gen: {prompt: "Explain search"}
slo:
  by_tag: {"web_search=true": {ttft_p99_ms: 0.001}}
  goodput: {ttft_ms: 1000}
""")
    out = tmp_path / "run"
    done = run_cli("run", "sc.yaml", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # the impossible tag SLO fails the run
    s = json.loads((out / "summary.json").read_text())
    page = (out / "report.html").read_text(encoding="utf-8")
    for tag in ("step=ask", "step=gen2", "web_search=false", "web_search=true"):
        cells = row(page, tag)
        assert cells["ttft_p99"] == ms(s["by_tag"][tag]["latency_ms"]["ttft"]["p99"])
        assert cells["offered"] == f"{s['by_tag'][tag]['requests']['offered']:,}"
        assert cells["output_tokens_per_s"] == f"{s['by_tag'][tag]['tokens']['output_per_s']:,.0f}"
    assert 'data-tag-slo="web_search=true/ttft_p99_ms" data-pass="false"' in row(page, "web_search=true")["slo"]
    assert 'data-tag="tools=false"' not in page  # no step had tools: every request carried tools=false
    spectrum = figures_of(page)["chart-ttft-spectrum-0"]  # "step" sorts first; read from by_tag/step=*/ttft.hlog
    assert [t["name"] for t in spectrum["data"]] == ["ask", "gen2"]
    assert spectrum["data"][0]["y"][-1] == s["by_tag"]["step=ask"]["latency_ms"]["ttft"]["max"]
    assert f'<div class="tile-value">{s["tokens"]["output_per_s"]:,.0f}<' in page
