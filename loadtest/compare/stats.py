"""The statistics under ``compare``: bootstrap intervals over per-second histograms, and
Newcombe's interval for a difference of two proportions. Pure (numpy, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
from hdrh.histogram import HdrHistogram

from loadtest.metrics.recorder import Recorder

__all__ = ["Stack", "interval", "newcombe"]


def newcombe(c: tuple[int, int], b: tuple[int, int], confidence: float) -> tuple[float, float]:
    """Interval of p_c − p_b for two proportions ``(events, trials)`` (Newcombe 1998, method 10)."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)

    def wilson(k: int, n: int) -> tuple[float, float, float]:
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return p, centre - half, centre + half

    pc, lc, uc = wilson(*c)
    pb, lb, ub = wilson(*b)
    d = pc - pb
    low = d - math.sqrt((pc - lc) ** 2 + (ub - pb) ** 2)
    high = d + math.sqrt((uc - pc) ** 2 + (pb - lb) ** 2)
    return round(low, 6), round(high, 6)


def interval(diff: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1 - confidence
    lo, hi = np.quantile(diff, [alpha / 2, 1 - alpha / 2])
    return round(float(lo), 3), round(float(hi), 3)


class Stack:
    """The per-second histograms of one run and metric as sparse bucket counts.

    ``percentiles_us(weights)`` merges the seconds, each counted ``weights[i]`` times, by
    adding bucket counts, and reads percentiles exactly as hdrh's ``get_value_at_percentile``
    does (first bucket whose cumulative count reaches ``int(p * total / 100 + 0.5)``, at
    least 1; reported as the bucket's highest equivalent value). Same figures as merging
    Recorders with ``add`` and calling ``percentile_us``.
    """

    def __init__(self, intervals: Sequence[Recorder]) -> None:
        hists = [HdrHistogram.decode(r.encode()) for r in intervals]
        nonzero = [np.flatnonzero(np.ctypeslib.as_array(h.counts)) for h in hists]
        index = np.unique(np.concatenate(nonzero))  # bucket indices are in value order
        self.values_us = [int(hists[0].get_highest_equivalent_value(hists[0].get_value_from_index(int(i))))
                          for i in index]  # fmt: skip
        self.cols = np.concatenate([np.searchsorted(index, nz) for nz in nonzero])
        self.counts = np.concatenate([np.ctypeslib.as_array(h.counts)[nz].astype(np.float64)
                                      for h, nz in zip(hists, nonzero, strict=True)])  # fmt: skip
        self.owner = np.repeat(np.arange(len(hists)), [len(nz) for nz in nonzero])
        self.n = len(hists)
        for h in hists:
            h.encoder = None  # break hdrh's reference cycle now (see metrics._free)

    def percentiles_us(self, weights: np.ndarray, percentiles: Sequence[float]) -> list[int]:
        totals = np.bincount(self.cols, weights=self.counts * weights[self.owner], minlength=len(self.values_us))
        cumulative = np.cumsum(totals)
        total = int(cumulative[-1])
        out = []
        for p in percentiles:
            target = max(int(p * total / 100 + 0.5), 1)  # hdrh's get_target_count_at_percentile
            out.append(self.values_us[int(np.searchsorted(cumulative, target, side="left"))])
        return out
