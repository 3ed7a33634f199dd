"""Validity first, pure: whether runs can be compared at all, before anything is judged
(:func:`loadtest.compare.gate.gate` calls :func:`validate`). Every refusal is
:class:`InvalidComparison` (exit 2) with the reason; what is allowed but worth knowing is a note.

Refused: workloads that differ (unless allowed), a calibration of another workload or of
another request class, a saturated (unless allowed) or interrupted generator, an open loop
that fell behind its schedule, runs judged on different request classes, and, with one run per
side, a run directory without the per-second data a gated check is judged on (its hlog, or
timeseries.csv / requests.csv for the error rate and throughput: :attr:`RunData.missing`).

Not refused (issue 22): a run with too few samples for a gated percentile. That check alone is
INCONCLUSIVE, not judged (:func:`loadtest.compare.floors.lacking`), and the others are judged;
a verdict that could judge no check at all is exit 2 (:attr:`GateVerdict.exit_code`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from loadtest.compare.floors import OVERCONFIDENT, check_name, sample_count
from loadtest.compare.rundata import RunData
from loadtest.errors import BadInput

if TYPE_CHECKING:
    from loadtest.compare.gate import GateRules

__all__ = ["InvalidComparison", "calibration_mismatch", "calibration_workload_mismatch", "short_fingerprint",
           "validate"]


class InvalidComparison(BadInput):
    """The runs cannot be compared (exit 2); the message says why."""


def short_fingerprint(fingerprint: str | None) -> str:
    return "none" if fingerprint is None else fingerprint[:12]


def calibration_mismatch(calibrated: str | None, tag: str | None) -> str | None:
    """Why a calibration made for request class ``calibrated`` (None: whole runs) cannot serve a
    gate of class ``tag`` (None: whole runs); None when it can.

    A calibration's noise is per check of what it measured: a class's percentiles come from a
    share of the samples and vary more from run to run than the whole run's, so a run-wide
    noise floor would make a class's interval too narrow (false alarms), and a class's would
    make the whole run's too wide. Neither stands in for the other."""
    if calibrated == tag:
        return None
    if calibrated is None:
        return (f"the calibration was made on whole runs, not on {tag}: a request class varies more from run to "
                f"run than the whole run, so its noise does not apply; make one with loadtest calibrate --tag {tag}")
    if tag is None:
        return (f"the calibration was made for the request class {calibrated}, these runs are judged whole: its "
                f"noise does not apply; pass --tag {calibrated}, or make one with loadtest calibrate without --tag")
    return (f"the calibration was made for the request class {calibrated}, not {tag}: its noise does not apply; "
            f"make one with loadtest calibrate --tag {tag}")


def calibration_workload_mismatch(r: GateRules, prints: Collection[str | None]) -> str | None:
    """Why the calibration of ``r`` cannot serve runs of the workload fingerprints ``prints``
    (it was measured on another workload); None when it can, or without a calibration.
    ``ab`` asks it of its scenarios before any run."""
    if not r.noise or r.noise_fingerprint is None or r.noise_fingerprint in prints:
        return None
    return (f"{_named(r)}the calibration was measured on another workload "
            f"({short_fingerprint(r.noise_fingerprint)}, these runs: "
            f"{', '.join(sorted(short_fingerprint(p) for p in prints))}): its noise does not apply; run "
            "loadtest calibrate with this scenario")


def _named(r: GateRules) -> str:
    """``--calibration FILE: `` when the rules' calibration came from a file: a refusal names it."""
    return f"--calibration {r.noise_file}: " if r.noise_file else ""


def validate(baseline: Sequence[RunData], candidate: Sequence[RunData], r: GateRules,
             checks: Sequence[tuple[str, str]], allow_different_workload: bool) -> list[str]:  # fmt: skip
    """The notes of a valid comparison; :class:`InvalidComparison` when it is not one."""
    notes: list[str] = []
    runs = [("baseline", run) for run in baseline] + [("candidate", run) for run in candidate]
    classes = {run.tag for _, run in runs}
    if len(classes) != 1:
        names = ", ".join(sorted(t or "the whole run" for t in classes))
        raise InvalidComparison(f"the runs are judged on different request classes ({names}): give one --tag")
    tag = runs[0][1].tag
    prints = {run.fingerprint for _, run in runs}
    if len(prints) != 1 or None in prints:
        first: dict[str | None, str] = {}  # each fingerprint with the first run that has it: the user's files
        for role, run in runs:
            first.setdefault(run.fingerprint, f"{role} {run.label}")
        what = "workload fingerprints differ (" + ", ".join(f"{short_fingerprint(p)}: {who}"
                                                             for p, who in first.items()) + ")"
        if not allow_different_workload:
            raise InvalidComparison(f"{what}: these runs are not of the same workload; "
                                    "pass --allow-different-workload to compare them anyway")  # fmt: skip
        notes.append(f"{what}: compared anyway (--allow-different-workload)")
    other = calibration_workload_mismatch(r, prints)
    if other:
        raise InvalidComparison(other)
    mismatch = calibration_mismatch(r.noise_tag, tag) if r.noise else None
    if mismatch:
        raise InvalidComparison(_named(r) + mismatch)
    for role, run in runs:
        if run.saturated and r.allow_saturated:
            notes.append(f"{role} {run.label}: the load generator was saturated: compared anyway (--allow-saturated)")
        elif run.saturated:
            raise InvalidComparison(f"{role} {run.label}: the load generator was saturated: its latencies "
                                    "may be the generator's, not the target's (--allow-saturated: compare anyway)")  # fmt: skip
        if run.interrupted:
            raise InvalidComparison(f"{role} {run.label}: the run was interrupted (partial results)")
        if run.mode == "open" and run.offered_rate and run.achieved_rate is not None:
            short = 1 - run.achieved_rate / run.offered_rate
            if short > r.max_rate_shortfall:
                raise InvalidComparison(
                    f"{role} {run.label}: sent {run.achieved_rate:g}/s of {run.offered_rate:g}/s offered "
                    f"({short:.1%} short, more than {r.max_rate_shortfall:.0%}): the generator fell behind")
        notes.extend(f"{role} {run.label}: {w}" for w in run.warnings if "saturated" not in w)
    if len(baseline) == 1 and len(candidate) == 1:
        _refuse_missing(runs, checks, r)
    if tag is not None:
        notes.append(f"judged on the requests that carried {tag} only: their latencies, error rate and "
                     "throughput (summary.json by_tag, by_tag/ hlogs)")  # fmt: skip
    return notes


def _refuse_missing(runs: Sequence[tuple[str, RunData]], checks: Sequence[tuple[str, str]], r: GateRules) -> None:
    """One run per side is judged on per-second data: a gated check whose file a run directory
    lacks cannot be compared (issue 22: without its hlogs a candidate passed on no check at all).
    A latency metric the run has no sample of has no hlog (none is written): that is too few
    samples, for the floors to say, not a damaged directory."""
    for role, run in runs:
        for metric, stat in checks:
            where = run.missing.get(metric)
            name = check_name(metric, stat)
            if where is None or (metric in OVERCONFIDENT and name not in r.noise):  # not gated alone
                continue
            if stat and sample_count(run, metric) == 0:
                continue
            data = "per-second histograms" if stat else "per-second counts"
            raise InvalidComparison(f"{role} {run.label}: {where} is missing: {name} with one run per side is judged "
                                    f"on its {data}; copy the whole run directory, or leave {metric} out with --metric")
