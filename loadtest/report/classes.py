"""The report's request classes (issue 19): one row per ``key=value`` tag, its SLO verdicts,
and its TTFT drawn per tag.

Which tags get a row (:func:`shown_tags`, the console's rule too): a tag is a class of its own when its key took two or
more values in the run (``web_search=true`` and ``web_search=false``), or when fewer requests
carried it than the run offered (a ``tier=free`` set on one step only). A key with one value
that every request carried (``tools=false`` when no step has tools) describes the whole run
again and gets no row, unless a per-tag SLO names it. The section is shown when at least one
tag is a class of its own, or a per-tag SLO was set (a tag SLO whose tag no request carried
gets a row of its own, failed, saying so). A run without ``by_tag`` (written before classes
existed) has no section.

The chart shows TTFT p50/p90/p99 per tag from summary.json (bars, grouped by key); each key with
two to :data:`MAX_SPECTRUM_VALUES` values also gets a percentile spectrum per value, from the
tag's own ``by_tag/<tag_dir_name>/ttft.hlog`` (or summary.json's percentiles without it), drawn
like the run's spectra. Tags come from the scenario: escaped where they meet HTML and plotly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from loadtest.metrics.tags import tag_dir_name
from loadtest.report import charts
from loadtest.report.sections import RUN_COLOURS, ReportRun, _get, _ms, _num, _pill, _short
from loadtest.rundir import read_hlog_total
from loadtest.rundir.classes import classes_shown, offered_of
from loadtest.slo import AT_LEAST

__all__ = ["MAX_SPECTRUM_VALUES", "classes_section", "read_tag_spectra", "shown_tags"]

#: a key with more values than this gets no spectrum (its lines could not be told apart)
MAX_SPECTRUM_VALUES = 8


def _split(tag: str) -> tuple[str, str]:
    key, _, value = tag.partition("=")
    return key, value


def _by_tag(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    by_tag = summary.get("by_tag")
    return {t: f for t, f in by_tag.items() if isinstance(f, dict)} if isinstance(by_tag, dict) else {}


def _slo_by_tag(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    slo = summary.get("slo_by_tag")
    return {t: v for t, v in slo.items() if isinstance(v, dict)} if isinstance(slo, dict) else {}


def shown_tags(summary: Mapping[str, Any]) -> list[str]:
    """The tags that get a row (:func:`loadtest.rundir.classes.classes_shown`, the console's
    rule too); empty: no section."""
    return classes_shown(summary)


def _spectrum_keys(summary: Mapping[str, Any], tags: Sequence[str]) -> dict[str, list[str]]:
    """key → its shown values' tags, for the keys that get a spectrum (2..MAX values with data)."""
    by_tag = _by_tag(summary)
    keys: dict[str, list[str]] = {}
    for tag in tags:
        if _get(by_tag.get(tag), "latency_ms", "ttft", "count"):
            keys.setdefault(_split(tag)[0], []).append(tag)
    return {k: v for k, v in keys.items() if 2 <= len(v) <= MAX_SPECTRUM_VALUES}


def read_tag_spectra(path: Path, summary: Mapping[str, Any]) -> dict[str, charts.Spectrum | None]:
    """The TTFT spectrum of each tag the section draws one for: its hlog's intervals merged,
    else summary.json's percentiles, else None."""
    by_tag = _by_tag(summary)
    out: dict[str, charts.Spectrum | None] = {}
    for tags in _spectrum_keys(summary, shown_tags(summary)).values():
        for tag in tags:
            hlog = path / "by_tag" / tag_dir_name(tag) / "ttft.hlog"
            total = read_hlog_total(hlog) if hlog.exists() else None
            out[tag] = (charts.spectrum_from_histogram(total) if total is not None
                        else charts.spectrum_from_summary(_get(by_tag[tag], "latency_ms", "ttft") or {}))  # fmt: skip
    return out


# ---- the table -----------------------------------------------------------------------------


