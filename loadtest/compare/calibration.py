"""``loadtest calibrate``: K identical runs against one target, the between-run noise of every
check (``calibration.json``), and the compare rule replayed on every pair of them.

Every pair of identical runs is an A/A comparison, so the share of pairs the one-run gate
fails is its observed false-alarm rate on this target. ``compare --calibration FILE`` reads
``noise`` back: per check, the standard deviation across the K runs of its log value (of the
value itself for the error rate); a one-run interval is then at least √2 × that wide (the
difference of two runs), so between-run noise is in it, and itl/tpot may gate.

A calibration is of what its runs were read as: whole runs, or one request class
(``calibrate --tag``, recorded as ``tag``). It serves only a gate of the same (``compare
--tag``; :func:`loadtest.compare.validity.calibration_mismatch`): a class's figures come
from a share of the samples and vary more between runs than the whole run's.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.compare.gate import GateRules, check_name, gate, run_values
from loadtest.compare.rundata import RunData
from loadtest.errors import BadInput
from loadtest.rundir import read_text

__all__ = ["calibrate_runs", "noise_of", "read_calibration"]


def noise_of(runs: Sequence[RunData], checks: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Per check, the sample standard deviation across ``runs`` of its log value."""
    out: dict[str, float] = {}
    for metric, stat in checks:
        values = [v for v in run_values(metric, stat, runs) if v is not None]
        if metric != "error_rate":
            values = [math.log(v) for v in values if v > 0]
        if len(values) >= 2:
            mean = sum(values) / len(values)
            out[check_name(metric, stat)] = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return out


def calibrate_runs(runs: Sequence[RunData], rules: GateRules, checks: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The calibration of ``runs`` (identical runs): noise per check, and every pair replayed
    through the one-run gate (``rules`` as given, without a calibration).

    Runs whose generator saturated are left out (``left_out`` names them): their spread is the
    machine's, not the target's, and a calibration that took it in would widen every later
    interval (on a 2-core VM, three such runs of ten put TTFT p50's noise at 0.048 instead of
    0.010). BadInput when fewer than 2 runs remain.

    A pair on which the one-run gate could judge no check (runs too short for its 10 seconds of
    per-second data, every check short of samples) is no A/A test: it is not counted as a pass
    (issue 22). ``judged_pairs`` counts the others, the false-alarm rate is over them (None when
    there are none) and ``unjudged`` says why the first such pair could not be judged. The noise
    stands either way: rounds (``ab --calibration``) are judged on summary.json figures, which
    short runs have."""
    clean = [r for r in runs if not r.saturated]
    left_out = [r.label for r in runs if r.saturated]
    if len(clean) < 2:
        why = f" ({len(left_out)} of {len(runs)} left out: the generator was saturated)" if left_out else ""
        raise BadInput(f"calibration needs at least 2 runs{why}")
    plain = GateRules(**{**rules.__dict__, "noise": {}, "noise_runs": 0})
    pairs, judged, alarms, by_check = 0, 0, 0, dict.fromkeys((check_name(m, s) for m, s in checks), 0)
    unjudged: str | None = None
    for a, b in itertools.combinations(clean, 2):
        verdict = gate([a], [b], plain, checks=checks)
        pairs += 1
        if not verdict.judged:  # nothing judged: not a pass, not an alarm
            unjudged = unjudged or verdict.unjudged()
            continue
        judged += 1
        alarms += verdict.failed
        for row in verdict.regressions:
            by_check[row.name] += 1
    return {"runs": len(clean), "fingerprint": clean[0].fingerprint, "tag": clean[0].tag,
            "noise": noise_of(clean, checks),
            "pairs": pairs, "judged_pairs": judged, "unjudged": unjudged, "false_alarms": alarms,
            "false_alarm_rate": alarms / judged if judged else None,
            "false_alarms_by_check": {k: v for k, v in by_check.items() if v},
            "labels": [r.label for r in clean], "left_out": left_out}  # fmt: skip


def read_calibration(path: Path) -> tuple[dict[str, float], int, str | None, str | None]:
    """(noise per check, number of runs, workload fingerprint or None, request class or None)
    from calibration.json (one written before request classes has no ``tag``: whole runs);
    BadInput naming the file."""
    try:
        data = json.loads(read_text(path))
        noise = {str(k): float(v) for k, v in data["noise"].items()}
        fingerprint, tag = data.get("fingerprint"), data.get("tag")
        return (noise, int(data["runs"]), None if fingerprint is None else str(fingerprint),
                None if tag is None else str(tag))  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadInput(f"{path}: not a calibration.json of loadtest calibrate ({exc})") from None
