"""The run directory's files other than summary.json: the one atomic writer and the readers.

Every reader raises :class:`BadInput` (exit 2) naming the file on any defect: a run
directory is the user's input to ``report``, ``compare`` and ``sweep``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from loadtest.errors import BadInput
from loadtest.metrics.recorder import Recorder, merge
from loadtest.rundir.hlog import read_hlog
from loadtest.rundir.outdir import write_atomic

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "TIMESERIES_REQUIRED",
    "read_hlog_intervals",
    "read_hlog_total",
    "read_requests",
    "read_text",
    "read_timeseries",
    "write_atomic",
]

#: the timeseries.csv columns every reader may rely on (the report draws them all)
TIMESERIES_REQUIRED: tuple[str, ...] = (
    "t_s", "phase", "offered", "achieved", "active_sessions", "completions", "failures", "dropped", "chunks",
    "ttft_p50_ms", "ttft_p99_ms",
)  # fmt: skip


def read_text(path: Path) -> str:
    """A text file of the run directory (scenario.yaml)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{path}: missing; is {path.parent} a run directory?") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read ({exc})") from exc


def read_hlog_intervals(path: Path) -> list[tuple[float, float, Recorder]]:
    """``<metric>.hlog`` as ``[(start_s, end_s, recorder)]`` (:func:`loadtest.rundir.hlog.read_hlog`,
    the one reader of the format: a malformed line is a corrupt file, never skipped).

    Refused besides (issue 22): a log without a single interval (the writer writes one only
    for a metric with samples, so it is an empty or cut-short file: an emptied ``ttft.hlog``
    read as a run without TTFT samples), and a log whose first line, as
    :mod:`loadtest.rundir.writer` writes it (``#loadtest <scenario> <metric>[ <key=value>]
    (microseconds)``), names another metric than its file name, or another request class than
    its ``by_tag/<class>/`` folder: another file copied over this one. Logs of other tools,
    without that line, are taken as they are."""
    try:
        intervals = read_hlog(path)
        head = _first_line(path)
    except FileNotFoundError:
        raise BadInput(f"{path}: missing; is {path.parent} a run directory?") from None
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not a text HdrHistogram log ({exc})") from None
    except ValueError as exc:
        raise BadInput(f"{path}: {str(exc)[:300]}") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not intervals:
        raise BadInput(f"{path}: holds no interval (an empty or cut-short HdrHistogram log)")
    written = _HLOG_HEAD.match(head)
    expected = path.stem + (f" {unquote(path.parent.name)}" if path.parent.parent.name == "by_tag" else "")
    if written and written.group(1) != expected:
        raise BadInput(f"{path}: holds the histograms of {written.group(1)!r}, not of {expected!r} (its first "
                       "line says so): a file of another metric or class was copied over this one")
    return intervals


#: the first line :mod:`loadtest.rundir.writer` gives a log: ``#loadtest <scenario> <subject> (microseconds)``
#: (a scenario's name has no space; the subject is a metric, or a metric and a ``key=value``)
_HLOG_HEAD = re.compile(r"^#loadtest \S+ (.+) \(microseconds\)$")


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\n")


def read_hlog_total(path: Path) -> Recorder | None:
    """Every interval of ``<metric>.hlog`` merged (bucket counts added, never percentiles
    averaged); None when the log holds no value."""
    total = merge(rec for _, _, rec in read_hlog_intervals(path))
    return total if total.count else None


def read_timeseries(path: Path, *, required: Sequence[str] = TIMESERIES_REQUIRED) -> pd.DataFrame:
    """timeseries.csv, one row per second; every column but ``phase`` numeric (empty: NaN).

    BadInput when the file is missing or unreadable, lacks one of ``required``, a numeric
    column holds something else, a count is empty in a row (a file cut short), or the rows are
    not one per second from 0 (rows missing).
    """
    import numpy as np
    import pandas as pd  # loaded where it is used: a run that writes no report never needs it

    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise BadInput(f"{path}: missing; is {path.parent} a run directory?") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise BadInput(f"{path}: not a readable CSV file ({exc})") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise BadInput(f"{path}: missing column(s) {', '.join(missing)}")
    _refuse_cut_short(path)
    for col in frame.columns:
        if col == "phase":
            continue
        try:
            frame[col] = pd.to_numeric(frame[col])
        except (ValueError, TypeError) as exc:
            raise BadInput(f"{path}: column {col!r} holds a non-number ({exc})") from exc
    # one row per second from 0, every count filled in: a row cut short (a truncated file) or
    # rows missing would otherwise read as seconds in which nothing happened (issue 22)
    for col in (c for c in _TIMESERIES_COUNTS if c in frame.columns):
        empty = frame.index[frame[col].isna()]
        if len(empty):
            raise BadInput(f"{path}: line {int(empty[0]) + 2}: column {col!r} is empty (a file cut short?)")
    if "t_s" in frame.columns:
        wrong = frame.index[frame["t_s"].to_numpy() != np.arange(len(frame))]
        if len(wrong):
            row = int(wrong[0])
            raise BadInput(f"{path}: line {row + 2}: t_s is {frame['t_s'].iloc[row]:g}, expected {row} (one row "
                           "per second from 0: rows are missing or out of order)")
    return frame


#: the timeseries.csv columns that are counts: never empty in a row the writer wrote
_TIMESERIES_COUNTS = ("t_s", "offered", "achieved", "completions", "failures", "dropped", "chunks")
#: requests.csv: the outcomes a row can have (docs/run-directory.md)
_REQUEST_OUTCOMES = ("ok", "failed", "dropped", "cancelled", "abandoned")


def read_requests(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """The ``columns`` of requests.csv (one row per ``gen``). BadInput when the file is
    missing, unreadable or lacks one of them, a time (``t_*_s``, ``*_ms``) is not a number, or
    an ``outcome`` is not one of the five (empty: a file cut short)."""
    import pandas as pd  # loaded where it is used: a run that writes no report never needs it

    try:
        frame = pd.read_csv(path, usecols=list(columns))
    except FileNotFoundError:
        raise BadInput(f"{path}: missing; is {path.parent} a run directory?") from None
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise BadInput(f"{path}: not a readable requests file ({exc})") from exc
    _refuse_cut_short(path)
    for col in (c for c in columns if (c.startswith("t_") and c.endswith("_s")) or c.endswith("_ms")):
        try:
            frame[col] = pd.to_numeric(frame[col])
        except (ValueError, TypeError) as exc:
            raise BadInput(f"{path}: column {col!r} holds a non-number ({exc})") from exc
    if "outcome" in frame.columns:
        bad = frame.index[~frame["outcome"].isin(_REQUEST_OUTCOMES)]
        if len(bad):
            value = frame["outcome"].iloc[int(bad[0])]
            what = "is empty (a file cut short?)" if pd.isna(value) else f"is {str(value)[:40]!r}"
            raise BadInput(f"{path}: row {int(bad[0]) + 1}: outcome {what}, expected one of "
                           f"{', '.join(_REQUEST_OUTCOMES)}")
    return frame


def _refuse_cut_short(path: Path) -> None:
    """The writer ends every line of a CSV file with a newline: a file whose last byte is
    another was cut short in its last row (its missing cells would read as empty ones)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            if f.tell() == 0:
                return
            f.seek(-1, 2)
            last = f.read(1)
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror or exc})") from None
    if last != b"\n":
        raise BadInput(f"{path}: its last line is cut short (no newline at its end): a truncated file")
