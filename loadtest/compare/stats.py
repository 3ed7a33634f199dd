"""Per-second histograms stacked for the gate's moving-block bootstrap: percentiles of any
weighted merge of seconds in numpy. Pure (numpy, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hdrh.histogram import HdrHistogram

from loadtest.metrics.recorder import Recorder

__all__ = ["Stack"]


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
