"""Recorder.bins(): every non-empty bucket at hdrh's own median-equivalent value (computed
here the slow way, one hdrh call per bucket), with the counts; and the mean built on it equals
hdrh's get_mean_value to the bit. The live exporters re-bucket these bins."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtest.metrics.recorder import HIGHEST_US, LOWEST_US, Recorder


def _slow_bins(rec: Recorder) -> list[tuple[int, int]]:
    h = rec._h
    counts = np.ctypeslib.as_array(h.counts)
    return [(int(h._hdr_median_equiv_value(h.get_highest_equivalent_value(h.get_value_from_index(i)))),
             int(counts[i])) for i in np.flatnonzero(counts).tolist()]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.integers(LOWEST_US, 5_000), st.integers(LOWEST_US, HIGHEST_US),
                          st.sampled_from([LOWEST_US, 2047, 2048, 4095, 4096, HIGHEST_US])), min_size=1, max_size=300))
def test_bins_are_hdrh_median_equivalents_and_the_mean_is_hdrh_s(values: list[int]) -> None:
    rec = Recorder()
    for v in values:
        rec.record_us(v)
    bins = rec.bins()
    assert bins == _slow_bins(rec)
    assert sum(n for _, n in bins) == rec.count == len(values)
    assert [v for v, _ in bins] == sorted(v for v, _ in bins)
    assert rec.mean_us == rec._h.get_mean_value()
    for v in values:  # every value lies within 0.1 % (3 digits) of a bin
        assert min(abs(b - v) for b, _ in bins) <= max(1, v * 0.001)


def test_an_empty_recorder_has_no_bins() -> None:
    assert Recorder().bins() == []
