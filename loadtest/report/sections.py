"""The report's sections as HTML strings: headline, warnings, tables, details.

Every value that comes from a run directory is untrusted and escaped here, where it meets
HTML (see :mod:`loadtest.report.html`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadtest.errors import ERROR_CATEGORIES
from loadtest.metrics.recorder import METRICS as _METRICS
from loadtest.metrics.tags import MAX_VALUES_PER_KEY
from loadtest.report import charts

if TYPE_CHECKING:
    import pandas as pd

_NUM = (int, float)
RUN_COLOURS = ("#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#4b5563")


@dataclass(frozen=True)
class ReportRun:
    """One run directory as the report reads it (built by :func:`loadtest.report.html.build_report`)."""

    path: Path
    label: str
    #: summary.json as read through :class:`~loadtest.rundir.Summary`, every field present
    #: (defaults filled in for older schemas), looked up by key
    summary: dict[str, Any]
    timeseries: pd.DataFrame
    scenario_text: str
    spectra: dict[str, charts.Spectrum | None]
    chunks_per_answer: dict[int, int] | None
    #: TTFT spectra of the tags the request-classes section draws (:mod:`loadtest.report.classes`)
    tag_spectra: dict[str, charts.Spectrum | None] = field(default_factory=dict)


def _get(d: Any, *keys: str) -> Any:
    for key in keys:
        d = d.get(key) if isinstance(d, dict) else None
    return d


def _num(v: Any, digits: int = 0) -> str:
    if isinstance(v, bool) or not isinstance(v, _NUM):
        return "—"
    return f"{v:,.{digits}f}"


def _short(v: Any) -> str:
    """A limit or an SLO value: up to 3 decimals, no trailing zeros."""
    text = _num(v, 3)
    return text.rstrip("0").rstrip(".") if "." in text else text


def _ms(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, _NUM):
        return "—"
    return f"{v:,.2f}" if v < 10 else f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def _error_rate(s: dict[str, Any]) -> float | None:
    """summary.json's ``error_rate`` (the figure the SLO judges; for older runs without it,
    :class:`~loadtest.rundir.Summary` gives the one formula's value), None when nothing was
    offered."""
    rate = s.get("error_rate")
    return None if rate is None else float(rate)


def _pill(ok: bool | None, yes: str = "PASS", no: str = "FAIL") -> str:
    if ok is None:
        return '<span class="pill pill-none">—</span>'
    return f'<span class="pill {"pill-pass" if ok else "pill-fail"}">{yes if ok else no}</span>'


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """``head`` and ``rows`` are HTML already (escape run strings before)."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


# ---- page sections ---------------------------------------------------------------------------


