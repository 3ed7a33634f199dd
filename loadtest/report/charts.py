"""The report's charts: plotly figures built from one or several loaded runs.

Each builder takes ``[(label, colour, run), …]`` and returns a plotly figure as a plain dict
(``{"data": …, "layout": …}``), or ``None`` when no run has data for it; the page then says
"no data". Labels come from the run (its directory name): they are HTML-escaped before they
reach plotly, whose text rendering understands a subset of HTML.

The latency spectrum is HdrHistogram's percentile-distribution plot: x = 1/(1−p) on a log axis,
so each decade is one more nine (90 %, 99 %, 99.9 %…), and the tail gets as much room as the
median. See HdrHistogram's plotFiles.html and Gil Tene, "How NOT to measure latency".
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loadtest.errors import ERROR_CATEGORIES
from loadtest.metrics.recorder import Recorder

__all__ = [
    "SPECTRUM_METRICS",
    "Spectrum",
    "charts_section",
    "spectrum_from_histogram",
    "spectrum_from_summary",
]

SPECTRUM_METRICS = ("ttft", "itl", "e2e")
_FONT = "Inter, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
_GRID = "#eceef2"
_INK = "#1f2937"
_MUTED = "#6b7280"
ERROR_COLOURS = {
    "auth": "#7c3aed",
    "connect": "#0891b2",
    "disconnect": "#f59e0b",
    "server_error": "#dc2626",
    "timeout": "#db2777",
    "protocol": "#65a30d",
    "dropped": "#9ca3af",
}


@dataclass(frozen=True)
class Spectrum:
    """Latency (ms) against percentile; ``source`` is ``"hlog"`` or ``"summary"``."""

    percentiles: tuple[float, ...]  # 0..100, strictly below 100
    values_ms: tuple[float, ...]
    count: int
    source: str


def spectrum_from_histogram(hist: Recorder) -> Spectrum:
    """Percentile points as HdrHistogram's ``outputPercentileDistribution`` prints them
    (:meth:`Recorder.spectrum`); ``hist`` holds at least one value."""
    points = [(q * 100, ms) for q, ms in hist.spectrum() if q < 1]
    # The maximum sits at the percentile of the last sample, (N−1)/N, not at 100 % (x = ∞).
    count = hist.count
    last = 100 * (1 - 1 / count) if count > 1 else 0.0
    if not points or last > points[-1][0]:
        points.append((last, (hist.max_us or 0) / 1000))
    pcts, values = zip(*points, strict=True)
    return Spectrum(tuple(pcts), tuple(values), count, "hlog")


_SUMMARY_POINTS = (("min", 0.0), ("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0), ("p999", 99.9))


def spectrum_from_summary(figures: Mapping[str, Any]) -> Spectrum | None:
    """A coarse spectrum from summary.json's percentiles, when the metric has no hlog."""
    count = figures.get("count") or 0
    points = [(p, float(figures[k])) for k, p in _SUMMARY_POINTS if isinstance(figures.get(k), int | float)]
    if not count or not points:
        return None
    if isinstance(figures.get("max"), int | float) and count > 1:
        points.append((max(100 * (1 - 1 / count), points[-1][0]), float(figures["max"])))
    pcts, values = zip(*points, strict=True)
    return Spectrum(tuple(pcts), tuple(values), int(count), "summary")


# ---- figures ------------------------------------------------------------------------------


def _layout(title: str, *, y_title: str, x_title: str = "seconds since start", **extra: Any) -> dict[str, Any]:
    layout = {
        "title": {"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15, "color": _INK}},
        "font": {"family": _FONT, "size": 12, "color": _INK},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "margin": {"l": 56, "r": 20, "t": 64, "b": 48},
        "height": 340,
        "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom", "font": {"size": 11}},
        "hoverlabel": {"font": {"family": _FONT}},
        "xaxis": {"title": {"text": x_title, "font": {"color": _MUTED}}, "gridcolor": _GRID,
                  "zeroline": False, "linecolor": "#d1d5db"},
        "yaxis": {"title": {"text": y_title, "font": {"color": _MUTED}}, "gridcolor": _GRID,
                  "zeroline": False, "rangemode": "tozero", "linecolor": "#d1d5db"},
    }  # fmt: skip
    layout.update(extra)
    return layout


