"""What the user sees while a run goes and after it: live progress, the final table.

On a TTY a rich live line redraws in place; otherwise (CI logs, pipes) a plain line
every 5 seconds. ``--quiet`` shows neither, only the verdict line.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from loadtest.engine.result import Progress
from loadtest.metrics.tags import MAX_VALUES_PER_KEY
from loadtest.rundir.classes import classes_shown

__all__ = ["LiveProgress", "print_summary"]

_PLAIN_EVERY_S = 5.0


def _fmt(v: float | None, unit: str = "") -> str:
    return "-" if v is None else f"{v:,.1f}{unit}"


def _line(p: Progress) -> str:
    # "requests ok/failed" count gen requests; "connection/step errors" counts failure events
    # (a refused connect, a failed ping), which are not requests: the two need not add up.
    return (
        f"[{p.phase:>7}] {p.elapsed_s:5.0f}/{p.total_s:.0f}s · users {p.active_sessions:>5} · "
        f"in flight {p.in_flight:>5} · requests ok {p.completed:>7,} · failed {p.failed:>5,} · "
        f"connection/step errors {p.errors:>5,} · ttft p50 {_fmt(p.ttft_p50_ms, ' ms')} "
        f"p99 {_fmt(p.ttft_p99_ms, ' ms')}"
    )


class LiveProgress:
    """A progress callback for :func:`loadtest.runner.coordinator.run`; use as a context manager."""

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._live: Live | None = None
        self._last_plain = -_PLAIN_EVERY_S

    def __enter__(self) -> LiveProgress:
        if not self.quiet and self.tty:
            self._live = Live(Text("starting…"), console=Console(file=self.stream), refresh_per_second=4,
                              transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def __call__(self, p: Progress) -> None:
        if self.quiet:
            return
        if self._live is not None:
            self._live.update(Text(_line(p)))
        elif p.elapsed_s - self._last_plain >= _PLAIN_EVERY_S:
            self._last_plain = p.elapsed_s
            print(_line(p), file=self.stream, flush=True)


def print_summary(summary: dict[str, Any], run_dir: str, *, quiet: bool = False, stream: TextIO | None = None) -> None:
    """The final table (unless quiet), the warnings, the errors and the verdict line.

    Warnings, errors and the SLO lines are printed even with ``--quiet``: a run whose target
    failed requests or steps must say so in a CI log.
    """
    out = stream or sys.stdout
    # a CI log or a pipe is not 80 columns wide (rich's guess without a terminal)
    console = Console(file=out, highlight=False, soft_wrap=True, width=None if out.isatty() else 120)
    gen = summary["generator"]
    behind = [r for r in gen["reasons"] if "fell behind" in r] + list((summary.get("schedule") or {}).get("behind") or [])
    for reason in behind:
        console.print(f"[bold red]WARNING: {reason}.[/]")
    others = [r for r in gen["reasons"] if "fell behind" not in r]
    if others:
        console.print(
            "[bold red]WARNING: the load generator was saturated "
            f"({'; '.join(others)}). Latencies include the generator's own delay; "
            "lower the load per process or add workers.[/]"
        )
    if summary["requests"].get("dropped"):
        console.print(f"[bold yellow]WARNING: {summary['requests']['dropped']} requests were dropped "
                      "(queue full): the target did not keep up with the offered rate.[/]")
    if summary.get("tls", {}).get("insecure"):
        console.print("[bold yellow]WARNING: TLS certificate verification was OFF (--insecure).[/]")
    for lost in (summary.get("workers") or {}).get("lost") or []:
        console.print(f"[bold red]WARNING: a worker was lost ({lost}); its data up to the loss is merged. "
                      "The run is incomplete (exit 5).[/]")
    for key, n in (summary.get("tags_folded") or {}).items():
        console.print(f"[bold yellow]WARNING: tag {escape(key)} took more than {MAX_VALUES_PER_KEY} values; {n:,} more were "
                      f"counted together as {escape(key)}=other.[/]")
    if summary.get("interrupted"):
        console.print("[bold yellow]Run interrupted: partial results written; the verdict is not a pass.[/]")
    req = summary["requests"]
    if not quiet:
        tp = summary["throughput"]
        drain = summary.get("drain") or {}
        after = f", drain {drain['drain_s']:.1f} s" if drain.get("drain_s") else ""
        console.print(
            f"{summary['scenario']} → {summary['target']}  ({summary['mode']} loop, "
            f"{summary['measure_s']:.1f} s measured{after})\n"
            f"requests: {req['completed']:,} ok, {req['failed']:,} failed, {req.get('dropped', 0):,} dropped, "
            f"{req.get('cancelled', 0):,} cancelled"
            + (f", {req['abandoned']:,} abandoned" if req.get("abandoned") else "")
            + "  ·  in the window: "
            f"{tp['requests_per_s']:.1f} answers/s  {tp['chunks_per_s']:.0f} chunks/s  {tp['chars_per_s']:.0f} chars/s"
        )
        _print_goodput_tokens(console, summary)
    errors = {k: v for k, v in summary["errors"].items() if v}
    if errors:
        session = summary.get("session") or {}
        console.print("errors: " + ", ".join(f"{k} {v}" for k, v in errors.items())
                      + f"  (requests failed {req['failed']:,}; session steps failed "
                        f"{session.get('failed', 0):,} of {session.get('steps', 0):,})")
    if not quiet:
        table = Table(title="latency (ms)", show_edge=False, header_style="bold")
        for col in ("metric", "count", "p50", "p90", "p99", "p99.9", "max"):
            table.add_column(col, justify="right" if col != "metric" else "left")
        for name, s in summary["latency_ms"].items():
            table.add_row(name, f"{s['count']:,}", *(_fmt(s[k]) for k in ("p50", "p90", "p99", "p999", "max")))
        console.print(table)
        _print_classes(console, summary)
    for name, v in summary["slo"].items():
        console.print(f"SLO {name}: {_slo_value(v)} (limit {v['limit']:g}) {_mark(v)}")
    for tag, per in (summary.get("slo_by_tag") or {}).items():
        for name, v in per.items():
            if v.get("reason"):
                console.print(f"SLO by_tag {escape(tag)} {name}: {v['reason']} {_mark(v)}")
            else:
                console.print(f"SLO by_tag {escape(tag)} {name}: {_slo_value(v)} (limit {v['limit']:g}) {_mark(v)}")
    verdict = summary.get("verdict") or ("passed" if summary["passed"] else "failed")
    shown = {"passed": "[bold green]PASSED[/]", "interrupted": "[bold yellow]INTERRUPTED[/]",
             "incomplete": "[bold red]INCOMPLETE[/]"}
    console.print(f"{shown.get(verdict, '[bold red]FAILED[/]')}  run directory: {run_dir}")


def _slo_value(v: dict[str, Any]) -> str:
    return "no data" if v["value"] is None else f"{v['value']:g}"


def _mark(v: dict[str, Any]) -> str:
    return "[green]pass[/]" if v["pass"] else "[bold red]FAIL[/]"


def _print_goodput_tokens(console: Console, summary: dict[str, Any]) -> None:
    """Conversations (with session.conversation), goodput (with slo.goodput) and tokens (with a
    tokenizer): nothing about tokens otherwise."""
    conv = summary.get("conversations")
    if conv:
        dur = conv["duration_ms"]
        turns = conv["turns"]
        console.print(f"conversations: {conv['started']:,} started, {conv['completed']:,} completed, "
                      f"{conv['abandoned']:,} abandoned, {conv['failed']:,} failed, {conv['unfinished']:,} unfinished"
                      + (f", {conv['dropped']:,} dropped" if conv.get("dropped") else "")
                      + f"  ·  {conv['per_s']:.2f} completed/s, duration p50 {_fmt(dur.get('p50'))} ms, "
                        f"turns mean {_fmt(turns.get('mean'))} max {turns.get('max') or '-'}")
    gp, tok = summary.get("goodput"), summary.get("tokens")
    if gp:
        share = "-" if gp["share"] is None else f"{100 * gp['share']:.1f} %"
        console.print(f"goodput: {gp['good']:,} of {gp['offered']:,} requests good ({share}), "
                      f"{gp['per_s']:.1f} good/s  (rule: {', '.join(f'{k} {v:g}' for k, v in gp['rule'].items())})")
    if tok:
        per_chunk = "-" if tok["per_chunk_mean"] is None else f"{tok['per_chunk_mean']:.2f}"
        console.print(f"tokens: {tok['output_per_s']:,.0f} output tokens/s in the window, {tok['output_total']:,} "
                      f"in all, {per_chunk} a chunk; prompts {tok['prompt_total']:,} (client-sent)  "
                      f"(tokenizer {escape(tok['tokenizer'])})")


def _print_classes(console: Console, summary: dict[str, Any]) -> None:
    """One row per request class, when the run had more than one (rundir.classes.classes_shown)."""
    by_tag = summary.get("by_tag") or {}
    shown = [t for t in classes_shown(summary) if t in by_tag]  # a tag nothing carried: its SLO line says so
    if not shown:
        return
    cols = ["tag", "offered", "ok", "failed", "ttft p50", "ttft p99", "e2e p99", "ok/s"]
    with_goodput = any(by_tag[t].get("goodput") for t in shown)
    with_tokens = any(by_tag[t].get("tokens") for t in shown)
    cols += ["goodput"] * with_goodput + ["tokens/s"] * with_tokens
    table = Table(title="by tag (ms)", show_edge=False, header_style="bold")
    for col in cols:
        table.add_column(col, justify="left" if col == "tag" else "right", no_wrap=True)
    for tag in shown:
        f = by_tag[tag]
        req, lat = f["requests"], f["latency_ms"]
        row = [escape(tag), f"{req['offered']:,}", f"{req['completed']:,}", f"{req['failed']:,}",
               _fmt((lat.get("ttft") or {}).get("p50")), _fmt((lat.get("ttft") or {}).get("p99")),
               _fmt((lat.get("e2e") or {}).get("p99")), f"{f['throughput']['requests_per_s']:.1f}"]
        if with_goodput:
            gp = f.get("goodput") or {}
            row.append("-" if gp.get("share") is None else f"{100 * gp['share']:.1f}%")
        if with_tokens:
            row.append(f"{(f.get('tokens') or {}).get('output_per_s', 0):,.0f}")
        table.add_row(*row)
    console.print(table)
