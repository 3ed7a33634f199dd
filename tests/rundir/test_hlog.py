"""Tests for loadtest.rundir.hlog: interval logs written and read back through hdrh.log."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
from hdrh.log import HistogramLogReader

from loadtest.metrics.metricset import MetricSet
from loadtest.metrics.recorder import Recorder, merge
from loadtest.rundir.hlog import read_hlog, write_hlog

START = 1_764_288_000.25  # an epoch time with a fraction


def _intervals() -> tuple[list[tuple[float, float, str]], list[Recorder]]:
    """Three one-second ttft intervals from a MetricSet, the middle one with out-of-range values."""
    ms = MetricSet()
    recorders: list[Recorder] = []
    intervals: list[tuple[float, float, str]] = []
    counts = [100, 250, 7]
    for second, n in enumerate(counts):
        for i in range(n):
            ms.record("ttft", 1000 + 37 * i + second * 0.6)
        if second == 1:
            ms.record("ttft", 0)
            ms.record("ttft", math.inf)
        recorders.append(ms.interval("ttft").copy())
        snap = ms.snapshot(float(second), float(second + 1))
        intervals.append((snap.start_s, snap.end_s, snap.histograms["ttft"]))
    return intervals, recorders


def _write(tmp_path: Path) -> tuple[Path, list[Recorder]]:
    intervals, recorders = _intervals()
    path = tmp_path / "ttft.hlog"
    with open(path, "w", encoding="utf-8") as fp:
        write_hlog(fp, intervals, start_time_s=START, comment="scenario smoke\nmetric ttft (us)")
    return path, recorders


def test_round_trip_counts_and_histograms(tmp_path: Path) -> None:
    path, recorders = _write(tmp_path)
    back = read_hlog(path)
    assert [(s, e) for s, e, _ in back] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    assert [r.count for _, _, r in back] == [100, 252, 7]
    assert [r.count for _, _, r in back] == [r.count for r in recorders]
    for (_, _, got), want in zip(back, recorders, strict=True):
        assert got.encode() == want.encode()
        assert got.percentile_us(99) == want.percentile_us(99)
    total = merge(r for _, _, r in back)
    assert total.count == 359
    assert total.encode() == merge(recorders).encode()
    # the log carries histograms only: out-of-range counters travel elsewhere
    assert total.out_of_range == 0


def test_file_parses_with_hdrh_reader(tmp_path: Path) -> None:
    path, _ = _write(tmp_path)
    reader = HistogramLogReader(str(path), None)
    try:
        hists = []
        while (h := reader.get_next_interval_histogram()) is not None:
            hists.append(h)
        assert reader.get_start_time_sec() == pytest.approx(START, abs=1e-6)
        assert reader.base_time_sec == pytest.approx(START, abs=1e-6)
    finally:
        reader.close()
    assert [h.get_total_count() for h in hists] == [100, 252, 7]
    # absolute msec timestamps = StartTime + interval offset
    assert hists[1].get_start_time_stamp() == pytest.approx((START + 1.0) * 1000.0, abs=0.01)
    assert hists[2].get_end_time_stamp() == pytest.approx((START + 3.0) * 1000.0, abs=0.01)


def test_header_format(tmp_path: Path) -> None:
    path, _ = _write(tmp_path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#scenario smoke"
    assert lines[1] == "#metric ttft (us)"
    assert lines[2] == "#[Histogram log format version 1.2]"
    assert lines[3].startswith(
        "#[StartTime: 1764288000.250000 (seconds since epoch), 2025-11-28T00:00:00.250000"
    )
    assert lines[4] == "#[BaseTime: 1764288000.250000 (seconds since epoch)]"
    assert lines[5] == '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'
    first = lines[6].split(",")
    assert first[:2] == ["0.000000", "1.000000"]
    # max of interval 0 is 1000 + 37*99 = 4663 µs -> floored to 4 ms by hdrh
    assert first[2] == "4.000000"
    assert first[3].startswith("HIST")
    assert len(lines) == 9


def test_fractional_times_keep_microseconds(tmp_path: Path) -> None:
    rec = Recorder()
    rec.record_us(42)
    path = tmp_path / "x.hlog"
    with open(path, "w", encoding="utf-8") as fp:
        write_hlog(fp, [(0.123456, 1.123457, rec.encode())], start_time_s=START)
    [(start_s, end_s, got)] = read_hlog(path)
    assert (start_s, end_s) == (0.123456, 1.123457)
    assert got.count == 1
    assert got.max_us == 42


def test_rejects_negative_times() -> None:
    rec = Recorder()
    rec.record_us(1)
    with pytest.raises(ValueError, match="0 <= start <= end"):
        write_hlog(io.StringIO(), [(-1.0, 0.0, rec.encode())], start_time_s=START)
    with pytest.raises(ValueError, match="start_time_s"):
        write_hlog(io.StringIO(), [], start_time_s=-1.0)


def test_read_detects_lines_hdrh_skips(tmp_path: Path) -> None:
    path, _ = _write(tmp_path)
    with open(path, "a", encoding="utf-8") as fp:
        fp.write("-1.000000,1.000000,0.000000,HISTgarbage\n")  # hdrh's regex cannot parse "-"
    # hdrh's own reader would skip it silently; ours names the line (the file has 9 before it)
    with pytest.raises(ValueError, match=r"line 10 is not an HdrHistogram interval"):
        read_hlog(path)


@pytest.mark.parametrize("bad", ["0.0,1.0,2.0\n", "0.0,1.0,2.0,HISTFAAAAnot-base64\n", "x,1.0,2.0,HISTF\n",
                                 "0.0,1.0,2.0,HISTFAAAACl4nJNpmSzMwMDAxQABzFCaEUrLMdg/gIgwMvEBAB5OAs8=,extra\n"])
def test_read_refuses_every_malformed_interval_line(tmp_path: Path, bad: str) -> None:
    path, _ = _write(tmp_path)
    with open(path, "a", encoding="utf-8") as fp:
        fp.write(bad)
    with pytest.raises(ValueError, match=r"line 10 is not an HdrHistogram interval"):
        read_hlog(path)
