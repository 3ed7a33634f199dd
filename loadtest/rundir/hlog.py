"""HdrHistogram interval logs (``<metric>.hlog`` in the run directory): written via hdrh.log.

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
* Its reader silently skips lines it cannot parse (and never closes its file), so
  :func:`read_hlog` parses the format itself, strictly.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogWriter

from loadtest.metrics.recorder import Recorder

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
    no out-of-range counters).

    The one reader of the format (``loadtest.rundir`` reads run directories through it). Not
    hdrh's ``HistogramLogReader``, which silently skips every line its regex does not match:
    here a line that is not a comment, the legend, or an interval of four fields whose
    histogram decodes to our range and precision is a corrupt file, and raises ValueError
    naming the line. The file is always closed. Timestamps follow hdrh's reader: an interval
    starts at ``BaseTime + its timestamp``, reported relative to ``StartTime`` (absent: the
    first interval's timestamp; BaseTime absent: deduced as hdrh deduces it).
    """
    start_time: float | None = None
    base_time: float | None = None
    out: list[tuple[float, float, Recorder]] = []
    with open(path, encoding="utf-8") as fp:
        for lineno, raw in enumerate(fp, 1):
            line = raw.strip()
            if not line or line.startswith('"'):
                continue
            if line.startswith("#"):
                if match := _START_TIME.match(line):
                    start_time = _header_time(match.group(1), lineno)
                elif match := _BASE_TIME.match(line):
                    base_time = _header_time(match.group(1), lineno)
                continue
            if line.startswith("Tag="):
                line = line.partition(",")[2]
            fields = line.split(",")
            try:
                if len(fields) != 4:
                    raise ValueError(f"expected 4 fields, found {len(fields)}")
                stamp, length = float(fields[0]), float(fields[1])
                if not (math.isfinite(stamp) and math.isfinite(length) and stamp >= 0 and length >= 0):
                    raise ValueError("timestamps must be finite and >= 0")
                float(fields[2])
                recorder = Recorder.decode(fields[3])
            except ValueError as exc:
                raise ValueError(f"line {lineno} is not an HdrHistogram interval ({exc})") from None
            if start_time is None:
                start_time = stamp
            if base_time is None:
                # hdrh's rule: timestamps more than a year before StartTime are relative to it
                base_time = start_time if stamp < start_time - 365 * 24 * 3600.0 else 0.0
            begin = stamp + base_time
            out.append((round(begin - start_time, 6), round(begin + length - start_time, 6), recorder))
    return out


_START_TIME = re.compile(r"#\[StartTime: *([^ \]]*)")
_BASE_TIME = re.compile(r"#\[BaseTime: *([^ \]]*)")


def _header_time(text: str, lineno: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"line {lineno}: {text[:40]!r} is not a time in seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"line {lineno}: {text[:40]!r} is not a time in seconds")
    return value
