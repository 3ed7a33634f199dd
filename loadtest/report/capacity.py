"""``capacity.html``: a sweep's capacity.json drawn — the latency curve with the SLO limit, the
answer band, the knee and its monotone fit; throughput and goodput with the USL fit;
achieved vs offered; the steps with their pass shares. Self-contained like report.html.

Reads only the capacity.json document (a dict), so it knows nothing of how the sweep ran.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

from loadtest.report.html import page
from loadtest.rundir import write_atomic

__all__ = ["build_capacity_report", "render_capacity"]

_BLUE, _PINK, _GREEN, _GREY, _RED = "#2563eb", "#db2777", "#059669", "#6b7280", "#b91c1c"
_PCT = re.compile(r"^(?P<metric>ttft|itl|e2e)_p(?P<p>\d+)_ms$")


def _layout(title: str, x_title: str, y_title: str, **extra: Any) -> dict[str, Any]:
    lay: dict[str, Any] = {
        "title": {"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15}},
        "height": 380, "margin": {"l": 56, "r": 20, "t": 64, "b": 48},
        "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom", "font": {"size": 11}},
        "xaxis": {"title": {"text": x_title}, "gridcolor": "#eef0f3", "zeroline": False},
        "yaxis": {"title": {"text": y_title}, "gridcolor": "#eef0f3", "zeroline": False, "rangemode": "tozero"},
        "paper_bgcolor": "#ffffff", "plot_bgcolor": "#ffffff", "shapes": [], "annotations": [],
    }
    lay.update(extra)
    return lay


def _band(answer: Mapping[str, Any], lay: dict[str, Any]) -> None:
    lo, hi = answer.get("bracket") or [None, None]
    if lo is not None and hi is not None:
        lay["shapes"].append({"type": "rect", "xref": "x", "yref": "paper", "x0": lo, "x1": hi, "y0": 0, "y1": 1,
                              "fillcolor": "rgba(21,128,61,0.12)", "line": {"width": 0}, "layer": "below"})
    if lo is not None:
        lay["shapes"].append({"type": "line", "xref": "x", "yref": "paper", "x0": lo, "x1": lo, "y0": 0, "y1": 1,
                              "line": {"color": _GREEN, "width": 2}})
        lay["annotations"].append({"x": lo, "y": 1, "xref": "x", "yref": "paper", "text": f"answer {lo:g}",
                                   "showarrow": False, "xanchor": "right", "yanchor": "bottom",
                                   "font": {"color": _GREEN}})


def _latency_figure(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    pts = [p for p in doc["curve"]["points"] if p["latency_ms"].get("ttft")]
    if not pts:
        return None
    traces: list[dict[str, Any]] = []
    for pct, colour in (("p50", "#93c5fd"), ("p90", "#60a5fa"), ("p99", _BLUE)):
        traces.append({"type": "scatter", "mode": "markers", "name": f"TTFT {pct}", "x": [p["load"] for p in pts],
                       "y": [p["latency_ms"]["ttft"].get(pct) for p in pts], "marker": {"color": colour, "size": 8}})
    knee = doc["curve"].get("knee")
    lay = _layout("TTFT against load", doc["unit"], "ms")
    if knee:
        traces.append({"type": "scatter", "mode": "lines", "name": "monotone fit of p99",
                       "x": [x for x, _ in knee["fit"]], "y": [y for _, y in knee["fit"]],
                       "line": {"color": _BLUE, "dash": "dot", "shape": "hv"}})
        if knee.get("load") is not None:
            lay["shapes"].append({"type": "line", "xref": "x", "yref": "paper", "x0": knee["load"],
                                  "x1": knee["load"], "y0": 0, "y1": 1, "line": {"color": _PINK, "dash": "dash"}})
            lay["annotations"].append({"x": knee["load"], "y": 0.92, "xref": "x", "yref": "paper",
                                       "text": f"knee {knee['load']:g} ({escape(knee['method'])})",
                                       "showarrow": False, "xanchor": "left", "font": {"color": _PINK, "size": 11}})
    for name, limit in doc["slo"].items():
        m = _PCT.match(name)
        if m and m.group("metric") == "ttft":
            lay["shapes"].append({"type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": limit,
                                  "y1": limit, "line": {"color": _RED, "dash": "dash"}})
            lay["annotations"].append({"x": 0, "y": limit, "xref": "paper", "yref": "y", "showarrow": False,
                                       "text": f"SLO {name} {limit:g}", "xanchor": "left", "yanchor": "bottom",
                                       "font": {"color": _RED, "size": 11}})
    _band(doc["answer"], lay)
    return {"data": traces, "layout": lay}


def _throughput_figure(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    pts = doc["curve"]["points"]
    if not pts:
        return None
    ok = [p for p in pts if not p["overloaded"]]
    traces: list[dict[str, Any]] = [
        {"type": "scatter", "mode": "markers", "name": "throughput (req/s)", "x": [p["load"] for p in ok],
         "y": [p["throughput_rps"] for p in ok], "marker": {"color": _BLUE, "size": 8}},
        {"type": "scatter", "mode": "markers", "name": "goodput (met every SLO)", "x": [p["load"] for p in ok],
         "y": [p["goodput_rps"] for p in ok], "marker": {"color": _GREEN, "size": 7, "symbol": "diamond"}},
    ]
    over = [p for p in pts if p["overloaded"]]
    if over:
        traces.append({"type": "scatter", "mode": "markers", "name": "overloaded (not a data point)",
                       "x": [p["load"] for p in over], "y": [p["throughput_rps"] for p in over],
                       "marker": {"color": _RED, "size": 9, "symbol": "x"}})
    model = doc["curve"]["model"]
    title = "Throughput against load"
    if model.get("kind") == "usl" and "lambda" in model:
        top = max(p["load"] for p in pts)
        xs = [top * 1.25 * i / 60 for i in range(1, 61)]
        lam, sig, kap = model["lambda"], model["sigma"], model["kappa"]
        traces.append({"type": "scatter", "mode": "lines", "name": f"USL fit σ={sig:.3g} κ={kap:.2g}", "x": xs,
                       "y": [lam * n / (1 + sig * (n - 1) + kap * n * (n - 1)) for n in xs],
                       "line": {"color": _GREY, "dash": "dot"}})
        title += " · Universal Scalability Law"
    if doc["mode"] == "open":
        rated = [p for p in pts if p.get("achieved_rate") is not None]
        traces.append({"type": "scatter", "mode": "markers+lines", "name": "achieved rate (sent in window)",
                       "x": [p["load"] for p in rated], "y": [p["achieved_rate"] for p in rated],
                       "line": {"color": _PINK, "width": 1}})
        top = max(p["load"] for p in pts)
        traces.append({"type": "scatter", "mode": "lines", "name": "achieved = offered", "x": [0, top],
                       "y": [0, top], "line": {"color": "#d1d5db", "dash": "dash"}})
    lay = _layout(title, doc["unit"], "per second")
    _band(doc["answer"], lay)
    return {"data": traces, "layout": lay}


def _num(v: Any, fmt: str = ".1f") -> str:
    return "—" if v is None else format(v, fmt)


def _standing(ans: Mapping[str, Any], load: str, share: float) -> str:
    """A level's standing (capacity.json ``standing``: pass, fail, unsure); older files: by share."""
    standing = ans.get("standing", {}).get(load)
    if standing is None:
        return "pass" if share >= ans["required_share"] - 1e-9 else "fail"
    if int(ans["replicates"][load]) > 1:
        return {"pass": "reliably passing", "fail": "reliably failing"}.get(str(standing), str(standing))
    return str(standing)


