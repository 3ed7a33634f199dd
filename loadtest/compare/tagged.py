"""One request class of a run directory, for the release gate (``--tag KEY=VALUE``, issue 19).

:func:`tag_view` turns a run's :class:`RunData` into that of the requests that carried one
``key=value``, from the files the run wrote for it (docs/run-directory.md):

* latencies: ``summary.json`` ``by_tag[tag].latency_ms`` (the figures, and the sample counts
  the floors need) and ``by_tag/<tag_dir_name(tag)>/<metric>.hlog`` (the per-second
  histograms of one run per side); a request metric the class has no sample of counts 0, so
  a gated percentile of it is refused as too few samples, never passed on nothing;
* error rate and throughput: ``by_tag[tag].error_rate`` and ``throughput.requests_per_s``;
  their per-second counts (one run per side) from ``requests.csv``'s ``tags`` column, by the
  rules of ``timeseries.csv``: a request counts in the second it ended (a dropped one, never
  sent, in the second it was due), completions and failures + dropped, over the same seconds.

The run's health (fingerprint, saturation, interruption, schedule) stays the run's: it is the
generator's, not a class's. A run without ``by_tag`` (written before request classes) and a
tag no request of the window carried are refused (:class:`InvalidComparison`, exit 2): a
class that is not there must never pass (k6 #1526 passed a threshold on a tag that matched
nothing).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.compare.rundata import RunData, _num
from loadtest.compare.validity import InvalidComparison
from loadtest.errors import BadInput
from loadtest.metrics.recorder import Recorder
from loadtest.metrics.tags import TAG_METRICS, tag_dir_name
from loadtest.rundir import Summary, read_hlog_intervals, read_requests

__all__ = ["refuse_impossible_tag", "tag_view"]

#: how many of a run's tags a refusal lists (a scenario may have hundreds)
_SHOWN = 12


def tag_view(run: RunData, path: Path, summary: Summary, tag: str, metrics: Sequence[str], *,
             seconds: Sequence[float]) -> RunData:  # fmt: skip
    """``run`` (read from ``path`` whole) with the figures of request class ``tag`` instead:
    the hlogs of ``metrics`` from ``by_tag/``, per-second counts over ``seconds`` (the
    measured seconds of timeseries.csv; none: no per-second counts)."""
    entry = _entry(path, summary, tag)
    latency: dict[str, Mapping[str, Any]] = {m: {"count": 0} for m in TAG_METRICS}
    latency.update({m: v for m, v in entry["latency_ms"].items() if isinstance(v, Mapping)})
    folder = path / "by_tag" / tag_dir_name(tag)
    intervals: dict[str, list[Recorder]] = {}
    missing = {k: v for k, v in run.missing.items() if k in ("error_rate", "throughput")}  # timeseries.csv
    for metric in metrics:
        hlog = folder / f"{metric}.hlog"
        if hlog.exists():
            intervals[metric] = [rec for _, _, rec in read_hlog_intervals(hlog)]
        else:
            missing[metric] = str(hlog)
    warnings = run.warnings
    requests_csv = path / "requests.csv"
    if requests_csv.exists():
        per_s = _per_second(requests_csv, tag, [int(s) for s in seconds])
    else:
        per_s = {"completions": [], "errors": [], "attempts": []}
        missing = {"error_rate": str(requests_csv), "throughput": str(requests_csv), **missing}
        warnings = (*warnings, f"no requests.csv: the error rate and throughput of {tag} have no per-second "
                               "counts (one run per side cannot judge them)")  # fmt: skip
    throughput = entry.get("throughput")
    return dataclasses.replace(
        run, tag=tag, intervals=intervals, summary_ms=latency, error_rate=_num(entry.get("error_rate")),
        requests_per_s=_num(throughput.get("requests_per_s")) if isinstance(throughput, Mapping) else None,
        completions_per_s=per_s["completions"], errors_per_s=per_s["errors"], attempts_per_s=per_s["attempts"],
        warnings=warnings, meta={**run.meta, "tag": tag, "tag_requests": dict(entry["requests"])}, missing=missing,
    )  # fmt: skip


def refuse_impossible_tag(space: Mapping[str, Collection[str]], tag: str) -> None:
    """Before any run of a study (``ab``, ``calibrate``): a tag no request of the scenario can
    carry (a typo, a key it does not have), by its tag space (``key: values``, as for
    ``slo.by_tag``), would only be found after the first run. (``key=other``, where values past
    the cap fold, may occur.)"""
    key, _, value = tag.partition("=")
    if key not in space:
        raise InvalidComparison(f"--tag {tag}: no request of this scenario carries a tag {key!r} "
                                f"(its tag keys: {', '.join(sorted(space))})")
    if value not in space[key] and value != "other":
        raise InvalidComparison(f"--tag {tag}: no request of this scenario can carry it "
                                f"({key} takes {', '.join(sorted(space[key]))})")


def _entry(path: Path, summary: Summary, tag: str) -> Mapping[str, Any]:
    """``by_tag[tag]`` of summary.json, checked; refused when the run has no such class."""
    written = summary.to_json()  # only what the file holds: an absent by_tag stays absent
    if "by_tag" not in written:
        raise InvalidComparison(f"run {path}: its summary.json has no by_tag (written before request classes, "
                                f"issue 19), so --tag {tag} cannot judge it; compare it without --tag")  # fmt: skip
    by_tag = written["by_tag"]
    where = path / "summary.json"
    if not isinstance(by_tag, Mapping):
        raise BadInput(f"{where}: field 'by_tag' should be an object")
    entry = by_tag.get(tag)
    if entry is None:
        raise InvalidComparison(f"run {path}: no requests carried {tag}{_known(by_tag, tag)}")
    requests = entry.get("requests") if isinstance(entry, Mapping) else None
    offered = requests.get("offered") if isinstance(requests, Mapping) else None
    if not isinstance(offered, int) or isinstance(offered, bool) or not isinstance(entry.get("latency_ms"), Mapping):
        raise BadInput(f"{where}: field 'by_tag.{tag}' is missing requests.offered or latency_ms")
    checked: Mapping[str, Any] = entry
    if offered == 0:  # seen only after the window (its chunks counted): no request of the window
        raise InvalidComparison(f"run {path}: no requests of the measured window carried {tag}")
    return checked


def _known(by_tag: Mapping[str, Any], tag: str) -> str:
    """The run's tags, for a refusal: those of the same key first (a typo in the value)."""
    key = tag.partition("=")[0]
    same = [t for t in sorted(by_tag) if t.partition("=")[0] == key and t != tag]
    others = [t for t in sorted(by_tag) if t.partition("=")[0] != key]
    shown = (same + others)[:_SHOWN]
    if not shown:
        return " (it has no request classes)"
    more = f", and {len(by_tag) - len(shown)} more" if len(by_tag) > len(shown) else ""
    return f" (its classes: {', '.join(shown)}{more})"