def _warnings(run: ReportRun, prefix: str = "") -> list[str]:
    s = run.summary
    out = []
    gen = s.get("generator") or {}
    all_reasons = [str(r) for r in gen.get("reasons") or []]
    behind = [r for r in all_reasons if "fell behind" in r] + [str(r) for r in _get(s, "schedule", "behind") or []]
    for reason in behind:
        out.append(("behind", f"<b>{escape(reason[0].upper() + reason[1:])}.</b> The target saw less load "
                    "than the scenario offered; what was not sent in the window went out in the drain "
                    "after it, or never."))  # fmt: skip
    others = [r for r in all_reasons if "fell behind" not in r]
    if gen.get("saturated") and (others or not behind):
        reasons = "; ".join(escape(r) for r in others) or "no reason recorded"
        out.append(("saturated", f"<b>The load generator was saturated</b> ({reasons}). It, not the target, "
                    "may have been the bottleneck: latencies are upper bounds and the offered load was "
                    "not applied as scheduled."))  # fmt: skip
    dropped = _get(s, "requests", "dropped")
    if isinstance(dropped, int) and dropped > 0:
        out.append(("dropped", f"<b>{dropped:,} requests were dropped</b>: they were scheduled but never "
                    "sent, so the target saw less load than the scenario asked for."))  # fmt: skip
    cancelled = _get(s, "requests", "cancelled")
    if isinstance(cancelled, int) and cancelled > 0:
        out.append(("cancelled", f"<b>{cancelled:,} requests were cancelled</b>: still queued or streaming "
                    "when the run ended (after the grace period). The target did not serve them: they "
                    "count in the error rate."))  # fmt: skip
    if s.get("interrupted"):
        out.append(("interrupted", "<b>The run was interrupted</b> before its planned end; the figures "
                    "cover only the part that ran, and its verdict is not a pass."))  # fmt: skip
    for lost in (s.get("workers") or {}).get("lost") or []:
        out.append(("lost", f"<b>A worker was lost</b> ({escape(str(lost))}): its figures stop where it "
                    "stopped streaming them, so the run is incomplete and not a pass."))  # fmt: skip
    session = s.get("session") or {}
    if isinstance(session.get("failed"), int) and session["failed"] > 0:
        out.append(("session-errors", f"<b>{session['failed']:,} of {session.get('steps', 0):,} session steps "
                    "failed</b> (connection set-ups, pings, set-models): the target did not serve them; "
                    "they count in the session error rate."))  # fmt: skip
    for key, n in (s.get("tags_folded") or {}).items():
        out.append(("tags-folded", f"<b>Tag <code>{escape(str(key))}</code> took more than {MAX_VALUES_PER_KEY} "
                    f"values</b>: {_num(n)} more were counted together as <code>{escape(str(key))}=other</code>."))  # fmt: skip
    if _get(s, "tls", "insecure"):
        out.append(("tls-insecure", "<b>TLS certificate verification was off</b>: the identity of the "
                    "target was not checked."))  # fmt: skip
    clamped = [f"{escape(m)} ({f['out_of_range']:,})" for m, f in s["latency_ms"].items()
               if isinstance(f.get("out_of_range"), int) and f["out_of_range"] > 0]  # fmt: skip
    if clamped:
        out.append(("out-of-range", "<b>Some values fell outside 1 µs – 1 h</b> and were clamped: "
                    + ", ".join(clamped) + "."))  # fmt: skip
    return [f'<li data-warning="{kind}">{prefix}{text}</li>' for kind, text in out]


def _warning_block(items: list[str]) -> str:
    if not items:
        return ""
    return f'<section class="warnings" role="alert"><ul>{"".join(items)}</ul></section>'


def _tile(label: str, value: str, sub: str = "") -> str:
    return (f'<div class="tile"><div class="tile-label">{label}</div><div class="tile-value">{value}</div>'
            f'<div class="tile-sub">{sub}</div></div>')  # fmt: skip


def _goodput_tokens_tiles(s: dict[str, Any]) -> list[str]:
    """Goodput (with ``slo.goodput``) and output tokens (with a tokenizer): nothing otherwise,
    since a chunk is not a token."""
    tiles = []
    conv = s.get("conversations")
    if isinstance(conv, dict):  # issue 20: conversations, and how long the completed ones took
        dur, turns = conv.get("duration_ms") or {}, conv.get("turns") or {}
        tiles.append(_tile("Conversations", _num(conv.get("started")),
                           f"{_num(conv.get('completed'))} completed · {_num(conv.get('abandoned'))} abandoned · "
                           f"{_num(conv.get('failed'))} failed · {_num(conv.get('unfinished'))} unfinished<br>"
                           f"duration p50 {_ms(dur.get('p50'))} · p99 {_ms(dur.get('p99'))} ms<br>"
                           f"{_num(conv.get('per_s'), 2)} completed / s · turns mean {_num(turns.get('mean'), 1)}"))
    gp, tok = s.get("goodput"), s.get("tokens")
    if isinstance(gp, dict):
        share = gp.get("share")
        # the rule's limits are {ttft_ms: 500, ...}: read as "ttft ≤ 500 ms"
        rule = ", ".join(f"{escape(str(k).removesuffix('_ms'))} ≤ {_short(v)} ms" for k, v in (gp.get("rule") or {}).items())
        tiles.append(_tile("Goodput", "—" if not isinstance(share, _NUM) else f"{share:.1%}",
                           f"{_num(gp.get('good'))} of {_num(gp.get('offered'))} good<br>"
                           f"{_num(gp.get('per_s'), 1)} good / s<br>{rule}"))  # fmt: skip
    if isinstance(tok, dict):
        name = str(tok.get("tokenizer") or "")
        tiles.append(_tile("Output tokens / s", _num(tok.get("output_per_s"), 0),
                           f"{_num(tok.get('output_total'))} in all<br>{_num(tok.get('per_chunk_mean'), 2)} a chunk"
                           f"<br>prompts {_num(tok.get('prompt_total'))}, client-sent<br>tokenizer "
                           f'<code title="{escape(name)}">{escape(Path(name).name)}</code>'))  # fmt: skip
    return tiles