def _tables(doc: Mapping[str, Any]) -> str:
    ans = doc["answer"]
    levels = "".join(
        f"<tr><td>{escape(k)}</td><td>{ans['replicates'][k]}</td><td>{share:.0%}</td>"
        f"<td>{escape(_standing(ans, k, share))}</td></tr>"
        for k, share in ans["pass_share"].items())
    rows = []
    for s in doc["steps"]:
        lat = s.get("latency_ms", {}).get("ttft", {})
        verdict = "overloaded" if s["overloaded"] else ("pass" if s["passed"] else "fail")
        rows.append(
            f"<tr><td>{s['index']}</td><td>{s['load']:g}</td><td>{s['replicate']}</td><td>{verdict}</td>"
            f"<td>{_num(lat.get('p50'))}</td><td>{_num(lat.get('p99'))}</td><td>{_num(s['throughput_rps'])}</td>"
            f"<td>{_num(s.get('goodput_rps'))}</td><td>{_num(s['offered_rate'])} / {_num(s['achieved_rate'])}</td>"
            f"<td><a href=\"{escape(s['run_dir'])}/report.html\">{escape(s['run_dir'])}</a></td></tr>")
    return (f"""<section class="card"><h2>Levels <small>pass share of replicates</small></h2><table>
<thead><tr><th>load</th><th>replicates</th><th>passed</th><th>standing</th></tr></thead><tbody>{levels}</tbody></table>
</section><section class="card"><h2>Steps <small>in the order run; overloaded steps give no latency figure</small></h2>
<table><thead><tr><th>#</th><th>load</th><th>replicate</th><th>verdict</th><th>TTFT p50 ms</th><th>TTFT p99 ms</th>
<th>req/s</th><th>goodput/s</th><th>offered / achieved /s</th><th>run</th></tr></thead><tbody>{''.join(rows)}</tbody>
</table></section>""")


