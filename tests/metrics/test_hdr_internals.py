"""The hdrhistogram internals the recorder relies on (loadtest.metrics.recorder, hdrbuckets):
each one still there and still meaning what our code assumes. pyproject bounds hdrhistogram
below the next minor (<0.11); a release that changes any of these fails here, naming it, not
silently in our figures."""

from __future__ import annotations

import ctypes
from importlib.metadata import version

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from loadtest.metrics.hdrbuckets import bucket_values
from loadtest.metrics.recorder import HIGHEST_US, LOWEST_US, SIGNIFICANT_FIGURES, Recorder

# attribute -> what recorder/hdrbuckets use it for
USED = {
    "counts": "the counts array, written in place by Recorder.record_ns_many, read through numpy",
    "counts_len": "the length of counts (bucket_values' layout key)",
    "total_count": "incremented in place by record_ns_many",
    "min_value": "lowered in place by record_ns_many",
    "max_value": "raised in place by record_ns_many",
    "unit_magnitude": "the index formula",
    "sub_bucket_half_count_magnitude": "the index formula",
    "sub_bucket_half_count": "the index formula",
    "sub_bucket_mask": "the index formula",
    "encoder": "set to None to break the histogram<->encoder cycle (recorder._free)",
    "lowest_trackable_value": "checked on decode (recorder._decode_checked)",
    "highest_trackable_value": "checked on decode",
    "significant_figures": "checked on decode",
    "_hdr_median_equiv_value": "the value a bucket counts at in hdrh's mean (bucket_values mirrors it)",
}


def _hist() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def test_hdrhistogram_is_a_release_these_internals_were_checked_on() -> None:
    major, minor = (int(x) for x in version("hdrhistogram").split(".")[:2])
    assert (major, minor) == (0, 10), f"hdrhistogram {version('hdrhistogram')}: pyproject allows >=0.10,<0.11"


@pytest.mark.parametrize("name", sorted(USED))
def test_every_internal_the_recorder_uses_exists(name: str) -> None:
    h = _hist()
    if not hasattr(h, name):
        pytest.fail(f"hdrh.histogram.HdrHistogram has no attribute {name!r} any more, which loadtest uses "
                    f"for {USED[name]}: adapt loadtest.metrics or pin hdrhistogram to a release that has it")


def test_counts_is_a_ctypes_array_numpy_can_view_and_write() -> None:
    h = _hist()
    assert isinstance(h.counts, ctypes.Array) and len(h.counts) == h.counts_len, type(h.counts)
    view = np.ctypeslib.as_array(h.counts)
    h.record_value(1234)
    assert view.sum() == 1 and view[h.get_counts_array_index(1234)] == 1  # a view, not a copy


def test_the_inline_index_formula_is_hdrh_s() -> None:
    """record_ns_many computes the bucket index itself; it must land where record_value does."""
    values = [LOWEST_US, 2, 1023, 1024, 2047, 2048, 4095, 4096, 123_456, 99_999_999, HIGHEST_US]
    values += np.unique(np.geomspace(1, HIGHEST_US, 400).astype(np.int64)).tolist()
    fast, slow = Recorder(), _hist()
    fast.record_ns_many([v * 1000 for v in values])
    for v in values:
        slow.record_value(v)
    assert np.array_equal(np.ctypeslib.as_array(fast._h.counts), np.ctypeslib.as_array(slow.counts))
    assert (fast._h.total_count, fast._h.min_value, fast._h.max_value) == (
        slow.total_count, slow.min_value, slow.max_value)


def test_bucket_values_are_hdrh_s_median_equivalents() -> None:
    h = _hist()
    ours = bucket_values(h)
    idx = np.unique(np.linspace(0, h.counts_len - 1, 2000).astype(np.int64)).tolist()
    theirs = [h._hdr_median_equiv_value(h.get_highest_equivalent_value(h.get_value_from_index(i))) for i in idx]
    assert ours[idx].tolist() == theirs
