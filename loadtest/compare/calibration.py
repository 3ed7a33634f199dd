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
    0.010). ``rules.allow_saturated`` (``calibrate --allow-saturated``) keeps them: the user
    takes the machine's noise in (the replay's gate notes them). BadInput when fewer than 2
    runs remain.

    A pair on which the one-run gate could judge no check (runs too short for its 10 seconds of
    per-second data, every check short of samples) is no A/A test: it is not counted as a pass
    (issue 22). ``judged_pairs`` counts the others, the false-alarm rate is over them (None when
    there are none) and ``unjudged`` says why the first such pair could not be judged. The noise
    stands either way: rounds (``ab --calibration``) are judged on summary.json figures, which
    short runs have."""
    clean = [r for r in runs if rules.allow_saturated or not r.saturated]
    left_out = [r.label for r in runs if r.saturated and not rules.allow_saturated]
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
    from calibration.json (one written before request classes has no ``tag``: whole runs).

    BadInput naming the file, in one line, for a file that is missing, unreadable or not JSON,
    and for one of the wrong shape: not an object; ``runs`` not an integer >= 2; ``noise`` not
    an object of finite numbers >= 0 (a NaN or a negative noise floor would make every
    interval meaningless); ``fingerprint`` or ``tag`` neither a string nor null."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except FileNotFoundError:
        raise BadInput(f"{path}: missing (a calibration.json written by loadtest calibrate)") from None
    except (OSError, UnicodeDecodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise BadInput(f"{path}: cannot read ({detail})") from None
    except ValueError as exc:  # json.JSONDecodeError, or a NaN / Infinity
        raise BadInput(f"{path}: not valid JSON ({exc})") from None
    what = "not a calibration.json of loadtest calibrate"
    if not isinstance(data, dict):
        raise BadInput(f"{path}: {what} (expected a JSON object at the top level)")
    runs, noise = data.get("runs"), data.get("noise")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 2:
        raise BadInput(f"{path}: {what} (field 'runs' should be an integer >= 2, got {runs!r:.40})")
    if not isinstance(noise, dict):
        raise BadInput(f"{path}: {what} (field 'noise' should be an object: check name -> noise)")
    for name, value in noise.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and value >= 0):
            raise BadInput(f"{path}: {what} (field 'noise.{name}' should be a number >= 0, got {value!r:.40})")
    for key in ("fingerprint", "tag"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise BadInput(f"{path}: {what} (field {key!r} should be a string or null, got {data[key]!r:.40})")
    return ({str(k): float(v) for k, v in noise.items()}, runs, data.get("fingerprint"), data.get("tag"))


def _refuse_constant(text: str) -> float:
    raise ValueError(f"{text} is not a JSON number")