def _slo_cell(verdicts: Mapping[str, Any] | None, tag: str) -> str:
    if not verdicts:
        return '<span class="muted">—</span>'
    lines = []
    for name, v in verdicts.items():
        ok = v.get("pass") if isinstance(v, dict) else None
        if isinstance(v, dict) and v.get("reason"):  # judged on nothing: why, on a line of its own
            figure = (f'<span class="muted">{"≥" if name in AT_LEAST else "≤"} {_short(v.get("limit"))}</span>'
                      f'<div class="bad reason">{escape(str(v["reason"]))}</div>')  # fmt: skip
        else:
            bound = "≥" if name in AT_LEAST else "≤"  # the limit the value had to meet
            figure = (f'<span class="{"bad" if ok is False else ""}">{_short(_get(v, "value"))}</span>'
                      f' <span class="muted">{bound} {_short(_get(v, "limit"))}</span>')  # fmt: skip
        lines.append(f'<div class="tag-slo" data-tag-slo="{escape(tag)}/{escape(name)}" '
                     f'data-pass="{str(ok).lower()}">{_pill(ok)} <code>{escape(name)}</code> {figure}</div>')  # fmt: skip
    return "".join(lines)


def _share(v: Any) -> str:
    return "—" if isinstance(v, bool) or not isinstance(v, int | float) else f"{v:.1%}"


def _row(figures: Mapping[str, Any], goodput: bool, tokens: bool) -> dict[str, str]:
    """The figure cells of one row (of a tag, or of the whole run), by column id."""
    lat = figures.get("latency_ms") or {}
    req = figures.get("requests") or {}
    rate = figures.get("error_rate")
    cells = {
        "offered": _num(offered_of(req) if req else None),
        "completed": _num(req.get("completed")),
        "failed": _num(req.get("failed")),
        "error_rate": _share(rate) if rate is not None else "—",
        "ttft_p50": _ms(_get(lat, "ttft", "p50")),
        "ttft_p99": _ms(_get(lat, "ttft", "p99")),
        "tpot_p50": _ms(_get(lat, "tpot", "p50")),
        "e2e_p99": _ms(_get(lat, "e2e", "p99")),
        "answers_per_s": _num(_get(figures, "throughput", "requests_per_s"), 1),
    }
    if goodput:
        cells["goodput"] = _share(_get(figures, "goodput", "share"))
    if tokens:
        cells["output_tokens_per_s"] = _num(_get(figures, "tokens", "output_per_s"), 0)
    return cells


_HEAD = {
    "offered": "offered", "completed": "completed", "failed": "failed", "error_rate": "error rate",
    "ttft_p50": "TTFT p50", "ttft_p99": "TTFT p99", "tpot_p50": "TPOT p50", "e2e_p99": "e2e p99",
    "answers_per_s": "answers / s", "goodput": "goodput", "output_tokens_per_s": "output tokens / s",
}  # fmt: skip


def classes_table(run: ReportRun, tags: Sequence[str]) -> str:
    """One row per tag in ``tags`` (grouped by key), after a row for the whole run; each
    ``<tr data-tag>`` and ``<td data-col>`` is named for readers (and tests)."""
    s = run.summary
    by_tag, slo = _by_tag(s), _slo_by_tag(s)
    goodput = isinstance(s.get("goodput"), dict) or any(isinstance(f.get("goodput"), dict) for f in by_tag.values())
    tokens = isinstance(s.get("tokens"), dict) or any(isinstance(f.get("tokens"), dict) for f in by_tag.values())
    run_figures = {**s, "requests": {**(s.get("requests") or {}), "offered": offered_of(s.get("requests") or {})}}
    cols = list(_row({}, goodput, tokens))
    head = "<th>tag</th>" + "".join(f"<th>{_HEAD[c]}</th>" for c in cols) + "<th>tag SLOs</th>"

    def tr(tag: str | None, label: str, cells: Mapping[str, str], slo_cell: str, cls: str) -> str:
        attr = "" if tag is None else f' data-tag="{escape(tag)}"'
        tds = "".join(f'<td data-col="{c}">{cells[c]}</td>' for c in cols)
        return f'<tr class="{cls}"{attr}><td>{label}</td>{tds}<td data-col="slo">{slo_cell}</td></tr>'

    rows = [tr(None, "<b>all requests</b>", _row(run_figures, goodput, tokens), "", "class-all")]
    last_key = None
    for tag in tags:
        key, value = _split(tag)
        figures = by_tag.get(tag)
        label = f'<code><span class="muted">{escape(key)}=</span>{escape(value)}</code>'
        cells = _row(figures, goodput, tokens) if figures else {c: '<span class="muted">—</span>' for c in cols}
        if not figures:
            cells["offered"] = "0"
        rows.append(tr(tag, label, cells, _slo_cell(slo.get(tag), tag), "group-start" if key != last_key else ""))
        last_key = key
    return f'<table class="num classes"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