def _per_second(path: Path, tag: str, seconds: Sequence[int]) -> dict[str, list[float]]:
    """Per second of ``seconds``: the completions, errors (failed + dropped) and attempts of
    the requests in requests.csv that carried ``tag``, each in the second it ended (a dropped
    one, never sent, in the second it was due), as timeseries.csv counts the run's."""
    if not seconds:
        return {"completions": [], "errors": [], "attempts": []}
    frame = read_requests(path, ("t_intended_s", "t_stop_s", "outcome", "tags"))
    carried = (";" + frame["tags"].fillna("").astype(str) + ";").str.contains(f";{tag};", regex=False)
    rows = frame[carried]
    end = rows["t_stop_s"].where(rows["t_stop_s"].notna(), rows["t_intended_s"]).to_numpy(dtype=np.float64)
    outcome = rows["outcome"].astype(str).to_numpy()
    known = ~np.isnan(end)
    second = np.floor(end[known]).astype(np.int64)
    lo, width = min(seconds), max(seconds) - min(seconds) + 1
    inside = (second >= lo) & (second < lo + width)

    def count(which: np.ndarray) -> np.ndarray:
        keep = which[known] & inside
        return np.bincount(second[keep] - lo, minlength=width)

    done, bad = count(outcome == "ok"), count((outcome == "failed") | (outcome == "dropped"))
    picked = [s - lo for s in seconds]
    completions = [float(done[i]) for i in picked]
    errors = [float(bad[i]) for i in picked]
    return {"completions": completions, "errors": errors,
            "attempts": [a + b for a, b in zip(completions, errors, strict=True)]}  # fmt: skip
