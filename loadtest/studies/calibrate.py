"""``loadtest calibrate``: K identical runs against one target, then their calibration
(:func:`loadtest.compare.calibration.calibrate_runs`) written to ``calibration.json``.

Its inputs are checked before the first run (issue 22): the scenario with the target, the
tag (one the scenario's requests can carry), the checks. A pair of runs on which the one-run
gate could judge no check is not counted in the replay's false-alarm rate
(:func:`loadtest.compare.calibration.calibrate_runs`)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loadtest.compare.calibration import calibrate_runs
from loadtest.compare.gate import GateRules
from loadtest.compare.output import write_text_file
from loadtest.compare.rundata import RunData
from loadtest.compare.runs import load_run
from loadtest.errors import BadInput
from loadtest.runner.options import RunOptions

__all__ = ["run_calibration"]


def run_calibration(scenario_path: str | Path, *, target: str, runs: int, out: Path, environ: Mapping[str, str],
                    rules: GateRules, checks: Sequence[tuple[str, str]], duration_s: float | None = None,
                    options: RunOptions | None = None, retries: int = 2,
                    on_run: Callable[[int, Path], None] = lambda *_: None,
                    tag: str | None = None) -> dict[str, Any] | None:  # fmt: skip
    """Run ``runs`` identical runs (fresh seeds) into ``out/run-N/`` and write
    ``out/calibration.json``; None when a run was interrupted. A run whose generator saturated
    measured the machine: it is run again (``retries`` times in all; the spoiled one is kept as
    ``run-N.spoiled-K``), so a burst of stolen CPU does not inflate the noise. ``tag``: the
    noise of that request class only (recorded as the calibration's ``tag``; it then serves
    ``compare --tag`` of the same class, and only that)."""
    from loadtest.compare.rundata import refuse_untagged
    from loadtest.compare.tagged import refuse_impossible_tag
    from loadtest.rundir.writer import prepare_run_dir
    from loadtest.runner.todir import run_to_dir
    from loadtest.scenario import load_scenario
    from loadtest.studies.reruns import Reruns

    if runs < 2:
        raise BadInput(f"--runs must be >= 2, got {runs}")
    options = (options or RunOptions()).replace(html=False, quiet=True)
    reruns = Reruns(retries, options.warn)
    # every input before the first run (issue 22)
    sc0 = load_scenario(scenario_path, overrides=options.overrides(target_url=target, duration_s=duration_s),
                        environ=environ)  # fmt: skip
    if tag is not None:
        refuse_untagged([m for m, _ in checks], tag)
        refuse_impossible_tag(sc0.session.tag_space(), tag)
    prepare_run_dir(out)
    latency = sorted({m for m, stat in checks if stat})
    data: list[RunData] = []
    for i in range(1, runs + 1):
        attempt = 0
        while True:
            overrides = options.overrides(target_url=target, duration_s=duration_s, seed=secrets.randbits(31))
            sc = load_scenario(scenario_path, overrides=overrides, environ=environ)
            run_dir = out / f"run-{i}"
            summary = run_to_dir(sc, options.replace(out=run_dir))
            on_run(i, run_dir)
            if summary.get("interrupted"):
                return None
            run = load_run(run_dir, latency, tag=tag)
            if not run.saturated or not reruns.left:
                break
            attempt += 1
            reruns.set_aside([run_dir], attempt, f"run {i}", run.saturation_reasons)
        data.append(run)
    result = calibrate_runs(data, rules, checks)
    write_text_file(out / "calibration.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result