# ---- the charts ----------------------------------------------------------------------------


def ttft_by_tag_figure(run: ReportRun, tags: Sequence[str]) -> dict[str, Any] | None:
    """TTFT p50/p90/p99 per tag as grouped bars on a two-level axis (key, value)."""
    by_tag = _by_tag(run.summary)
    drawn = [t for t in tags if _get(by_tag.get(t), "latency_ms", "ttft", "count")]
    if not drawn:
        return None
    x = [[escape(_split(t)[0]) for t in drawn], [escape(_split(t)[1]) for t in drawn]]
    traces = []
    for pct, colour in (("p50", "#93c5fd"), ("p90", "#3b82f6"), ("p99", "#1e3a8a")):
        traces.append({
            "type": "bar", "name": f"TTFT {pct}", "x": x,
            "y": [_get(by_tag[t], "latency_ms", "ttft", pct) for t in drawn],
            "customdata": [escape(t) for t in drawn],
            "marker": {"color": colour, "line": {"width": 0}},
            "hovertemplate": f"%{{customdata}}: {pct} <b>%{{y:.1f}} ms</b><extra></extra>",
        })  # fmt: skip
    layout = charts._layout("TTFT by tag", y_title="ms", x_title="", barmode="group", bargap=0.25)
    layout["xaxis"] |= {"type": "multicategory", "tickangle": 0}
    return {"data": traces, "layout": layout}


def tag_spectrum_figures(run: ReportRun, tags: Sequence[str]) -> list[tuple[str, dict[str, Any] | None]]:
    """``[(key, figure)]``: one TTFT spectrum per key with 2..MAX values, a line per value."""
    out = []
    for key, key_tags in _spectrum_keys(run.summary, tags).items():
        series = [(_split(t)[1], RUN_COLOURS[i % len(RUN_COLOURS)], run.tag_spectra.get(t))
                  for i, t in enumerate(key_tags)]  # fmt: skip
        fig = charts.spectrum_figure("ttft", series)
        if fig is not None:
            fig["layout"]["title"]["text"] = f"TTFT by percentile, by {escape(key)}"
            fig["layout"]["showlegend"] = True
        out.append((key, fig))
    return out


def classes_section(run: ReportRun, figures: dict[str, dict[str, Any]] | None, chart_prefix: str = "") -> str:
    """The section's HTML ("" when :func:`shown_tags` is empty). With ``figures``, the charts
    too (added under ``chart-<prefix>…`` ids); without, the table alone."""
    tags = shown_tags(run.summary)
    if not tags:
        return ""
    note = ('<p class="muted">One row per <code>key=value</code> a request carried, over the measured '
            "window: a request counts in each of its tags, so rows of different keys overlap. "
            "Keys with one value that every request carried are left out.</p>")  # fmt: skip
    charts_html = ""
    if figures is not None:
        slots = []
        for name, fig, title in [("ttft-by-tag", ttft_by_tag_figure(run, tags), "TTFT by tag"),
                                 *((f"ttft-spectrum-{i}", f, f"TTFT by percentile, by {escape(k)}")
                                   for i, (k, f) in enumerate(tag_spectrum_figures(run, tags)))]:  # fmt: skip
            if fig is None:
                slots.append(f'<div class="chart chart-empty"><h3>{title}</h3><p>no data</p></div>')
                continue
            div_id = f"chart-{chart_prefix}{name}"
            figures[div_id] = fig
            slots.append(f'<div class="chart" id="{div_id}"></div>')
        grid = "grid-2" if len(slots) > 1 else ""
        charts_html = f'<div class="{grid} class-charts">{"".join(slots)}</div>'
    return f"""<section class="card classes" id="classes"><h2>Request classes <small>per tag, measured
  phase; latencies in ms</small></h2>{note}<div class="table-scroll">{classes_table(run, tags)}</div>{charts_html}</section>"""
