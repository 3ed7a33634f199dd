"""The release gate's verdict as text (the terminal), Markdown (a GitHub step summary: the
verdict first, then a table), JUnit XML (one testcase per gated check; failure = REGRESSION)
and JSON. Files are written atomically. A verdict on one request class (``--tag``) says so in
each: its headline, a ``class:`` line, the JUnit suite's and testcases' names, JSON ``tag``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from loadtest.compare.gate import REGRESSION, GateRow, GateVerdict
from loadtest.compare.rundata import RunData
from loadtest.errors import BadInput, OutputError
from loadtest.rundir import write_atomic

__all__ = ["format_value", "gate_json", "gate_junit", "gate_markdown", "gate_text", "write_text_file"]


def format_value(v: float | None, row: Any) -> str:
    """A row's baseline or candidate figure as shown in every comparison table."""
    if v is None:
        return "—"
    if row.metric == "error_rate":
        return f"{v:.2%}"
    return f"{v:,.3f} {row.unit}" if v < 100 else f"{v:,.1f} {row.unit}"


def _change(row: GateRow) -> str:
    if row.change is None:
        return "—"
    return f"{row.change * 100:+.2f} pts" if row.metric == "error_rate" else f"{row.change:+.1%}"


def _ci(row: GateRow) -> str:
    if row.ci is None:
        return "—"
    if row.metric == "error_rate":
        return f"[{row.ci[0] * 100:+.2f}, {row.ci[1] * 100:+.2f}] pts"
    return f"[{row.ci[0]:+.1%}, {row.ci[1]:+.1%}]"


def _verdict_cell(row: GateRow) -> str:
    if row.samples is not None:
        return f"{row.verdict} (too few samples)"
    return row.verdict if row.gated else f"{row.verdict} (not gated)"


def _cells(row: GateRow) -> tuple[str, ...]:
    level = "—" if row.level is None else f"{1 - 2 * row.level:.1%}"
    return (row.name, format_value(row.baseline, row), format_value(row.candidate, row), _change(row), _ci(row), level,
            _verdict_cell(row))  # fmt: skip


_HEAD = ("check", "baseline", "candidate", "change", "interval", "level", "verdict")


def gate_text(verdict: GateVerdict, baseline: Sequence[RunData], candidate: Sequence[RunData]) -> str:
    """Plain text: the runs, a table, notes and reasons, and the one-line verdict last."""
    table = [_HEAD] + [_cells(r) for r in verdict.rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(_HEAD))]
    lines = [f"baseline:  {', '.join(r.label for r in baseline)}",
             f"candidate: {', '.join(r.label for r in candidate)}", f"mode:      {verdict.mode}"]  # fmt: skip
    if verdict.tag:
        lines.append(f"class:     {verdict.tag} (only the requests that carried it)")
    lines.append("")
    for line in table:
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:-1], widths[1:-1], strict=True)]
        lines.append("  ".join([*cells, line[-1]]).rstrip())
    lines.append("")
    lines.extend(f"note: {n}" for n in verdict.notes)
    lines.extend(f"{r.name}: {r.reason}" for r in verdict.rows if (r.gated and r.verdict != "OK") or r.verdict == "n/a")
    lines.append(verdict.headline())
    return "\n".join(lines) + "\n"


def gate_markdown(verdict: GateVerdict, baseline: Sequence[RunData], candidate: Sequence[RunData]) -> str:
    """GitHub-flavoured Markdown for a step summary: the verdict first, then the table."""
    icon = "⚠️" if not verdict.judged else "❌" if verdict.failed else "✅"
    out = [f"## {icon} {verdict.headline()}", "",
           f"{verdict.runs[0]} baseline run(s) vs {verdict.runs[1]} candidate run(s): {verdict.mode}."
           + (f" Request class `{verdict.tag}` only." if verdict.tag else ""), "",
           "| " + " | ".join(_HEAD) + " |", "|" + "---|" * len(_HEAD)]  # fmt: skip
    for r in verdict.rows:
        cells = list(_cells(r))
        if r.gated and r.verdict == REGRESSION:
            cells[-1] = f"**{cells[-1]}**"
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    out.append("")
    reasons = [f"- **{r.name}**: {r.reason}" for r in verdict.rows if (r.gated and r.verdict != "OK") or r.verdict == "n/a"]
    notes = [f"- {n}" for n in verdict.notes]
    if reasons or notes:
        out += ["<details><summary>Reasons and notes</summary>", "", *reasons, *notes, "", "</details>", ""]
    out.append("Baseline: " + ", ".join(f"`{r.label}`" for r in baseline) + "  ")
    out.append("Candidate: " + ", ".join(f"`{r.label}`" for r in candidate))
    return "\n".join(out) + "\n"


def gate_junit(verdict: GateVerdict, name: str = "loadtest.ab") -> str:
    """JUnit XML: one testcase per gated check; a REGRESSION is a failure (an INCONCLUSIVE one
    too under --strict); checks not gated are skipped with the reason. A verdict that judged no
    check adds a testcase ``verdict`` in error (exit 2, never a pass). With a request class,
    the suite is ``name[tag]`` and each testcase ``check [tag]``."""
    cases = []
    failures = skipped = errors = 0
    if verdict.tag:  # one request class: CI shows it in every name
        name = f"{name}[{verdict.tag}]"
    for r in verdict.rows:
        case = f"{r.name} [{verdict.tag}]" if verdict.tag else r.name
        head = f'  <testcase classname={quoteattr(name)} name={quoteattr(case)}>'
        detail = f"{r.verdict}: change {_change(r)}, interval {_ci(r)}; {r.reason}"
        if not r.gated:
            skipped += 1
            cases.append(f"{head}<skipped message={quoteattr(detail)}/></testcase>")
        elif r.verdict == REGRESSION or (verdict.rules.strict and r.verdict == "INCONCLUSIVE"):
            failures += 1
            cases.append(f"{head}<failure message={quoteattr(detail)}>{escape(detail)}</failure></testcase>")
        else:
            cases.append(f"{head}<system-out>{escape(detail)}</system-out></testcase>")
    if not verdict.judged:
        errors += 1
        why = verdict.unjudged()
        cases.append(f'  <testcase classname={quoteattr(name)} name="verdict"><error message={quoteattr(why)}>'
                     f"{escape(why)}</error></testcase>")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<testsuite name={quoteattr(name)} tests="{len(cases)}" failures="{failures}" errors="{errors}" '
            f'skipped="{skipped}">\n' + "\n".join(cases) + "\n</testsuite>\n")  # fmt: skip


def gate_json(verdict: GateVerdict, baseline: Sequence[RunData], candidate: Sequence[RunData]) -> str:
    data = {"baseline": [dict(r.meta) for r in baseline], "candidate": [dict(r.meta) for r in candidate],
            **verdict.to_dict()}  # fmt: skip
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def write_text_file(path: Path, text: str) -> None:
    """``text`` into ``path`` atomically; a failure is BadInput (exit 2) naming the file."""
    try:
        write_atomic(path.resolve(), text)
    except OutputError as exc:
        cause = exc.__cause__
        detail = (cause.strerror or cause) if isinstance(cause, OSError) else exc
        raise BadInput(f"{path}: cannot write ({detail})") from exc
