"""HdrHistogram interval logs (``<metric>.hlog`` in the run directory), via hdrh.log.

File format written by :func:`write_hlog` (HdrHistogram's standard interval log, v1.2)::

    #<comment line>                                     (zero or more)
    #[Histogram log format version 1.2]
    #[StartTime: 1764288000.000000 (seconds since epoch), 2025-11-28T00:00:00+00:00]
    #[BaseTime: 1764288000.000000 (seconds since epoch)]
    "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
    0.000000,1.000000,12.000000,HISTFAAAA...            (one line per interval)

Interval lines: start (seconds relative to BaseTime, which is the run start), length in
seconds, the interval's max in **milliseconds floored to an integer** (hdrh divides the
µs max by 1000 with ``//``), then the base64 compressed histogram of integer microseconds
(range 1 µs .. 1 h, 3 significant digits). Timestamps have 6 decimals (µs).

hdrh quirks handled here:

* ``HistogramLogWriter.output_start_time`` is broken (calls ``datetime.iso_format`` and
  treats milliseconds as seconds), so the StartTime line is written by hand in the same
  format its reader parses.
* ``output_interval_histogram`` treats a start or end time of ``0`` as "missing" and falls
  back to the histogram's own timestamps, so those are set on the histogram too.
* The reader's line regex accepts only ``[0-9.]`` in timestamps: no negative times.
* The reader silently skips lines it cannot parse; :func:`read_hlog` counts interval lines
  itself and raises if any was skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader, HistogramLogWriter

from loadtest.metrics import Recorder

__all__ = ["read_hlog", "write_hlog"]

# Interval_Max column unit: the histogram holds µs, the column shows ms (as Java tools expect).
_MAX_VALUE_UNIT_RATIO = 1000.0


def write_hlog(
    fp: TextIO,
    intervals: Iterable[tuple[float, float, str]],
    *,
    start_time_s: float,
    comment: str = "",
) -> None:
    """Write an interval log to ``fp``.

    ``intervals`` are ``(start_s, end_s, encoded)`` with times in seconds since the run
    start (>= 0, in order) and ``encoded`` a :meth:`Recorder.encode` string.
    ``start_time_s`` is the run start in seconds since the epoch; it is written as both
    StartTime and BaseTime, so the log's interval timestamps are relative to it. Each line of
    ``comment`` becomes a ``#`` comment line. The caller opens and closes ``fp``.
    """
    if start_time_s < 0:
        raise ValueError(f"start_time_s must be >= 0, got {start_time_s!r}")
    writer = HistogramLogWriter(fp)
    for line in comment.splitlines():
        writer.output_comment(line)
    writer.output_log_format_version()
    stamp = datetime.fromtimestamp(start_time_s, tz=UTC).isoformat()
    fp.write(f"#[StartTime: {start_time_s:f} (seconds since epoch), {stamp}]\n")
    writer.output_base_time(start_time_s * 1000.0)
    writer.output_legend()
    for start_s, end_s, encoded in intervals:
        if not 0 <= start_s <= end_s:
            raise ValueError(f"interval times must satisfy 0 <= start <= end, got {start_s!r}, {end_s!r}")
        histogram = HdrHistogram.decode(encoded)
        # Fallback timestamps (msec) for when start_s or end_s is 0, see the module docstring.
        histogram.set_start_time_stamp(start_s * 1000.0)
        histogram.set_end_time_stamp(end_s * 1000.0)
        writer.output_interval_histogram(
            histogram, start_s, end_s, max_value_unit_ratio=_MAX_VALUE_UNIT_RATIO
        )


def read_hlog(path: str | os.PathLike[str]) -> list[tuple[float, float, Recorder]]:
    """Read an interval log: ``[(start_s, end_s, recorder), ...]`` in file order.

    Times are seconds since the log's StartTime (for logs from :func:`write_hlog`: since the
    run start, as written), rounded to µs. Recorders carry histograms only (the format has
    no out-of-range counters). Raises ValueError if hdrh's reader skipped an interval line.
    """
    # get_next_interval_histogram never touches the reference histogram (only
    # add_next_interval_histogram does), so None is fine.
    reader = HistogramLogReader(os.fspath(path), None)
    out: list[tuple[float, float, Recorder]] = []
    try:
        while (histogram := reader.get_next_interval_histogram()) is not None:
            # The reader stamps histograms with absolute msec: StartTime + BaseTime offset.
            start_s = round(histogram.get_start_time_stamp() / 1000.0 - reader.get_start_time_sec(), 6)
            end_s = round(histogram.get_end_time_stamp() / 1000.0 - reader.get_start_time_sec(), 6)
            out.append((start_s, end_s, Recorder.decode(bytes(histogram.encode()).decode("ascii"))))
    finally:
        reader.close()
    expected = _count_interval_lines(path)
    if expected != len(out):
        raise ValueError(f"{os.fspath(path)}: {expected} interval lines but hdrh parsed {len(out)}")
    return out


def _count_interval_lines(path: str | os.PathLike[str]) -> int:
    with open(path, encoding="utf-8") as fp:
        return sum(1 for line in fp if line.strip() and not line.startswith(("#", '"')))