def _pct_label(p: float) -> str:
    return f"{p:.4f}".rstrip("0").rstrip(".") + "%"


def spectrum_figure(metric: str, series: Sequence[tuple[str, str, Spectrum | None]]) -> dict[str, Any] | None:
    """One trace per run on shared axes; ``series`` is ``[(label, colour, spectrum)]``."""
    traces = []
    max_x = 10.0
    for label, colour, spec in series:
        if spec is None:
            continue
        xs = [1 / (1 - p / 100) for p in spec.percentiles]
        max_x = max(max_x, xs[-1])
        note = " (summary percentiles)" if spec.source == "summary" else ""
        traces.append({
            "type": "scatter", "mode": "lines+markers" if spec.source == "summary" else "lines",
            "name": html.escape(label) + note, "x": xs, "y": list(spec.values_ms),
            "customdata": [_pct_label(p) for p in spec.percentiles],
            "line": {"color": colour, "width": 2, "shape": "hv" if spec.source == "hlog" else "linear"},
            "marker": {"size": 5},
            "hovertemplate": "p%{customdata}: <b>%{y:.2f} ms</b><extra>%{fullData.name}</extra>",
        })  # fmt: skip
    if not traces:
        return None
    # x = 1/(1-p): 1 is 0 %, 2 is 50 %, 10 is 90 %, each further decade one more nine.
    ticks = [2, 10, 100, 1_000, 10_000, 100_000, 1_000_000]
    labels = ["50%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
    layout = _layout(
        f"{metric} latency by percentile", y_title="ms", x_title="percentile",
        showlegend=len(series) > 1,
    )  # fmt: skip
    layout["xaxis"] |= {
        "type": "log", "tickvals": ticks, "ticktext": labels,
        "range": [0, math.log10(max_x) * 1.02], "tickangle": 0,
    }  # fmt: skip
    return {"data": traces, "layout": layout}


def _warmup_shape(runs: Sequence[tuple[str, str, Any]]) -> list[dict[str, Any]]:
    """Shade the warm-up seconds and the drain after the window (of a single run: they
    differ between runs): neither is in any rate of the summary."""
    if len(runs) != 1 or runs[0][2].timeseries is None:
        return []
    ts = runs[0][2].timeseries
    shapes = []
    for phase, text in (("warmup", "warm-up"), ("drain", "drain")):
        seconds = ts.loc[ts["phase"] == phase, "t_s"]
        if seconds.empty:
            continue
        shapes.append({
            "type": "rect", "xref": "x", "yref": "paper", "x0": float(seconds.min()) - 0.5,
            "x1": float(seconds.max()) + 0.5, "y0": 0, "y1": 1, "fillcolor": "#f3f4f6",
            "line": {"width": 0}, "layer": "below",
            "label": {"text": text, "textposition": "top left", "font": {"size": 10, "color": _MUTED}},
        })  # fmt: skip
    return shapes


def _line(name: str, x: Any, y: Any, colour: str, **extra: Any) -> dict[str, Any]:
    trace = {
        "type": "scatter", "mode": "lines", "name": html.escape(name), "x": list(x),
        "y": [None if v != v else float(v) for v in y],  # NaN → gap (v != v only for NaN)
        "line": {"color": colour, "width": 1.8},
    }  # fmt: skip
    trace.update(extra)
    return trace


def _time_runs(runs: Sequence[tuple[str, str, Any]]) -> list[tuple[str, str, Any]]:
    return [(label, colour, run.timeseries) for label, colour, run in runs if run.timeseries is not None]


def ttft_figure(runs: Sequence[tuple[str, str, Any]]) -> dict[str, Any] | None:
    traces = []
    single = len(runs) == 1
    for label, colour, ts in _time_runs(runs):
        prefix = "" if single else f"{label} "
        traces.append(_line(f"{prefix}p99", ts["t_s"], ts["ttft_p99_ms"], "#dc2626" if single else colour))
        traces.append(_line(f"{prefix}p50", ts["t_s"], ts["ttft_p50_ms"], "#2563eb" if single else colour,
                            line={"color": "#2563eb" if single else colour, "width": 1.5,
                                  "dash": "solid" if single else "dot"}))  # fmt: skip
    if not traces:
        return None
    layout = _layout(
        "TTFT p50 / p99 per second", y_title="ms", hovermode="x unified", shapes=_warmup_shape(runs)
    )
    return {"data": traces, "layout": layout}


def rate_figure(runs: Sequence[tuple[str, str, Any]]) -> dict[str, Any] | None:
    traces = []
    single = len(runs) == 1
    for label, colour, ts in _time_runs(runs):
        prefix = "" if single else f"{label} "
        traces.append(
            _line(
                f"{prefix}offered",
                ts["t_s"],
                ts["offered"],
                "#9ca3af" if single else colour,
                line={"color": "#9ca3af" if single else colour, "width": 1.5, "dash": "dash"},
            )
        )
        traces.append(_line(f"{prefix}achieved", ts["t_s"], ts["achieved"], "#2563eb" if single else colour))
        traces.append(_line(f"{prefix}active sessions", ts["t_s"], ts["active_sessions"],
                            "#059669" if single else colour, yaxis="y2",
                            line={"color": "#059669" if single else colour, "width": 1.2, "dash": "dot"}))  # fmt: skip
    if not traces:
        return None
    layout = _layout("Offered vs achieved rate", y_title="requests / s", hovermode="x unified",
                     shapes=_warmup_shape(runs))  # fmt: skip
    layout["yaxis2"] = {"title": {"text": "active sessions", "font": {"color": _MUTED}}, "overlaying": "y",
                        "side": "right", "rangemode": "tozero", "showgrid": False, "zeroline": False,
                        "tickmode": "auto", "tickformat": ",d"}  # fmt: skip
    layout["margin"] = layout["margin"] | {"r": 56}
    if len(traces) > 4:  # a comparison: the legend takes rows, keep it off the title
        layout["legend"] |= {"y": -0.2, "yanchor": "top"}
        layout["margin"] |= {"b": 96, "t": 44}
        layout["height"] = 400
    return {"data": traces, "layout": layout}


def chunks_figure(runs: Sequence[tuple[str, str, Any]]) -> dict[str, Any] | None:
    traces = [
        _line(label, ts["t_s"], ts["chunks"], colour, fill="tozeroy" if len(runs) == 1 else "none",
              fillcolor="rgba(37, 99, 235, 0.08)")
        for label, colour, ts in _time_runs(runs)
    ]  # fmt: skip
    if not traces:
        return None
    layout = _layout("Chunks per second", y_title="chunks / s", hovermode="x unified",
                     shapes=_warmup_shape(runs), showlegend=len(runs) > 1)  # fmt: skip
    return {"data": traces, "layout": layout}


def errors_figure(runs: Sequence[tuple[str, str, Any]]) -> dict[str, Any] | None:
    """Stacked failures per category (one run); total failures per run (several)."""
    timed = _time_runs(runs)
    if not timed:
        return None
    traces: list[dict[str, Any]] = []
    if len(runs) == 1:
        ts = timed[0][2]
        for cat in (*ERROR_CATEGORIES, "dropped"):
            col = "dropped" if cat == "dropped" else f"err_{cat}"
            if col in ts and ts[col].fillna(0).sum() > 0:
                traces.append({"type": "bar", "name": cat, "x": list(ts["t_s"]),
                               "y": [int(v) for v in ts[col].fillna(0)],
                               "marker": {"color": ERROR_COLOURS[cat], "line": {"width": 0}}})  # fmt: skip
        title, mode = "Errors per second, by category", "stack"
    else:
        for label, colour, ts in timed:
            traces.append(_line(label, ts["t_s"], ts["failures"].fillna(0), colour))
        title, mode = "Failed requests per second", "group"
    layout = _layout(title, y_title="requests / s", barmode=mode, bargap=0.1, hovermode="x unified",
                     shapes=_warmup_shape(runs))  # fmt: skip
    if traces and len(runs) == 1 and max(sum(t["y"][i] for t in traces) for i in range(len(ts))) <= 6:
        layout["yaxis"] |= {"dtick": 1}  # a few failures: whole numbers, not 0.2 steps
    if not traces:
        layout["annotations"] = [{"text": "no errors", "showarrow": False, "xref": "paper", "yref": "paper",
                                  "x": 0.5, "y": 0.5, "font": {"size": 16, "color": "#16a34a"}}]  # fmt: skip
        layout["yaxis"] |= {"range": [0, 1]}
        traces.append({"type": "bar", "x": list(timed[0][2]["t_s"]), "y": [0] * len(timed[0][2]), "showlegend": False,
                       "hoverinfo": "skip"})  # fmt: skip
    return {"data": traces, "layout": layout}


def chunks_per_answer_figure(runs: Sequence[tuple[str, str, Any]]) -> dict[str, Any] | None:
    traces = []
    for label, colour, run in runs:
        hist: Mapping[int, int] | None = run.chunks_per_answer
        if not hist:
            continue
        xs = sorted(hist)
        traces.append({"type": "bar", "name": html.escape(label), "x": xs, "y": [hist[x] for x in xs],
                       "marker": {"color": colour, "opacity": 0.85 if len(runs) == 1 else 0.6, "line": {"width": 0}},
                       "hovertemplate": "%{x} chunks: <b>%{y}</b> answers<extra>%{fullData.name}</extra>"})  # fmt: skip
    if not traces:
        return None
    layout = _layout("Chunks per answer", y_title="answers", x_title="chunks in the answer",
                     barmode="overlay", bargap=0.05, showlegend=len(runs) > 1)  # fmt: skip
    layout["xaxis"] = {**layout.get("xaxis", {}), "tickformat": "d"}  # whole chunks, never 19.6
    if len({x for t in traces for x in t["x"]}) <= 20:
        layout["xaxis"]["dtick"] = 1
    return {"data": traces, "layout": layout}


def charts_section(coloured: Sequence[tuple[str, str, Any]], figures: dict[str, dict[str, Any]]) -> str:
    """The charts' HTML: a div per chart (its figure added to ``figures`` under the div's id),
    or a "no data" box. ``coloured`` is ``[(label, colour, run)]``; labels are escaped here."""

    def slot(name: str, fig: dict[str, Any] | None, title: str) -> str:
        if fig is None:
            return f'<div class="chart chart-empty"><h3>{title}</h3><p>no data</p></div>'
        div_id = f"chart-{name}"
        figures[div_id] = fig
        return f'<div class="chart" id="{div_id}"></div>'

    spectra = "".join(
        slot(f"spectrum-{m}", spectrum_figure(m, [(lbl, c, r.spectra[m]) for lbl, c, r in coloured]),
             f"{m} latency by percentile")
        for m in SPECTRUM_METRICS
    )  # fmt: skip
    over_time = "".join([
        slot("ttft", ttft_figure(coloured), "TTFT over time"),
        slot("rate", rate_figure(coloured), "Offered vs achieved rate"),
        slot("chunks", chunks_figure(coloured), "Chunks per second"),
        slot("errors", errors_figure(coloured), "Errors per second"),
    ])  # fmt: skip
    answers = slot("chunks-per-answer", chunks_per_answer_figure(coloured), "Chunks per answer")
    return f"""<section class="card"><h2>Latency spectrum <small>HdrHistogram percentile distribution,
  measured phase</small></h2><div class="grid-3">{spectra}</div></section>
<section class="card"><h2>Over time <small>one point per second</small></h2><div class="grid-2">{over_time}</div></section>
<section class="card"><h2>Answers</h2>{answers}</section>"""
