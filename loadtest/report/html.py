"""A self-contained HTML report, rebuilt from one run directory or compared across several.

    build_report([run_dir])                      # writes run_dir/report.html
    build_report([base, candidate], out=path)    # one comparison report, runs overlaid

The page loads nothing from the network: plotly.js is inlined once, the figures follow as
JSON, and a Content-Security-Policy forbids every fetch. Everything that comes from the run
(target, scenario name and text, prompts, server error messages, directory names) is
untrusted: it is HTML-escaped where it meets HTML, and the JSON inside ``<script>`` escapes
``<``, ``>`` and ``&`` so that no string can close the script element.

A run directory (docs/run-directory.md) must hold summary.json, timeseries.csv and
scenario.yaml; a missing or unreadable one is :class:`~loadtest.errors.BadInput` naming the
file. requests.csv and the ``<metric>.hlog`` files are optional: without them a chart falls
back to summary.json's figures, or says "no data". So are ``by_tag`` and the per-tag hlogs
(``by_tag/<tag>/ttft.hlog``): a run without them has no request-classes section
(:mod:`loadtest.report.classes`). So is target_metrics.csv (the target's own metrics, scraped):
a run without it has no target-metrics section (:mod:`loadtest.report.target`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import string
from collections.abc import Sequence
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from loadtest.errors import BadInput, OutputError
from loadtest.metrics.recorder import METRICS
from loadtest.report import charts, classes, target
from loadtest.report.sections import (
    RUN_COLOURS,
    ReportRun,
    _comparison_headline,
    _details,
    _headline,
    _run_head,
    _slo_table,
    _warning_block,
    _warnings,
)
from loadtest.rundir import (
    SCHEMA,
    Summary,
    read_hlog_total,
    read_requests,
    read_summary,
    read_text,
    read_timeseries,
    write_atomic,
)
from loadtest.version import __version__

__all__ = ["KNOWN_SCHEMA", "build_report", "page", "render_report"]

_METRICS = METRICS  # the percentile table's rows, in the metric set's order
_NUM = (int, float)
#: the newest summary.json schema this reader knows: the one the writer writes
KNOWN_SCHEMA = SCHEMA


# ---- reading a run directory ---------------------------------------------------------------


def _read_chunks(path: Path, summary: Summary) -> dict[int, int] | None:
    """The chunks-per-answer histogram: from summary.json, else counted in requests.csv."""
    hist = summary.chunks_per_answer
    if hist:
        try:
            return {int(k): v for k, v in hist.items()}
        except ValueError as exc:
            raise BadInput(f"{path / 'summary.json'}: chunks_per_answer is not {{chunks: answers}}") from exc
    csv = path / "requests.csv"
    if not csv.exists():
        return None
    rows = read_requests(csv, ["phase", "outcome", "chunks"])
    try:
        ok = rows[(rows["outcome"] == "ok") & (rows["phase"] == "measure")]
        counts = pd.to_numeric(ok["chunks"]).astype(int).value_counts()
    except (ValueError, TypeError) as exc:
        raise BadInput(f"{csv}: not a readable requests file ({exc})") from exc
    return {int(str(k)): int(v) for k, v in counts.items()} or None


def _load_run(path: Path) -> ReportRun:
    if not path.is_dir():
        raise BadInput(f"{path}: not a run directory (no such directory)")
    summary = read_summary(path / "summary.json")
    timeseries = read_timeseries(path / "timeseries.csv")
    scenario_text = read_text(path / "scenario.yaml")
    spectra: dict[str, charts.Spectrum | None] = {}
    for metric in charts.SPECTRUM_METRICS:
        hlog = path / f"{metric}.hlog"
        total = read_hlog_total(hlog) if hlog.exists() else None
        if total is not None:
            spectra[metric] = charts.spectrum_from_histogram(total)
        else:
            spectra[metric] = charts.spectrum_from_summary(summary.latency_ms.get(metric) or {})
    data = summary.to_dict()
    return ReportRun(path, path.resolve().name, data, timeseries, scenario_text, spectra,
                     _read_chunks(path, summary), classes.read_tag_spectra(path, data))  # fmt: skip


# ---- small formatting helpers ----------------------------------------------------------------


@functools.cache
def _plotly_js() -> str:
    """The plotly.js bundle shipped in ``loadtest/report/vendor/`` (its version, source and
    sha256 in ``plotly.json``; refreshed by ``scripts/vendor-plotly.sh``)."""
    js = resources.files("loadtest.report").joinpath("vendor/plotly.min.js").read_text(encoding="utf-8")
    # Inlined in a <script>: a "</script" inside would end the element early.
    return js.replace("</script", "<\\/script")


def _script_json(value: Any) -> str:
    """JSON safe inside <script>: no "<", ">" or "&" survives, nor JS's line terminators."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):  # fmt: skip
        text = text.replace(ch, esc)
    return text


