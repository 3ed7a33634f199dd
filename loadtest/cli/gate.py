"""The release-gate commands of ``loadtest``: ``compare``, ``ab`` and ``calibrate``
(registered on the ``loadtest`` group by :mod:`loadtest.cli.main`). Options in, library calls,
exit codes out; the statistics live in :mod:`loadtest.compare`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from loadtest.cli.options import RunFlags, duration_flag, load, run_flags
from loadtest.cli.types import FractionType, JsonType
from loadtest.errors import EXIT_INTERRUPTED

__all__ = ["ab", "calibrate", "compare"]


class TagType(click.ParamType):  # type: ignore[type-arg]
    """``--tag KEY=VALUE``: one request class (issue 19); anything else is a usage error (exit 2)."""

    name = "KEY=VALUE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from loadtest.metrics.tags import parse_tag

        try:
            key, val = parse_tag(str(value))
        except ValueError as exc:
            self.fail(f"{exc} (a request class, e.g. web_search=true)", param, ctx)
        return f"{key}={val}"


def _judging_options(saturated_help: str) -> Callable[[Any], Any]:
    """The options that say what is judged and how strictly: ``compare`` and ``ab`` judge
    with them, ``calibrate`` replays its one-run gate with them (issue 22: ``calibrate`` takes
    these and no other gate option, so every flag it accepts does something)."""
    options = [
        click.option("--metric", "metrics", multiple=True,
                     help="Judge only this (repeatable): ttft, itl, e2e, tpot or another latency metric "
                          "(p50/p90/p99), ttft.p95 (one percentile), error_rate, throughput."),
        click.option("--tag", type=TagType(), default=None,
                     help="Judge one request class only: the requests that carried KEY=VALUE (summary.json "
                          "by_tag), e.g. web_search=true. A run none of whose requests carried it: exit 2."),
        click.option("--tolerance", "--max-increase", "tolerance", type=FractionType(), default="10%",
                     show_default=True, help="Latency/throughput: relative change that counts (log-symmetric)."),
        click.option("--max-error-increase", type=FractionType(), default="0.005", show_default=True,
                     help="Error rate: absolute increase that counts (0.005 = 0.5 points)."),
        click.option("--alpha", type=click.FloatRange(0, 0.5, min_open=True, max_open=True), default=0.05,
                     show_default=True, help="Family-wise false-alarm rate over the gated checks (Holm)."),
        click.option("--strict", is_flag=True, help="An INCONCLUSIVE gated check fails too."),
        click.option("--block-s", type=click.IntRange(min=1), default=5, show_default=True,
                     help="One run per side: seconds per block of the moving-block bootstrap."),
        click.option("--resamples", type=click.IntRange(min=100), default=1000, show_default=True,
                     help="One run per side: bootstrap resamples."),
        click.option("--seed", "boot_seed", type=int, default=0, show_default=True, help="Seed of the bootstrap."),
        click.option("--min-tail", type=click.IntRange(min=1), default=10, show_default=True,
                     help="Samples each run needs beyond a gated percentile (p99: 100x this); a check a run "
                          "falls short of is INCONCLUSIVE, the others judged."),
        click.option("--allow-saturated", is_flag=True, help=saturated_help),
    ]

    def apply(f: Any) -> Any:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


def _verdict_options(f: Any) -> Any:
    """The options of a command that gives a verdict (``compare``, ``ab``): the calibration it
    is judged with, and the files it is written to (probed before anything is read or run)."""
    options = [
        click.option("--calibration", type=click.Path(),
                     help="calibration.json (loadtest calibrate, same scenario): widens one-run intervals by its "
                          "noise floor; with rounds, pools its variance (more degrees of freedom)."),
        click.option("--json", "json_out", type=click.Path(), help="Also write the verdict as JSON."),
        click.option("--markdown", "md_out", type=click.Path(), help="Also write it as Markdown."),
        click.option("--junit", "junit_out", type=click.Path(), help="Also write it as JUnit XML."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


_COMPARED_SATURATED = "Compare runs whose generator was saturated (noted); by default they are refused (exit 2)."


def _probe_outputs(*paths: str | None) -> None:
    """Every verdict file asked for can be written, checked before anything is read or run
    (issue 22: ``ab --json`` into a directory that could not be written failed after every
    round); BadInput (exit 2) in one line naming it."""
    from pathlib import Path

    from loadtest.rundir.outdir import prepare_output_file

    for path in paths:
        if path:
            prepare_output_file(Path(path), what="verdict")


def _rules(tolerance: float, max_error_increase: float, alpha: float, strict: bool, block_s: int,
           resamples: int, boot_seed: int, min_tail: int, calibration: str | None, paired: bool = True,
           allow_saturated: bool = False, tag: str | None = None) -> Any:
    from pathlib import Path

    from loadtest.compare.calibration import read_calibration
    from loadtest.compare.gate import GateRules
    from loadtest.compare.validity import calibration_mismatch
    from loadtest.errors import BadInput

    noise, runs, fingerprint, cal_tag = read_calibration(Path(calibration)) if calibration else ({}, 0, None, None)
    mismatch = calibration_mismatch(cal_tag, tag) if calibration else None
    if mismatch:  # refused before anything runs (ab would otherwise run every round first)
        raise BadInput(f"--calibration {calibration}: {mismatch}")
    return GateRules(tolerance=tolerance, error_tolerance=max_error_increase, alpha=alpha, strict=strict,
                     block_s=block_s, resamples=resamples, seed=boot_seed, min_tail=min_tail, paired=paired,
                     noise=noise, noise_runs=runs, noise_fingerprint=fingerprint, noise_tag=cal_tag,
                     noise_file=calibration, allow_saturated=allow_saturated)


def _write_outputs(verdict: Any, base: Any, cand: Any, json_out: str | None, md_out: str | None,
                   junit_out: str | None) -> None:
    from pathlib import Path

    from loadtest.compare.output import gate_json, gate_junit, gate_markdown, write_text_file

    if json_out:
        write_text_file(Path(json_out), gate_json(verdict, base, cand))
    if md_out:
        write_text_file(Path(md_out), gate_markdown(verdict, base, cand))
    if junit_out:
        write_text_file(Path(junit_out), gate_junit(verdict, "loadtest.compare"))


def _verdict_out(verdict: Any, base: Any, cand: Any) -> int:
    """The verdict on the terminal and its exit code: 0 pass, 1 failed; a verdict that judged
    no check is exit 2 (issue 22: never a pass, whatever --strict), its reasons on stderr."""
    from loadtest.compare.output import gate_text
    from loadtest.compare.validity import InvalidComparison

    if not verdict.judged:
        raise InvalidComparison(verdict.unjudged())
    click.echo(gate_text(verdict, base, cand), nl=False)
    return int(verdict.exit_code)


@click.command()
@click.argument("dirs", nargs=-1, type=click.Path())
@click.option("--baseline", "baselines", multiple=True, type=click.Path(),
              help="A baseline run directory (repeatable: one per round).")
@click.option("--candidate", "candidates", multiple=True, type=click.Path(),
              help="A candidate run directory (repeatable; matched to --baseline by order).")
@click.option("--unpaired", is_flag=True, help="Several runs per side but not paired rounds: Welch t.")
@click.option("--allow-different-workload", is_flag=True, help="Compare runs whose scenario fingerprints differ.")
@_judging_options(_COMPARED_SATURATED)
@_verdict_options
def compare(dirs: tuple[str, ...], baselines: tuple[str, ...], candidates: tuple[str, ...], unpaired: bool,
            allow_different_workload: bool, metrics: tuple[str, ...], tag: str | None, tolerance: float,
            max_error_increase: float,
            alpha: float, strict: bool, block_s: int, resamples: int, boot_seed: int, min_tail: int, allow_saturated: bool,
            calibration: str | None, json_out: str | None, md_out: str | None, junit_out: str | None) -> int:
    """Judge candidate runs against baseline runs: BASELINE_DIR CANDIDATE_DIR, or
    --baseline DIR ... --candidate DIR .... Exit 0 no regression, 1 a regression (or, with
    --strict, an inconclusive check), 2 bad input or runs that cannot be compared (a run
    directory without the histograms a gated check needs; no check that could be judged; with
    --tag: a run none of whose requests carried the tag)."""
    from pathlib import Path

    from loadtest.compare.gate import gate
    from loadtest.compare.rundata import parse_checks
    from loadtest.compare.runs import load_run

    if dirs and (baselines or candidates):
        raise click.UsageError("give BASELINE_DIR CANDIDATE_DIR or --baseline/--candidate, not both")
    if dirs:
        if len(dirs) != 2:
            raise click.UsageError("expected two run directories: BASELINE_DIR CANDIDATE_DIR")
        baselines, candidates = (dirs[0],), (dirs[1],)
    if not baselines or not candidates:
        raise click.UsageError("give at least one --baseline DIR and one --candidate DIR")
    _probe_outputs(json_out, md_out, junit_out)
    checks = parse_checks(metrics, tag=tag)
    latency = [m for m, stat in checks if stat]
    rules = _rules(tolerance, max_error_increase, alpha, strict, block_s, resamples, boot_seed, min_tail,
                   calibration, paired=not unpaired, allow_saturated=allow_saturated, tag=tag)
    base = [load_run(Path(d), latency, tag=tag) for d in baselines]
    cand = [load_run(Path(d), latency, tag=tag) for d in candidates]
    verdict = gate(base, cand, rules, checks=checks, allow_different_workload=allow_different_workload)
    _write_outputs(verdict, base, cand, json_out, md_out, junit_out)
    return _verdict_out(verdict, base, cand)


@click.command()
@click.argument("scenario_file", type=click.Path(dir_okay=False))
@click.option("--baseline", "baseline_url", required=True, help="Baseline target URL, or mock.")
@click.option("--candidate", "candidate_url", required=True, help="Candidate target URL, or mock.")
@click.option("--baseline-mock", type=JsonType(), default=None,
              help='Baseline side with --baseline mock: overrides of its mock section, e.g. \'{"ttft_ms": 100}\'.')
@click.option("--candidate-mock", type=JsonType(), default=None,
              help='Candidate side with --candidate mock: overrides of its mock section (a staged slow-down).')
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Rounds; each runs both sides (order A B, B A, A B, ...).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory for the rounds (new or empty).")
@click.option("--duration", help="Duration of each run, e.g. 30s (overrides load.duration).")
@click.option("--round-seed", type=int, help="Round i uses load.seed = this + i - 1 (default: fresh random seeds).")
@click.option("--html", is_flag=True, help="Write each run's report.html.")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Rounds that may be run again, in all, because a generator saturated (the machine, not the "
                   "target); the spoiled runs are kept as round-N-<side>.spoiled-K.")
@run_flags
@_judging_options(_COMPARED_SATURATED)
@_verdict_options
def ab(scenario_file: str, baseline_url: str, candidate_url: str, baseline_mock: Any, candidate_mock: Any,
       rounds: int, out: str, duration: str | None, round_seed: int | None, html: bool,
       retries: int, flags: RunFlags, metrics: tuple[str, ...], tag: str | None, tolerance: float,
       max_error_increase: float, alpha: float, strict: bool, block_s: int, resamples: int, boot_seed: int,
       min_tail: int, allow_saturated: bool, calibration: str | None, json_out: str | None, md_out: str | None,
       junit_out: str | None) -> int:
    """Run SCENARIO_FILE against the baseline and the candidate in alternating rounds, then
    gate: OUT/round-N-baseline|candidate/, OUT/compare.json, OUT/compare.md, OUT/junit.xml.
    Exit 0 no regression, 1 a regression, 2 bad input (checked before the first run) or invalid
    runs or no check that could be judged, 3 unreachable, 4 interrupted (the rounds run so far
    kept; no verdict, so no compare.json or --json/--markdown/--junit file)."""
    import os
    from pathlib import Path

    from loadtest.compare.rundata import parse_checks
    from loadtest.studies.ab import AbSide, run_ab

    for flag, value, url in (("--baseline-mock", baseline_mock, baseline_url),
                             ("--candidate-mock", candidate_mock, candidate_url)):  # fmt: skip
        if value is not None and (url != "mock" or not isinstance(value, dict)):
            raise click.UsageError(f"{flag} takes a JSON object and needs that side's URL to be mock")
    _probe_outputs(json_out, md_out, junit_out)
    duration_s = duration_flag(duration, "--duration")
    # one set of options for both sides and every round (TLS, key: the scenario's and the flags')
    options = flags.options(load(scenario_file, flags.overrides(target_url=baseline_url, duration_s=duration_s)),
                            html=html, quiet=True)
    checks = parse_checks(metrics, tag=tag)
    rules = _rules(tolerance, max_error_increase, alpha, strict, block_s, resamples, boot_seed, min_tail,
                   calibration, allow_saturated=allow_saturated, tag=tag)

    def on_run(i: int, role: str, run_dir: Path, summary: dict[str, Any]) -> None:
        click.echo(f"round {i} {role}: {run_dir} ({summary.get('verdict')})", err=True)

    result = run_ab(scenario_file, baseline=AbSide(url=baseline_url, mock=baseline_mock or {}),
                    candidate=AbSide(url=candidate_url, mock=candidate_mock or {}), rounds=rounds, out=Path(out),
                    environ=os.environ, rules=rules, checks=checks, duration_s=duration_s, seed=round_seed,
                    options=options, retries=retries, on_run=on_run, tag=tag)
    if result.interrupted or result.verdict is None:
        click.echo("Interrupted: no verdict (the rounds run so far are in " + out + ").", err=True)
        return EXIT_INTERRUPTED
    _write_outputs(result.verdict, result.baseline, result.candidate, json_out, md_out, junit_out)
    return _verdict_out(result.verdict, result.baseline, result.candidate)


@click.command()
@click.argument("scenario_file", type=click.Path(dir_okay=False))
@click.option("--target", required=True, help="Target URL, or mock.")
@click.option("--runs", "n_runs", type=click.IntRange(min=2), default=6, show_default=True, help="Identical runs.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory (new or empty).")
@click.option("--duration", help="Duration of each run (overrides load.duration).")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Runs that may be run again, in all, because the generator saturated.")
@run_flags
@_judging_options("Keep runs whose generator stayed saturated after --retries in the calibration (the "
                  "machine's noise taken in); by default they are left out (left_out).")
def calibrate(scenario_file: str, target: str, n_runs: int, out: str, duration: str | None,
              retries: int, flags: RunFlags, metrics: tuple[str, ...], tag: str | None, tolerance: float,
              max_error_increase: float, alpha: float, strict: bool, block_s: int, resamples: int, boot_seed: int,
              min_tail: int, allow_saturated: bool) -> int:
    """Run SCENARIO_FILE K times against one target: OUT/calibration.json (between-run noise
    per check) and the one-run compare rule replayed on every pair (observed false alarms;
    the judging flags are those of that rule: with --strict an INCONCLUSIVE check counts as an
    alarm). With --tag, of that request class only: a calibration for compare/ab --tag.
    Exit 0 written, 2 bad input, 3 unreachable, 4 interrupted (the runs so far kept, no
    calibration.json)."""
    import os
    from pathlib import Path

    from loadtest.compare.rundata import parse_checks
    from loadtest.studies.calibrate import run_calibration

    duration_s = duration_flag(duration, "--duration")
    options = flags.options(load(scenario_file, flags.overrides(target_url=target, duration_s=duration_s)), quiet=True)
    checks = parse_checks(metrics, tag=tag)
    rules = _rules(tolerance, max_error_increase, alpha, strict, block_s, resamples, boot_seed, min_tail, None,
                   allow_saturated=allow_saturated)
    result = run_calibration(scenario_file, target=target, runs=n_runs, out=Path(out), environ=os.environ,
                             rules=rules, checks=checks, duration_s=duration_s, options=options, retries=retries,
                             on_run=lambda i, d: click.echo(f"run {i}: {d}", err=True), tag=tag)  # fmt: skip
    if result is None:
        return EXIT_INTERRUPTED
    for name, sd in result["noise"].items():
        click.echo(f"{name:<16} between-run sd {sd:.4f}" + (" (log)" if not name.startswith("error") else ""))
    for label in result.get("left_out", []):
        click.echo(f"left out {label}: the generator was saturated (the machine's noise, not the target's)")
    written = f"written {Path(out) / 'calibration.json'}"
    if result["false_alarm_rate"] is None:  # issue 22: a replay that judged nothing is no A/A test
        click.echo(f"one-run compare on {result['pairs']} A/A pairs: none could be judged, no false-alarm rate "
                   f"({result['unjudged']}); {written}")
    else:
        rest = result["pairs"] - result["judged_pairs"]
        unjudged = f"; {rest} could not be judged ({result['unjudged']})" if rest else ""
        click.echo(f"one-run compare on {result['judged_pairs']} of {result['pairs']} A/A pairs: "
                   f"{result['false_alarms']} false alarm(s) ({result['false_alarm_rate']:.1%}){unjudged}; {written}")
    return 0
