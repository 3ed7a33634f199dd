"""``target_metrics.csv``: the target's own Prometheus samples, scraped during the run (issue 21).

One row per sample per scrape: ``t_s`` (seconds on the run's clock, as ``timeseries.csv``'s;
3 decimals, negative for the scrape made before the run began), ``metric`` (the sample's name
as exposed: ``gens_served_total``, ``latency_seconds_bucket``), ``labels`` (the label set as
Prometheus writes it, sorted by name: ``{le="0.5",route="/v2/chat"}``, empty when none),
``value``; then ``target``, the position of the scraped URL in the run's ``--scrape`` list
(0, 1, …), which tells several targets apart. Written only when the target was scraped.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadtest.errors import BadInput
from loadtest.rundir.files import write_atomic

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TARGET_METRICS_COLUMNS", "TARGET_METRICS_CSV", "read_target_metrics", "write_target_metrics"]

TARGET_METRICS_CSV = "target_metrics.csv"
TARGET_METRICS_COLUMNS: tuple[str, ...] = ("t_s", "metric", "labels", "value", "target")
_REQUIRED = TARGET_METRICS_COLUMNS[:4]


def _number(value: Any) -> str:
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def write_target_metrics(run_dir: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write ``run_dir/target_metrics.csv`` atomically from the scraper's rows
    (``{t_s, metric, labels, value, target}``; ``target`` 0 when absent). Raises
    :class:`~loadtest.errors.OutputError` when the write fails."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(TARGET_METRICS_COLUMNS)
    for row in rows:
        out.writerow([f"{float(row['t_s']):.3f}", row["metric"], row.get("labels") or "", _number(row["value"]),
                      row.get("target", 0)])  # fmt: skip
    write_atomic(Path(run_dir) / TARGET_METRICS_CSV, buf.getvalue())


def read_target_metrics(run_dir: Path) -> pd.DataFrame | None:
    """``run_dir/target_metrics.csv`` as a frame (``t_s`` and ``value`` floats, ``metric``,
    ``labels`` and ``target`` strings; ``target`` "0" in a file without the column), or None
    when the run was not scraped (no file). BadInput naming the file when it is damaged."""
    import pandas as pd  # loaded where it is used, as the other readers

    path = Path(run_dir) / TARGET_METRICS_CSV
    if not path.exists():
        return None
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise BadInput(f"{path}: not a readable CSV file ({str(exc)[:200]})") from exc
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise BadInput(f"{path}: missing column(s) {', '.join(missing)}")
    if "target" not in frame.columns:
        frame["target"] = "0"
    for col in ("t_s", "value"):
        try:  # Python's float reads Prometheus's NaN, +Inf and -Inf as they are written
            frame[col] = [float(v) for v in frame[col]]
        except (ValueError, TypeError) as exc:
            raise BadInput(f"{path}: column {col!r} holds a non-number ({str(exc)[:200]})") from exc
        frame[col] = frame[col].astype(float)
    if frame["t_s"].isna().any():
        raise BadInput(f"{path}: column 't_s' has an empty or NaN cell")
    if (frame["metric"] == "").any():
        raise BadInput(f"{path}: a row has no metric name")
    return frame[list(TARGET_METRICS_COLUMNS)]