def _headline(run: ReportRun) -> str:
    s = run.summary
    req, tp = s["requests"], s.get("throughput") or {}
    ttft = s["latency_ms"].get("ttft") or {}
    rate = _error_rate(s)
    meta = [
        f"<span>{escape(s.get('mode') or '—')} loop</span>",
        f"<span>started {escape(s['started_at'])}</span>",
        f"<span>{_num(s['duration_s'], 1)} s"
        + (f" ({_num(s.get('measure_s'), 1)} s measured)" if isinstance(s.get("measure_s"), _NUM) else "")
        + "</span>",
    ]
    tiles = "".join([
        _tile("Requests started", _num(req.get("started")),
              f"{_num(req.get('completed'))} ok · {_num(req.get('failed'))} failed · "
              f"{_num(req.get('dropped'))} dropped"
              + (f" · {_num(req.get('cancelled'))} cancelled" if req.get("cancelled") else "")
              + (f" · {_num(req.get('abandoned'))} abandoned" if req.get("abandoned") else "")),
        _tile("Error rate", "—" if rate is None else f"{rate:.2%}", "not served (failed + dropped + cancelled) / offered"),
        _tile("Throughput", _num(tp.get("requests_per_s"), 1), "answers / s in the window"),
        _tile("Chunks / s", _num(tp.get("chunks_per_s"), 0), f"{_num(tp.get('chars_per_s'), 0)} chars / s"),
        *_goodput_tokens_tiles(s),
        _tile("TTFT p99", f"{_ms(ttft.get('p99'))} <small>ms</small>", f"p50 {_ms(ttft.get('p50'))} ms"),
    ])  # fmt: skip
    passed = s["passed"]
    interrupted = s.get("verdict") == "interrupted" or (bool(s.get("interrupted")) and not passed)
    word, why = ("PASS", "all SLOs met") if passed else (
        ("INTERRUPTED", "cut short: not a pass") if interrupted else
        ("INCOMPLETE", "a worker was lost: not a pass") if s.get("verdict") == "incomplete" else
        ("FAIL", "an SLO failed"))
    return f"""<header class="card headline {"is-pass" if passed else "is-fail"}">
  <div class="headline-top">
    <div>
      <div class="eyebrow">Load test report</div>
      <h1>{escape(s["scenario"])}</h1>
      <div class="meta">{"".join(meta)}</div>
      <div class="target">target <code>{escape(str(s.get("target") or "—"))}</code></div>
    </div>
    <div class="verdict" data-verdict="{"pass" if passed else "fail"}">{word}
      <span>{why}</span></div>
  </div>
  <div class="tiles">{tiles}</div>
  {_slo_table([run])}
</header>"""


