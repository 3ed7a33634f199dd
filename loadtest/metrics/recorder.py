"""Latency histograms: a safe wrapper around HdrHistogram_py, and the per-run metric set.

Pure core: no I/O, no clock, no event loop. Callers measure durations (integer or float
microseconds) and hand them in; this module only counts.

Why a wrapper (see DESIGN.md, "Measurement rules"): ``hdrh.histogram.HdrHistogram``

* truncates floats (``record_value(1.6)`` lands in the bucket of 1 but stores 1.6 as the
  raw minimum), so we round half-up to an integer first;
* silently drops values outside its trackable range (``record_value`` returns False), so we
  clamp to ``LOWEST_US .. HIGHEST_US`` and count every clamp;
* sets the minimum to 0 when an *empty* histogram is added to a non-empty one
  (``add`` takes ``min(self_min, other.get_min_value())`` and an empty histogram reports 0),
  so we never add empty histograms;
* resets with a Python loop over ~23 500 counters (~1.5 ms), while allocating a fresh zeroed
  histogram takes ~0.16 ms, so ``reset`` allocates.

Never average percentiles: merge histograms with :meth:`Recorder.add` / :func:`merge`.
"""

from __future__ import annotations

import binascii
import zlib
from collections.abc import Iterable
from typing import TypedDict

import numpy as np
import numpy.typing as npt
from hdrh.codec import HdrCookieException, HdrHistogramSettingsException, HdrLengthException
from hdrh.histogram import HdrHistogram

from loadtest.metrics.hdrbuckets import bucket_values

__all__ = [
    "HIGHEST_US",
    "LOWEST_US",
    "METRICS",
    "SIGNIFICANT_FIGURES",
    "Recorder",
    "RecorderData",
    "merge",
]

METRICS: tuple[str, ...] = (
    "ttft", "ttft_uncorrected", "itl", "tpot", "tpot_token", "e2e", "e2e_uncorrected", "connect", "auth",
    "set_model", "ping_rtt", "queue", "schedule_lag", "send_lag", "loop_lag", "conversation",
)
LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour
SIGNIFICANT_FIGURES = 3

# A float rounds (half-up) above the range when it is >= HIGHEST_US + 0.5 and below it
# when it is < 0.5 (it would round to 0 or less).
_ABOVE_FLOAT = HIGHEST_US + 0.5
_BELOW_FLOAT = LOWEST_US - 0.5
# Percentiles in the summary, keyed as in summary.json (docs/run-directory.md).
_SUMMARY_PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 50.0), ("p90", 90.0), ("p95", 95.0),
                                                       ("p99", 99.0), ("p999", 99.9))
# Same resolution as HdrHistogram's .hgrm output (output_percentile_distribution default).
_TICKS_PER_HALF_DISTANCE = 5
_DECODE_ERRORS = (binascii.Error, ValueError, TypeError, zlib.error, HdrCookieException, HdrLengthException,
                  HdrHistogramSettingsException)


def _new_hist() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


_TEMPLATE = _new_hist()  # the layout every recorder shares (bucket_values reads it)


def _free(h: HdrHistogram) -> None:
    """Free ``h`` now rather than at the next full GC.

    hdrh's histogram and its encoder (which owns the counts, ~190 KB at our range) refer to
    each other, so a dropped histogram is garbage only the cyclic GC finds. Left to it, the
    per-second resets of a long run pile up tens of MB between collections and the process
    RSS ratchets up (benchmarks/bench_soak.py). Breaking the cycle frees it by refcount.
    """
    h.encoder = None


def _bins(h: HdrHistogram) -> list[tuple[int, int]]:
    """``(value, count)`` of every non-empty bucket (:func:`~loadtest.metrics.hdrbuckets.bucket_values`), in increasing order;
    the non-empty buckets found at C speed by numpy (hdrh walks all ~23,500 counts in Python)."""
    counts = np.ctypeslib.as_array(h.counts)
    idx = np.flatnonzero(counts)
    return list(zip(bucket_values(h)[idx].tolist(), counts[idx].tolist(), strict=True))


