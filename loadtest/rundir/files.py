"""The run directory's files other than summary.json: the one atomic writer and the readers.

Every reader raises :class:`BadInput` (exit 2) naming the file on any defect: a run
directory is the user's input to ``report``, ``compare`` and ``sweep``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

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
    the one reader of the format: a malformed line is a corrupt file, never skipped)."""
    try:
        return read_hlog(path)
    except FileNotFoundError:
        raise BadInput(f"{path}: missing; is {path.parent} a run directory?") from None
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not a text HdrHistogram log ({exc})") from None
    except ValueError as exc:
        raise BadInput(f"{path}: {str(exc)[:300]}") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_hlog_total(path: Path) -> Recorder | None:
    """Every interval of ``<metric>.hlog`` merged (bucket counts added, never percentiles
    averaged); None when the log holds no value."""
    total = merge(rec for _, _, rec in read_hlog_intervals(path))
    return total if total.count else None


def read_timeseries(path: Path, *, required: Sequence[str] = TIMESERIES_REQUIRED) -> pd.DataFrame:
    """timeseries.csv, one row per second; every column but ``phase`` numeric (empty: NaN).

    BadInput when the file is missing or unreadable, lacks one of ``required``, or a
    numeric column holds something else.
    """
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
    for col in frame.columns:
        if col == "phase":
            continue
        try:
            frame[col] = pd.to_numeric(frame[col])
        except (ValueError, TypeError) as exc:
            raise BadInput(f"{path}: column {col!r} holds a non-number ({exc})") from exc
    return frame


def read_requests(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """The ``columns`` of requests.csv (one row per ``gen``). BadInput when the file is
    missing, unreadable or lacks one of them."""
    import pandas as pd  # loaded where it is used: a run that writes no report never needs it

    try:
        return pd.read_csv(path, usecols=list(columns))
    except FileNotFoundError:
        raise BadInput(f"{path}: missing; is {path.parent} a run directory?") from None
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise BadInput(f"{path}: not a readable requests file ({exc})") from exc
