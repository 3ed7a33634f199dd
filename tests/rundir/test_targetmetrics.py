"""target_metrics.csv (issue 21): written atomically, read back as it was, a damaged file
named in a BadInput."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from loadtest.errors import BadInput
from loadtest.rundir.targetmetrics import (
    TARGET_METRICS_COLUMNS,
    TARGET_METRICS_CSV,
    read_target_metrics,
    write_target_metrics,
)

ROWS = [
    {"t_s": -0.0123, "target": 0, "metric": "gens_served_total", "labels": "", "value": 0.0},
    {"t_s": 0.9871, "target": 0, "metric": "queue_depth", "labels": '{pool="a,b",q="say \\"hi\\""}', "value": 4.0},
    {"t_s": 1.0, "target": 1, "metric": "lat_bucket", "labels": '{le="+Inf"}', "value": 12.5},
    {"t_s": 2.0, "target": 1, "metric": "odd", "labels": "", "value": float("nan")},
    {"t_s": 2.0, "target": 1, "metric": "big", "labels": "", "value": float("inf")},
]


def test_rows_are_written_and_read_back_as_they_were(tmp_path: Path) -> None:
    write_target_metrics(tmp_path, ROWS)
    text = (tmp_path / TARGET_METRICS_CSV).read_text(encoding="utf-8")
    assert text.splitlines()[0] == "t_s,metric,labels,value,target"
    assert text.splitlines()[1] == "-0.012,gens_served_total,,0,0"  # t_s to 3 decimals, whole values bare
    frame = read_target_metrics(tmp_path)
    assert frame is not None
    assert list(frame.columns) == list(TARGET_METRICS_COLUMNS)
    assert frame["t_s"].tolist()[:3] == [-0.012, 0.987, 1.0]
    assert frame["labels"].tolist()[:3] == ["", '{pool="a,b",q="say \\"hi\\""}', '{le="+Inf"}']
    assert frame["metric"].tolist() == [r["metric"] for r in ROWS]
    assert frame["target"].tolist() == ["0", "0", "1", "1", "1"]
    values = frame["value"].tolist()
    assert values[:3] == [0.0, 4.0, 12.5] and math.isnan(values[3]) and values[4] == math.inf
    assert [p.name for p in tmp_path.iterdir()] == [TARGET_METRICS_CSV]  # no temporary file left


def test_no_file_means_the_run_was_not_scraped(tmp_path: Path) -> None:
    assert read_target_metrics(tmp_path) is None


def test_no_rows_is_a_file_with_its_header_only(tmp_path: Path) -> None:
    write_target_metrics(tmp_path, [])
    frame = read_target_metrics(tmp_path)
    assert frame is not None and len(frame) == 0
    assert (tmp_path / TARGET_METRICS_CSV).read_text() == "t_s,metric,labels,value,target\n"


def test_a_file_without_the_target_column_reads_as_target_0(tmp_path: Path) -> None:
    (tmp_path / TARGET_METRICS_CSV).write_text("t_s,metric,labels,value\n1.0,up,,1\n2.0,up,,0\n")
    frame = read_target_metrics(tmp_path)
    assert frame is not None
    assert frame["target"].tolist() == ["0", "0"] and frame["value"].tolist() == [1.0, 0.0]


@pytest.mark.parametrize(("text", "complaint"), [
    ("t_s,metric,value\n1,up,1\n", "missing column(s) labels"),
    ("t_s,metric,labels,value\n1,up,,one\n", "column 'value' holds a non-number"),
    ("t_s,metric,labels,value\nsoon,up,,1\n", "column 't_s' holds a non-number"),
    ("t_s,metric,labels,value\n,up,,1\n", "column 't_s' holds a non-number"),
    ("t_s,metric,labels,value\n1,,,1\n", "no metric name"),
    ("", "not a readable CSV file"),
    ('t_s,metric,labels,value\n1,up,"{a=""x}\n', "not a readable CSV file"),
])  # fmt: skip
def test_a_damaged_file_is_bad_input_naming_it(tmp_path: Path, text: str, complaint: str) -> None:
    (tmp_path / TARGET_METRICS_CSV).write_text(text)
    with pytest.raises(BadInput) as err:
        read_target_metrics(tmp_path)
    assert str(tmp_path / TARGET_METRICS_CSV) in str(err.value)
    assert complaint in str(err.value)


def test_binary_garbage_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / TARGET_METRICS_CSV).write_bytes(b"\xff\xfe\x00garbage\x00" * 10)
    with pytest.raises(BadInput, match=TARGET_METRICS_CSV):
        read_target_metrics(tmp_path)
