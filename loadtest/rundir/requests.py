"""requests.csv: one row per ``gen``, streamed while the run goes on (a worker in another process
writes a headerless part the coordinator absorbs; a Ray actor sends its rows as text)."""

from __future__ import annotations

import contextlib
import csv
import os
from pathlib import Path
from typing import Any

from loadtest.errors import redact
from loadtest.metrics.record import RequestRecord, tpot_ns

__all__ = ["REQUEST_COLUMNS", "RequestCsv", "request_row"]

REQUEST_COLUMNS: tuple[str, ...] = (
    "request_id", "user", "connection", "phase", "t_intended_s", "t_send_s", "t_conv_s",
    "t_first_s", "t_last_s", "t_stop_s", "ttft_ms", "ttft_uncorrected_ms", "e2e_ms",
    "e2e_uncorrected_ms", "tpot_ms", "queue_ms", "chunks", "chars", "unknown_events", "outcome",
    "error_category", "error_message", "conversation_id", "message_id", "prompt_chars", "worker",
    "tags", "output_tokens", "prompt_tokens", "first_chunk_tokens", "tpot_token_ms", "turn", "conversation",
    "trace_id",
)
_NS = 1e9


def _s(t: int, t0: int) -> str:
    return f"{(t - t0) / _NS:.6f}" if t else ""


def _ms(a: int, b: int) -> str:
    return f"{(a - b) / 1e6:.3f}" if a and b else ""


def request_row(r: RequestRecord, t0: int, *, secret: str | None, worker: int) -> tuple[Any, ...]:
    """One row of requests.csv (REQUEST_COLUMNS), secrets redacted."""
    start = r.t_intended or r.t_send
    tpot_value = tpot_ns(r.chunks, r.t_first, r.t_last) if r.outcome == "ok" else None
    tpot = "" if tpot_value is None else f"{tpot_value / 1e6:.3f}"
    counted = r.output_tokens >= 0
    tpot_token = r.tpot_token_ns() if counted else None
    return (
        r.request_id, r.user, r.connection, r.phase, _s(r.t_intended, t0), _s(r.t_send, t0),
        _s(r.t_conv, t0), _s(r.t_first, t0), _s(r.t_last, t0), _s(r.t_stop, t0),
        _ms(r.t_first, start), _ms(r.t_first, r.t_send), _ms(r.t_stop, start),
        _ms(r.t_stop, r.t_send), tpot, f"{r.queue_ns / 1e6:.3f}" if r.scheduled else "",
        r.chunks, r.chars, r.unknown_events, r.outcome, r.error_category,
        redact(r.error_message, secret), r.conversation_id, r.message_id, r.prompt_chars,
        worker, ";".join(r.tags), r.output_tokens if counted else "", r.prompt_tokens if counted else "",
        r.first_chunk_tokens if counted else "", "" if tpot_token is None else f"{tpot_token / 1e6:.3f}",
        r.turn or "", r.conversation, r.trace_id,
    )


class RequestCsv:
    """Streams one row per request into ``requests.csv.partial``; ``finish()`` renames it.

    A failed write (disk full, I/O error) does not stop the run: the rows written so far are
    kept, later rows are counted in ``lost`` and ``error`` holds the first failure; the
    caller reports it (:class:`OutputError`, exit 74) once the run directory is written.
    """

    def __init__(self, run_dir: Path, *, secret: str | None = None) -> None:
        self._created_dir = not run_dir.exists()
        self._dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / "requests.csv"
        self._partial = run_dir / "requests.csv.partial"
        self._f = open(self._partial, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed in finish()
        self._w = csv.writer(self._f)
        self._w.writerow(REQUEST_COLUMNS)
        self._secret = secret
        self.rows = 0
        self.lost = 0
        self.error: OSError | None = None

    def _failed(self, exc: OSError) -> None:
        if self.error is None:
            self.error = exc
        with contextlib.suppress(OSError):
            self._f.close()

    def __call__(self, r: RequestRecord, t0: int) -> None:
        if self.error is not None:
            self.lost += 1
            return
        try:
            self._write(r, t0)
        except OSError as exc:
            self.lost += 1
            self._failed(exc)
            return
        self.rows += 1

    def _write(self, r: RequestRecord, t0: int) -> None:
        self._w.writerow(request_row(r, t0, secret=self._secret, worker=0))  # others' rows: absorb, append_text

    def discard(self) -> None:
        """Nothing was measured: remove the partial file (and the directory, if we made it)."""
        if not self._f.closed:
            self._f.close()
        self._partial.unlink(missing_ok=True)
        if self._created_dir:
            with contextlib.suppress(OSError):
                self._dir.rmdir()  # only if empty

    def absorb(self, part: Path) -> None:
        """Append a worker process's part (rows already in this file's columns:
        :mod:`loadtest.runner.processes`), then delete it.

        What a lost worker wrote before it was lost is kept: no recorded row is dropped.
        """
        if self.error is not None or not part.exists():
            return
        try:
            self._f.flush()
            with part.open(encoding="utf-8", newline="") as f:
                for line in f:
                    if line.endswith("\n"):  # a row cut short by a killed worker is left out
                        self._f.write(line)
                        self.rows += 1
            part.unlink()
        except OSError as exc:
            self._failed(exc)

    def append_text(self, text: str) -> None:
        """Append rows already in this file's columns, as CSV text (a remote worker's rows:
        :mod:`loadtest.runner.rayactors`); a row cut short (no final newline) is left out."""
        if self.error is not None or not text:
            return
        lines = text.splitlines(keepends=True)
        try:
            for line in lines:
                if line.endswith("\n"):
                    self._f.write(line)
                    self.rows += 1
        except OSError as exc:
            self.lost += 1
            self._failed(exc)

    def finish(self) -> None:
        """Flush and rename to ``requests.csv``. After a failed write the rows that made it to
        disk are renamed all the same (a truncated last line is possible)."""
        if not self._f.closed:
            try:
                self._f.flush()
                os.fsync(self._f.fileno())
                self._f.close()
            except OSError as exc:
                self._failed(exc)
        if self._partial.exists():
            try:
                os.replace(self._partial, self.path)
            except OSError as exc:
                self._failed(exc)

    def failure(self) -> str | None:
        """One line about a failed write, or None when every row was written."""
        if self.error is None:
            return None
        return (f"writing {self.path} failed ({self.error.strerror or self.error}): {self.rows} rows "
                f"kept, {self.lost} not written")