def _model_text(doc: Mapping[str, Any]) -> str:
    model = doc["curve"]["model"]
    if model.get("kind") == "usl":
        if "lambda" not in model:
            return f"USL: not fitted ({escape(str(model.get('refused')))})."
        peak = (f"peak at {model['peak_users']:.0f} users" if model.get("peak_users") is not None
                else f"no peak reported ({escape(str(model.get('peak_refused')))})")
        return (f"USL: λ = {model['lambda']:.3g} req/s per user, σ = {model['sigma']:.3g} "
                f"[{model['sigma_ci'][0]:.3g}, {model['sigma_ci'][1]:.3g}], κ = {model['kappa']:.3g} "
                f"[{model['kappa_ci'][0]:.3g}, {model['kappa_ci'][1]:.3g}] ({model['confidence']:.0%} bootstrap); "
                f"{peak}.")
    rate = model.get("max_rate")
    return ("Highest rate with ≥ 90 % of requests within every SLO: "
            + ("none" if rate is None else f"{rate:g}/s") + ".")


def render_capacity(doc: Mapping[str, Any]) -> str:
    """The page's HTML for a capacity.json document."""
    ans = doc["answer"]
    figures: dict[str, dict[str, Any]] = {}
    charts = []
    for fid, fig in (("cap-latency", _latency_figure(doc)), ("cap-throughput", _throughput_figure(doc))):
        if fig is not None:
            figures[fid] = fig
            charts.append(f'<section class="card"><div id="{fid}" class="chart"></div></section>')
    ok = ans["exit_code"] == 0
    warn = ""
    if ans["inconclusive"] or ans["ended_by"] != "search":
        warn = (f'<div class="card warning"><strong>Ended by: {escape(ans["ended_by"])}</strong>'
                f'{" — inconclusive" if ans["inconclusive"] else ""}</div>')
    knee = doc["curve"].get("knee")
    knee_text = ("knee: —" if not knee or knee.get("load") is None
                 else f"knee at {knee['load']:g} ({escape(knee['method'])})")
    body = f"""<header class="card headline {'is-pass' if ok else 'is-fail'}">
<div class="eyebrow">Capacity · {escape(doc['scenario'])} · {escape(doc['mode'])} loop</div>
<h1>{escape(ans['line'])}</h1>
<div class="meta"><span>bracket {escape(str(ans['bracket']))} {escape(doc['unit'])}</span>
<span>binding SLO {escape(str(ans['binding_slo']))}</span><span>{knee_text}</span></div>
<p>{_model_text(doc)}</p></header>{warn}{''.join(charts)}{_tables(doc)}"""
    return page(f"Capacity of {escape(doc['scenario'])} — loadtest", body, figures)


def build_capacity_report(doc: Mapping[str, Any], out: Path) -> Path:
    """Write ``capacity.html`` atomically and return its path."""
    write_atomic(out, render_capacity(doc))
    return out