def _decode_checked(encoded: str) -> HdrHistogram:
    """hdrh's decode of ``encoded``; ValueError for a malformed string or a histogram with other
    parameters (range/precision) than ours, which hdrh would otherwise merge lossily."""
    try:
        decoded = HdrHistogram.decode(encoded)
    except _DECODE_ERRORS as exc:
        raise ValueError(f"not an HdrHistogram encoding: {exc}") from exc
    if (decoded.lowest_trackable_value, decoded.highest_trackable_value, decoded.significant_figures) != (
        LOWEST_US,
        HIGHEST_US,
        SIGNIFICANT_FIGURES,
    ):
        raise ValueError(
            "histogram parameters differ: got "
            f"{decoded.lowest_trackable_value}..{decoded.highest_trackable_value} "
            f"/{decoded.significant_figures} digits, expected "
            f"{LOWEST_US}..{HIGHEST_US}/{SIGNIFICANT_FIGURES}"
        )
    return decoded


def _mean(h: HdrHistogram) -> float:
    """``h.get_mean_value()``, to the bit, visiting only the non-empty buckets."""
    return sum(v * n for v, n in _bins(h)) / int(h.total_count)


def _ms(value_us: float) -> float:
    return round(value_us / 1000.0, 3)


class RecorderData(TypedDict):
    """A :class:`Recorder` as plain data (JSON- and pickle-friendly), see ``to_dict``."""

    histogram: str
    below_range: int
    above_range: int
    invalid: int


