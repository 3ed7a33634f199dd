"""The run directory (docs/run-directory.md): every file written and read back here.

``summary.json`` through the :class:`Summary` model (:func:`read_summary`,
:func:`summary_text`), ``<metric>.hlog`` through the one HdrHistogram log reader
(:func:`read_hlog_intervals`, :func:`read_hlog_total`), ``timeseries.csv`` and
``requests.csv`` through pandas (:func:`read_timeseries`, :func:`read_requests`), and every
file through the one atomic writer (:func:`write_atomic`). ``loadtest.rundir.writer`` writes a
run with these; ``report``, ``compare`` and ``sweep`` read runs with them. Readers raise
:class:`~loadtest.errors.BadInput` (exit 2) naming the file; the writer
:class:`~loadtest.errors.OutputError` (exit 74).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loadtest.rundir.files import (
        TIMESERIES_REQUIRED,
        read_hlog_intervals,
        read_hlog_total,
        read_requests,
        read_text,
        read_timeseries,
        write_atomic,
    )
    from loadtest.rundir.summary import SCHEMA, Summary, read_summary, summary_text

__all__ = [
    "SCHEMA",
    "TIMESERIES_REQUIRED",
    "Summary",
    "read_hlog_intervals",
    "read_hlog_total",
    "read_requests",
    "read_summary",
    "read_text",
    "read_timeseries",
    "summary_text",
    "write_atomic",
]
_HOME = {"SCHEMA": "summary", "Summary": "summary", "read_summary": "summary", "summary_text": "summary"}


def __getattr__(name: str) -> Any:
    """The names above, imported on first use (PEP 562): a module of this package that needs
    neither numpy nor pydantic (:mod:`~loadtest.rundir.noresult`, written during a Ctrl-C at
    start-up) loads in milliseconds."""
    if name not in __all__:
        raise AttributeError(f"module 'loadtest.rundir' has no attribute {name!r}")
    return getattr(importlib.import_module(f"loadtest.rundir.{_HOME.get(name, 'files')}"), name)
