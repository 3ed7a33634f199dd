"""The report's "Target metrics" section (issue 21): the target's own Prometheus series, scraped
during the run (``--scrape``, ``target_metrics.csv``), drawn under the run's TTFT p99 on one
shared time axis, so that a latency step lines up with the proxy's queue depth; and a table of
the scrapes that answered or failed, per URL (summary.json ``live.scrape``), failures as a warning.

Which series (at most :data:`MAX_SERIES`, at most :data:`MAX_PER_FAMILY` label sets of one
metric): those whose names speak of queues, work in flight, work served or refused first, then
those that moved during the run, then the rest, in the order the target exposed them. Histogram
buckets, ``_sum``, ``_created``, summary quantiles and the client libraries' process and runtime
series are left out. A counter (``*_total``, a histogram's ``_count``) is drawn as its rate per
second between scrapes (a reset gives a gap, never a negative rate); a gauge as it is.

Shown when the run was scraped (target_metrics.csv is there, or summary.json has
``live.scrape``). Metric names, labels, URLs and errors come from the target: escaped here.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loadtest.report import charts
from loadtest.report.sections import ReportRun, _num, _table, _warning_block
from loadtest.rundir.targetmetrics import read_target_metrics

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MAX_PER_FAMILY", "MAX_SERIES", "TargetSeries", "choose_series", "target_figure", "target_section"]

#: target series drawn at most (one panel per metric, under the TTFT panel)
MAX_SERIES = 8
#: label sets of one metric drawn at most
MAX_PER_FAMILY = 4
_COLOURS = ("#7c3aed", "#059669", "#d97706", "#0891b2", "#db2777", "#4b5563", "#65a30d", "#2563eb")
_SKIP_SUFFIXES = ("_bucket", "_sum", "_created")
_NOISE = re.compile(r"^(process_|python_|go_|promhttp_|scrape_|jvm_|nodejs_)")
_RANKS = (
    (re.compile(r"queue|waiting|pending|backlog|wait"), 5),
    (re.compile(r"active|in_?flight|running|concurren|stream|busy|slots?\b|occup"), 4),
    (re.compile(r"served|abandon|request|gens?\b|gen_|error|fail|reject|drop|timeout|token"), 3),
)


@dataclass(frozen=True)
class TargetSeries:
    """One series drawn: ``rate`` when a counter drawn per second."""

    target: str
    metric: str
    labels: str
    rate: bool
    t_s: tuple[float, ...]
    values: tuple[float | None, ...]

    @property
    def family(self) -> tuple[str, str]:
        return (self.target, self.metric)


def _is_counter(metric: str) -> bool:
    return metric.endswith(("_total", "_count"))


def _score(metric: str, values: Sequence[float]) -> int:
    score = max((rank for pattern, rank in _RANKS if pattern.search(metric)), default=0)
    finite = [v for v in values if v == v]
    if finite and max(finite) != min(finite):
        score += 2  # it moved during the run
    if metric.endswith("_count"):
        score -= 1  # a histogram's count: its requests, drawn when room is left
    if _NOISE.match(metric):
        score -= 10
    return score


def _rates(t_s: Sequence[float], values: Sequence[float]) -> list[float | None]:
    """Per second between consecutive scrapes (at the later one's time); None at the first
    and across a reset (the counter went down) or a NaN."""
    out: list[float | None] = [None]
    for (t0, v0), (t1, v1) in itertools.pairwise(zip(t_s, values, strict=True)):
        dt, dv = t1 - t0, v1 - v0
        out.append(dv / dt if dt > 0 and dv >= 0 and dv == dv else None)
    return out


def choose_series(frame: pd.DataFrame) -> list[TargetSeries]:
    """The series the section draws (see the module's doc), in panel order."""
    candidates = []
    for order, ((target, metric, labels), group) in enumerate(frame.groupby(["target", "metric", "labels"],
                                                                             sort=False)):  # fmt: skip
        name = str(metric)
        if name.endswith(_SKIP_SUFFIXES) or "quantile=" in str(labels):
            continue
        group = group.sort_values("t_s", kind="stable")
        t_s = [float(t) for t in group["t_s"]]
        values = [float(v) for v in group["value"]]
        if all(v != v for v in values):
            continue
        candidates.append((-_score(name, values), order, str(target), name, str(labels), t_s, values))
    candidates.sort(key=lambda c: (c[0], c[1]))
    chosen: list[TargetSeries] = []
    per_family: dict[tuple[str, str], int] = {}
    for _, _, target, metric, labels, t_s, values in candidates:
        if len(chosen) == MAX_SERIES:
            break
        if per_family.get((target, metric), 0) == MAX_PER_FAMILY:
            continue
        per_family[(target, metric)] = per_family.get((target, metric), 0) + 1
        rate = _is_counter(metric)
        shown: list[float | None] = _rates(t_s, values) if rate else [v if v == v else None for v in values]
        chosen.append(TargetSeries(target, metric, labels, rate, tuple(t_s), tuple(shown)))
    # panels in the order their best series was chosen; a panel's series together
    families = list(dict.fromkeys(s.family for s in chosen))
    return sorted(chosen, key=lambda s: families.index(s.family))


def target_figure(run: ReportRun, series: Sequence[TargetSeries], *, several_targets: bool) -> dict[str, Any]:
    """TTFT p99 per second on top, then one panel per target metric, all on one time axis."""
    families = list(dict.fromkeys(s.family for s in series))
    panels = 1 + len(families)
    gap = 0.04
    height = (1 - gap * (panels - 1)) / panels
    domains = [(round(1 - (i + 1) * height - i * gap, 4), round(1 - i * height - i * gap, 4)) for i in range(panels)]
    ts = run.timeseries
    ttft = charts._line("TTFT p99", ts["t_s"], ts["ttft_p99_ms"], "#dc2626", yaxis="y",
                        line={"color": "#dc2626", "width": 1.8, "shape": "hv"})  # fmt: skip
    traces: list[dict[str, Any]] = [ttft]
    layout = charts._layout("The target's own metrics under the run's TTFT", y_title="TTFT p99 ms",
                            hovermode="x", shapes=charts._warmup_shape([(run.label, "", run)]))  # fmt: skip
    layout["height"] = 150 + 150 * panels
    layout["yaxis"] |= {"domain": list(domains[0])}
    layout["xaxis"] |= {"anchor": f"y{panels}" if panels > 1 else "y", "showspikes": True,
                        "spikemode": "across", "spikesnap": "cursor", "spikethickness": 1}  # fmt: skip
    annotations = []
    for p, family in enumerate(families, start=2):
        axis = f"y{p}"
        target, metric = family
        members = [s for s in series if s.family == family]
        unit = " / s" if members[0].rate else ""
        title = f"{metric}{unit}" + (f" [target {target}]" if several_targets else "")
        layout[f"yaxis{p}"] = {"domain": list(domains[p - 1]), "anchor": "x", "gridcolor": "#eceef2",
                               "zeroline": False, "rangemode": "tozero", "linecolor": "#d1d5db"}  # fmt: skip
        annotations.append({"text": html.escape(title), "xref": "paper", "yref": f"{axis} domain", "x": 0,
                            "y": 1, "xanchor": "left", "yanchor": "bottom", "showarrow": False,
                            "font": {"size": 11, "color": "#6b7280"}})  # fmt: skip
        for s in members:
            colour = _COLOURS[series.index(s) % len(_COLOURS)]
            name = s.metric + (s.labels or "") + (" / s" if s.rate else "")
            traces.append({"type": "scatter", "mode": "lines+markers", "name": html.escape(name),
                           "x": list(s.t_s), "y": list(s.values), "yaxis": axis,
                           "line": {"color": colour, "width": 1.6}, "marker": {"size": 3}})  # fmt: skip
    layout["annotations"] = annotations
    layout["legend"] |= {"y": -0.08, "yanchor": "top"}
    layout["margin"] = layout["margin"] | {"b": 72}
    return {"data": traces, "layout": layout}


def _scrape_status(summary: Mapping[str, Any]) -> dict[str, Any] | None:
    live = summary.get("live")
    scrape = live.get("scrape") if isinstance(live, dict) else None
    return scrape if isinstance(scrape, dict) else None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _status_table(scrape: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The scrapes per URL, and a warning per URL whose scrapes failed."""
    ok, failed, errors = (_mapping(scrape.get(k)) for k in ("scrapes", "failed", "last_error"))
    urls = [str(u) for u in scrape.get("urls") or []] or list(dict.fromkeys([*ok, *failed]))
    rows, warnings = [], []
    for i, url in enumerate(urls):
        n_failed = failed.get(url)
        bad = isinstance(n_failed, int) and n_failed > 0
        error = errors.get(url)
        rows.append([str(i), f"<code>{html.escape(url)}</code>", _num(ok.get(url)),
                     f'<span class="{"bad" if bad else ""}">{_num(n_failed)}</span>',
                     f'<code>{html.escape(str(error))}</code>' if error else '<span class="muted">—</span>'])  # fmt: skip
        if bad:
            warnings.append(f'<li data-warning="scrape-failed"><b>{_num(n_failed)} scrape(s) of '
                            f"<code>{html.escape(url)}</code> failed</b> (last: "
                            f"<code>{html.escape(str(error or 'no message'))}</code>): its series have gaps "
                            "there, or are missing. The run itself was not affected.</li>")  # fmt: skip
    return _table(["target", "URL", "scrapes ok", "failed", "last error"], rows, "num"), warnings


def target_section(run: ReportRun, figures: dict[str, dict[str, Any]] | None, chart_prefix: str = "") -> str:
    """The section's HTML ("" when the run was not scraped). With ``figures``, the chart too
    (added under ``chart-<prefix>target``); without, the table alone."""
    frame = read_target_metrics(run.path)
    scrape = _scrape_status(run.summary)
    if frame is None and scrape is None:
        return ""
    table, warnings = _status_table(scrape) if scrape else ("", [])
    chart = ""
    if figures is not None:
        series = choose_series(frame) if frame is not None and len(frame) else []
        if series:
            several = frame is not None and frame["target"].nunique() > 1
            div_id = f"chart-{chart_prefix}target"
            figures[div_id] = target_figure(run, series, several_targets=several)
            chart = f'<div class="chart" id="{div_id}"></div>'
        else:
            chart = '<div class="chart chart-empty"><h3>Target metrics</h3><p>no data</p></div>'
    samples = 0 if frame is None else len(frame)
    note = (f'<p class="muted">{_num(samples)} samples scraped from the target\'s Prometheus endpoint, '
            "one scrape a second (and one before and after the run), on the run's clock. Counters are "
            "drawn as rates per second.</p>")  # fmt: skip
    return f"""<section class="card target-metrics" id="target-metrics"><h2>Target metrics <small>the
  target's own, scraped</small></h2>{_warning_block(warnings)}{note}{chart}<div class="table-scroll">{table}</div></section>"""