class Recorder:
    """One latency histogram of integer microseconds, range 1 µs .. 1 h, 3 significant digits.

    ``record_us(value)`` contract:

    * ``int`` values are recorded as is; any other real number (float, bool, numpy scalar)
      is rounded half-up (1.5 → 2, 1.6 → 2, 1.4 → 1), never truncated.
    * A value that rounds below 1 (including 0, negatives and ``-inf``) is recorded as 1 and
      counted in ``below_range``; one that rounds above 1 h (including ``+inf``) is recorded
      as 1 h and counted in ``above_range``. Clamped values are part of ``count``, so the
      histogram still accounts for every request.
    * ``NaN`` has no place on the axis: it is **not recorded** (not in ``count``) and is
      counted in ``invalid``.
    * ``out_of_range`` = ``below_range + above_range + invalid``.

    Reported values are HdrHistogram's equivalent values (within 0.1%): ``min_us`` is the
    lowest equivalent value of the smallest sample, ``max_us`` and percentiles > 0 the
    highest equivalent value, ``mean_us`` uses bucket midpoints.
    """

    __slots__ = ("_above", "_below", "_h", "_invalid")

    def __init__(self) -> None:
        self._h: HdrHistogram = _new_hist()
        self._below = 0
        self._above = 0
        self._invalid = 0

    # -- recording (hot path) -------------------------------------------------------------

    def record_us(self, value: float) -> None:
        """Record one duration in microseconds (see the class docstring for the rules)."""
        v: int
        if type(value) is int:
            v = value
        elif value != value:  # NaN: the only value not equal to itself
            self._invalid += 1
            return
        elif value < _BELOW_FLOAT:
            v = 0
        elif value >= _ABOVE_FLOAT:
            v = HIGHEST_US + 1
        else:
            v = int(value + 0.5)  # value >= 0.5 here, so int() truncation == floor
        if v < LOWEST_US:
            self._below += 1
            v = LOWEST_US
        elif v > HIGHEST_US:
            self._above += 1
            v = HIGHEST_US
        self._h.record_value(v)

    def record_ns_many(self, values_ns: Iterable[int]) -> None:
        """Record integer nanosecond durations, each exactly as ``record_us(ns / 1000)`` would.

        The batch form of the hot path (a request's ITL gaps, recorded at its end): the
        bucket index is computed inline with HdrHistogram's own formula, about 4x faster
        than one ``record_value`` call per value. A value that is not an ``int`` goes
        through :meth:`record_us`.
        """
        h = self._h
        counts = h.counts
        unit = h.unit_magnitude
        half_mag = h.sub_bucket_half_count_magnitude
        # hdrh: bucket = bit_length(v | mask) - unit - (half_mag + 1);
        # index = ((bucket + 1) << half_mag) + (v >> (bucket + unit)) - half_count
        base = unit + half_mag + 1
        mask = h.sub_bucket_mask
        half = h.sub_bucket_half_count
        lo, hi, n = h.min_value, h.max_value, 0
        for ns in values_ns:
            if type(ns) is not int:
                self.record_us(ns / 1000)
                continue
            v = (ns + 500) // 1000  # round half-up, as record_us does for ns / 1000
            if v < LOWEST_US:
                self._below += 1
                v = LOWEST_US
            elif v > HIGHEST_US:
                self._above += 1
                v = HIGHEST_US
            b = (v | mask).bit_length() - base
            counts[((b + 1) << half_mag) + (v >> (b + unit)) - half] += 1
            if v < lo:
                lo = v
            if v > hi:
                hi = v
            n += 1
        if n:
            h.total_count += n
            h.min_value = min(h.min_value, lo)
            h.max_value = max(h.max_value, hi)

    # -- counters -------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Number of recorded values (clamped ones included, NaN excluded)."""
        return int(self._h.get_total_count())

    @property
    def below_range(self) -> int:
        return self._below

    @property
    def above_range(self) -> int:
        return self._above

    @property
    def invalid(self) -> int:
        """Number of NaN values seen (not recorded)."""
        return self._invalid

    @property
    def out_of_range(self) -> int:
        return self._below + self._above + self._invalid

    # -- merging --------------------------------------------------------------------------

    def add(self, other: Recorder) -> None:
        """Add ``other`` into this recorder: exact (bucket counts add), counters included."""
        if other._h.get_total_count():  # never add an empty hdrh histogram: it zeroes min
            self._h.add(other._h)
        self._below += other._below
        self._above += other._above
        self._invalid += other._invalid

    def add_counters(self, *, below_range: int = 0, above_range: int = 0, invalid: int = 0) -> None:
        """Add out-of-range counters that travelled apart from the histogram encoding."""
        if min(below_range, above_range, invalid) < 0:
            raise ValueError("out-of-range counters cannot be negative")
        self._below += below_range
        self._above += above_range
        self._invalid += invalid

    def reset(self) -> None:
        """Forget every value and counter."""
        _free(self._h)
        self._h = _new_hist()  # faster than hdrh's reset(), which loops in Python
        self._below = self._above = self._invalid = 0

    def __del__(self) -> None:
        # see _free (inlined: no module globals are needed at interpreter shutdown)
        h = getattr(self, "_h", None)
        if h is not None:
            h.encoder = None

    def copy(self) -> Recorder:
        """An independent recorder with the same content."""
        new = Recorder()
        new.add(self)
        return new

    def __eq__(self, other: object) -> bool:
        """Equal when every bucket count and every out-of-range counter is equal."""
        if not isinstance(other, Recorder):
            return NotImplemented
        return (
            self._below == other._below
            and self._above == other._above
            and self._invalid == other._invalid
            and bool(self._h.equals(other._h))
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"Recorder(count={self.count}, min_us={self.min_us}, max_us={self.max_us}, "
            f"out_of_range={self.out_of_range})"
        )

    # -- queries --------------------------------------------------------------------------

    def percentile_us(self, p: float) -> int | None:
        """Value at percentile ``p`` (0..100) in µs; None when empty."""
        if not 0.0 <= p <= 100.0:
            raise ValueError(f"percentile must be within 0..100, got {p!r}")
        if not self._h.get_total_count():
            return None
        return int(self._h.get_value_at_percentile(p))

    @property
    def min_us(self) -> int | None:
        return int(self._h.get_min_value()) if self._h.get_total_count() else None

    @property
    def max_us(self) -> int | None:
        return int(self._h.get_max_value()) if self._h.get_total_count() else None

    @property
    def mean_us(self) -> float | None:
        return _mean(self._h) if self._h.get_total_count() else None

    def nonzero(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """``(indices, counts)`` of the non-empty buckets, copies (the indices' values: :func:`values`)."""
        counts = np.ctypeslib.as_array(self._h.counts)
        idx = np.flatnonzero(counts)
        return idx, counts[idx].astype(np.int64)

    @staticmethod
    def values() -> npt.NDArray[np.int64]:
        """The value each count index stands for (:func:`~loadtest.metrics.hdrbuckets.bucket_values`)."""
        return bucket_values(_TEMPLATE)

    def add_encoded(self, encoded: str) -> None:
        """Add a :meth:`encode` string into this recorder (exact; as ``add(decode(encoded))``
        with one histogram fewer allocated). ValueError as :meth:`decode`."""
        decoded = _decode_checked(encoded)
        if decoded.get_total_count():
            self._h.add(decoded)
        _free(decoded)

    def bins(self) -> list[tuple[int, int]]:
        """``(value_us, count)`` of every non-empty bucket in increasing order, each value the
        bucket's median-equivalent value: what an exporter re-buckets (Prometheus bounds, OTLP
        exponential buckets), with ``sum(v * n)`` equal to ``mean_us * count`` to the bit."""
        return _bins(self._h) if self._h.get_total_count() else []

    def summary_ms(self) -> dict[str, float | int | None]:
        """The ``latency_ms`` entry of summary.json: milliseconds rounded to 3 decimals (µs).

        Keys: ``count, min, mean, p50, p90, p95, p99, p999, max, out_of_range``. With no
        samples every figure except ``count`` and ``out_of_range`` is None.
        """
        out: dict[str, float | int | None] = {"count": self.count}
        if not self._h.get_total_count():
            for key in ("min", "mean", *(k for k, _ in _SUMMARY_PERCENTILES), "max"):
                out[key] = None
        else:
            # One pass over the counts for all percentiles.
            values = self._h.get_percentile_to_value_dict([p for _, p in _SUMMARY_PERCENTILES])
            out["min"] = _ms(self._h.get_min_value())
            out["mean"] = _ms(_mean(self._h))
            for key, p in _SUMMARY_PERCENTILES:
                out[key] = _ms(values[p])
            out["max"] = _ms(self._h.get_max_value())
        out["out_of_range"] = self.out_of_range
        return {
            k: out[k]
            for k in ("count", "min", "mean", "p50", "p90", "p95", "p99", "p999", "max", "out_of_range")
        }

    def spectrum(self) -> list[tuple[float, float]]:
        """Percentile spectrum as ``(quantile, value_ms)`` pairs, quantile in 0..1.

        The same points HdrHistogram's ``output_percentile_distribution`` prints
        (ticks_per_half_distance=5), ending with quantile 1.0 at the maximum. For a chart
        whose x axis is ``1 / (1 - quantile)`` (the last point is at infinity: drop or cap it).
        Values are not rounded. Empty recorder → ``[]``.
        """
        points: list[tuple[float, float]] = []
        if not self._h.get_total_count():
            return points
        # The iterator yields one mutable object: copy its fields at each step.
        for item in self._h.get_percentile_iterator(_TICKS_PER_HALF_DISTANCE):
            points.append((item.percentile_level_iterated_to / 100.0, item.value_iterated_to / 1000.0))
        return points

    # -- plain data -----------------------------------------------------------------------

    def encode(self) -> str:
        """HdrHistogram's standard compressed base64 encoding (V2), histogram only.

        The out-of-range counters are **not** part of the HDR encoding; send them separately
        (``add_counters``) or use :meth:`to_dict`.
        """
        return bytes(self._h.encode()).decode("ascii")

    @classmethod
    def decode(cls, encoded: str) -> Recorder:
        """Inverse of :meth:`encode` (exact); counters start at zero.

        Raises ValueError for a malformed string or a histogram with other parameters
        (range/precision) than ours, which hdrh would otherwise merge lossily.
        """
        decoded = _decode_checked(encoded)
        rec = cls()
        if decoded.get_total_count():
            rec._h.add(decoded)  # into a fresh, non-decoded histogram: same layout, exact
        _free(decoded)
        return rec

    def to_dict(self) -> RecorderData:
        """Histogram and counters as plain data, for crossing a process boundary."""
        return {
            "histogram": self.encode(),
            "below_range": self._below,
            "above_range": self._above,
            "invalid": self._invalid,
        }

    @classmethod
    def from_dict(cls, data: RecorderData) -> Recorder:
        """Inverse of :meth:`to_dict` (exact)."""
        rec = cls.decode(data["histogram"])
        rec.add_counters(
            below_range=data["below_range"], above_range=data["above_range"], invalid=data["invalid"]
        )
        return rec


def merge(recorders: Iterable[Recorder]) -> Recorder:
    """A new recorder holding the exact sum of ``recorders`` (empty input → empty recorder)."""
    out = Recorder()
    for rec in recorders:
        out.add(rec)
    return out