def _slo_entries(s: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every SLO verdict of a run: ``(tag, name)`` → ``{limit, value, pass[, reason]}``, the
    run's own with tag ``""`` first, then ``slo_by_tag``'s (absent before issue 19)."""
    out = {("", n): e for n, e in (s.get("slo") or {}).items() if isinstance(e, dict)}
    for tag, per in (s.get("slo_by_tag") or {}).items():
        out |= {(tag, n): e for n, e in (per or {}).items() if isinstance(e, dict)}
    return out


def _slo_label(tag: str, name: str) -> str:
    return f"<code>{escape(name)}</code>" + (f' <span class="muted">for</span> <code>{escape(tag)}</code>' if tag else "")


def _slo_value(e: dict[str, Any]) -> str:
    """The value judged, or why there was none (a tag no request carried)."""
    if e.get("reason"):
        return f'<span class="bad">{escape(str(e["reason"]))}</span>'
    return f'<span class="{"bad" if e.get("pass") is False else ""}">{_short(e.get("value"))}</span>'


def _slo_table(runs: Sequence[ReportRun]) -> str:
    entries = [_slo_entries(r.summary) for r in runs]
    names = list(dict.fromkeys(k for e in entries for k in e))
    if not names:
        return '<p class="muted">No SLO was set for this run.</p>'
    if len(runs) == 1:
        slo = entries[0]
        rows = [[_slo_label(*k), _short(slo[k].get("limit")), _slo_value(slo[k]), _pill(slo[k].get("pass"))]
                for k in names]  # fmt: skip
        return _table(["SLO", "limit", "value", "result"], rows, "slo")
    head = ["SLO", *(_run_head(i, r) for i, r in enumerate(runs))]
    rows = []
    for k in names:
        cells = []
        for slo in entries:
            e = slo.get(k) or {}
            cells.append(f"{_slo_value(e) if e else '—'} <span class='muted'>limit {_short(e.get('limit'))}</span> "
                         + _pill(e.get("pass") if e else None))  # fmt: skip
        rows.append([_slo_label(*k), *cells])
    return _table(head, rows, "slo")


def _latency_table(run: ReportRun) -> str:
    lat = run.summary["latency_ms"]
    names = [m for m in _METRICS if m in lat] + [m for m in lat if m not in _METRICS]
    if not isinstance(run.summary.get("tokens"), dict):  # no tokenizer: nothing about tokens
        names = [m for m in names if m != "tpot_token" or _get(lat, m, "count")]
    rows = []
    for m in names:
        f = lat[m]
        if not f.get("count"):
            rows.append([f"<code>{escape(m)}</code>", "0", *(['<span class="muted">—</span>'] * 8)])
            continue
        rows.append([f"<code>{escape(m)}</code>", _num(f.get("count")),
                     *(_ms(f.get(k)) for k in ("min", "mean", "p50", "p90", "p95", "p99", "p999", "max"))])  # fmt: skip
    return _table(["metric", "count", "min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max"], rows, "num")


def _errors_table(run: ReportRun) -> str:
    s = run.summary
    errors, samples = s.get("errors") or {}, s.get("error_samples") or {}
    cats = list(dict.fromkeys([*ERROR_CATEGORIES, *errors, *samples]))
    failed = sum(v for v in errors.values() if isinstance(v, int) and not isinstance(v, bool))
    rows = []
    for cat in cats:
        count = errors.get(cat, 0)
        msgs = samples.get(cat) or []
        listing = "".join(f"<li><code>{escape(str(m))}</code></li>" for m in msgs)
        rows.append([f'<span class="dot" style="background:{charts.ERROR_COLOURS.get(cat, "#6b7280")}"></span>'
                     f"{escape(cat)}", _num(count),
                     f"{count / failed:.0%}" if failed and isinstance(count, int) else "—",
                     f'<ul class="samples">{listing}</ul>' if listing else '<span class="muted">—</span>'])  # fmt: skip
    return _table(["category", "count", "share", "sample messages"], rows, "errors")


def _generator_table(run: ReportRun) -> str:
    s = run.summary
    gen = s.get("generator") or {}
    lag = gen.get("loop_lag_ms") or {}
    reasons = "; ".join(escape(str(r)) for r in gen.get("reasons") or []) or "—"
    rows = [
        ["event loop", escape(str(gen.get("loop") or "—"))],
        ["event-loop lag", f"p50 {_ms(lag.get('p50'))} · p99 {_ms(lag.get('p99'))} · max {_ms(lag.get('max'))} ms"],
        ["CPU", f"{_num(gen.get('cpu_percent'), 1)} % of a core"
                + (f" · host steal {_num(gen['host_steal_percent'], 1)} % <span class='muted'>(CPU time the "
                   "hypervisor gave to other guests)</span>" if gen.get("host_steal_percent") is not None else "")],
        ["saturated", _pill(not gen.get("saturated"), "no", "yes") + f" <span class='muted'>{reasons}</span>"],
        ["offered / achieved rate", f"{_num(_get(s, 'schedule', 'offered_rate'), 1)} / "
                                    f"{_num(_get(s, 'schedule', 'achieved_rate'), 1)} req/s"],
        ["reconnects", _num(s.get("reconnects"))],
        ["TLS", _tls_cell(s)],
    ]  # fmt: skip
    workers = [w for w in (s.get("workers") or {}).get("each") or [] if isinstance(w, dict)]
    if len(workers) > 1 or any(w.get("lost") for w in workers):
        # the saturation verdict is per worker: any saturated worker flags the run, naming it
        for w in workers:
            why = "; ".join(escape(str(r)) for r in w.get("saturation") or [])
            lost = f" <b>lost</b>: {escape(str(w['lost']))}" if w.get("lost") else ""
            rows.append([f"worker {escape(str(w.get('index')))}",
                         f"{escape(str(w.get('loop')))} · CPU {_num(w.get('cpu_percent'), 1)} % · lag p99 "
                         f"{_ms(w.get('loop_lag_p99_ms'))} ms · "
                         + _pill(not w.get("saturation"), "kept up", "saturated")
                         + (f" <span class='muted'>{why}</span>" if why else "") + lost])
    return _table(["", ""], rows, "kv")


def _tls_cell(s: dict[str, Any]) -> str:
    if _get(s, "tls", "insecure"):
        return "certificates NOT verified (--insecure)"
    if str(s.get("target", "")).startswith("wss://"):
        return "verified"
    return "none (ws://)"


def _details(run: ReportRun) -> str:
    return f"""<section class="card"><h2>Latency percentiles <small>ms, measured phase</small></h2>
  {_latency_table(run)}</section>
<section class="grid-2">
  <div class="card"><h2>Errors by category</h2>{_errors_table(run)}</div>
  <div class="card"><h2>Generator health</h2>{_generator_table(run)}</div>
</section>
<section class="card"><h2>Scenario as run <small>scenario.yaml</small></h2>
  <pre class="scenario">{escape(run.scenario_text)}</pre></section>"""


def _run_head(i: int, run: ReportRun) -> str:
    return f'<span class="swatch" style="background:{RUN_COLOURS[i % len(RUN_COLOURS)]}"></span>{escape(run.label)}'


def _comparison_headline(runs: Sequence[ReportRun]) -> str:
    def row(label: str, fn: Any) -> list[str]:
        return [label, *(fn(r.summary) for r in runs)]

    rows = [
        row("verdict", lambda s: _pill(s["passed"])),
        row("scenario", lambda s: escape(s["scenario"])),
        row("started", lambda s: escape(s["started_at"])),
        row("duration", lambda s: f"{_num(s['duration_s'], 1)} s"),
        row("mode", lambda s: escape(str(s.get("mode") or "—"))),
        row("target", lambda s: f"<code>{escape(str(s.get('target') or '—'))}</code>"),
        row("requests started", lambda s: _num(_get(s, "requests", "started"))),
        row("completed / failed / dropped", lambda s: " / ".join(
            _num(_get(s, "requests", k)) for k in ("completed", "failed", "dropped"))),
        row("error rate", lambda s: "—" if _error_rate(s) is None else f"{_error_rate(s):.2%}"),
        row("requests / s", lambda s: _num(_get(s, "throughput", "requests_per_s"), 1)),
        row("chunks / s", lambda s: _num(_get(s, "throughput", "chunks_per_s"), 0)),
        row("chars / s", lambda s: _num(_get(s, "throughput", "chars_per_s"), 0)),
        *([row("goodput", lambda s: "—" if not isinstance(_get(s, "goodput", "share"), _NUM)
               else f"{_get(s, 'goodput', 'share'):.1%}")]
          if any(isinstance(r.summary.get("goodput"), dict) for r in runs) else []),
        *([row("output tokens / s", lambda s: _num(_get(s, "tokens", "output_per_s"), 0))]
          if any(isinstance(r.summary.get("tokens"), dict) for r in runs) else []),
        *(row(f"{m} p50 / p99 ms", lambda s, m=m: f"{_ms(_get(s, 'latency_ms', m, 'p50'))} / "
                                                  f"{_ms(_get(s, 'latency_ms', m, 'p99'))}")
          for m in charts.SPECTRUM_METRICS),
        row("generator saturated", lambda s: _pill(not _get(s, "generator", "saturated"), "no", "yes")),
    ]  # fmt: skip
    head = ["", *(_run_head(i, r) for i, r in enumerate(runs))]
    return _table(head, rows, "compare")


# ---- the page --------------------------------------------------------------------------------