@functools.cache
def _template() -> string.Template:
    return string.Template(
        (resources.files("loadtest.report") / "templates" / "report.html").read_text(encoding="utf-8")
    )


def _page(title: str, body: str, figures: dict[str, dict[str, Any]]) -> str:
    """``title`` and ``body`` are HTML already; the template holds the CSS and the CSP."""
    return _template().substitute(
        version=__version__, title=title, body=body, plotly_js=_plotly_js(), figures=_script_json(figures)
    )


def page(title: str, body: str, figures: dict[str, dict[str, Any]]) -> str:
    """A self-contained page in the report's style (CSS, CSP, plotly inlined): ``title`` and
    ``body`` are HTML already; ``figures`` maps a div id to a plotly ``{data, layout}``."""
    return _page(title, body, figures)


def render_report(run_dirs: Sequence[Path]) -> str:
    """The report's HTML: of one run, or comparing several (overlaid, side by side)."""
    if not run_dirs:
        raise BadInput("no run directory given")
    runs = [_load_run(Path(d)) for d in run_dirs]
    labels = [r.label for r in runs]
    runs = [r if labels.count(r.label) == 1 else dataclasses.replace(r, label=f"{r.label} ({i + 1})")
            for i, r in enumerate(runs)]  # fmt: skip
    figures: dict[str, dict[str, Any]] = {}
    if len(runs) == 1:
        run = runs[0]
        body = (
            _headline(run)
            + _warning_block(_warnings(run))
            + classes.classes_section(run, figures)
            + charts.charts_section(
                [(r.label, RUN_COLOURS[i % len(RUN_COLOURS)], r) for i, r in enumerate(runs)], figures
            )
            + target.target_section(run, figures)
            + _details(run)
        )
        title = (
            f"{escape(run.summary['scenario'])} — {'PASS' if run.summary['passed'] else 'FAIL'} — loadtest"
        )
        return _page(title, body, figures)
    warns = [w for r in runs for w in _warnings(r, f"<code>{escape(r.label)}</code>: ")]
    details = "".join(
        f'<details class="run-details"><summary>{_run_head(i, r)} — details</summary>'
        f"{classes.classes_section(r, None)}{target.target_section(r, None)}{_details(r)}</details>"
        for i, r in enumerate(runs)
    )
    body = f"""<header class="card headline">
  <div class="eyebrow">Load test comparison</div><h1>{len(runs)} runs compared</h1>
  {_comparison_headline(runs)}<h2>SLOs</h2>{_slo_table(runs)}
</header>{_warning_block(warns)}{charts.charts_section([(r.label, RUN_COLOURS[i % len(RUN_COLOURS)], r) for i, r in enumerate(runs)], figures)}{details}"""
    return _page(f"Comparison of {len(runs)} runs — loadtest", body, figures)


def build_report(run_dirs: Sequence[Path], out: Path | None = None) -> Path:
    """Write the report and return its path.

    One run directory: ``<run_dir>/report.html`` unless ``out``. Several: a comparison report
    at ``out``, which is then required. The file is replaced atomically.
    """
    dirs = [Path(d) for d in run_dirs]
    if out is None:
        if len(dirs) != 1:
            raise BadInput("a report comparing several runs needs an output path")
        out = dirs[0] / "report.html"
    out = Path(out)
    text = render_report(dirs)
    if not out.parent.is_dir():
        raise BadInput(f"{out}: cannot write the report, {out.parent} is not a directory")
    try:
        write_atomic(out, text)
    except OutputError as exc:
        cause = exc.__cause__
        detail = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(exc)
        raise BadInput(f"{out}: cannot write the report ({detail})") from exc
    return out
