"""Every live output of one run, in one object the coordinator drives (:class:`LiveExports`).

Lifecycle (the order :func:`loadtest.runner.coordinator.run` and
:func:`loadtest.runner.todir.run_to_dir` keep)::

    exports.open()            bind /metrics (a port in use: BadInput, exit 2, before anything
                              connects), start the OTLP pusher, scrape the target once
    exports.second(parts, p)  about once a second on the coordinator's loop: one LiveSnapshot,
                              handed to each exporter (no I/O here)
    exports.workers_done(ps)  the workers' final figures (what the last seconds did not bring)
    exports.finish(result)    the final snapshot, from the merged result (= summary.json);
                              the last OTLP push; the scraper's last scrape
    exports.close()           after the run directory is written: /metrics stays up until
                              ``prometheus_linger`` after finish, so a scraper sees the end

A live output that fails (a collector down, a target's endpoint answering garbage) is a
warning and a line in summary.json ``live``, never a failed or slowed run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from loadtest.engine.result import Progress, RunResult
from loadtest.live.state import LiveSnapshot, LiveState
from loadtest.metrics.figures import Figures

__all__ = ["LiveExports"]


def _ignore(_text: str) -> None:
    return None


class LiveExports:
    """The live outputs ``outputs`` (a scenario's OutputsConfig) asks for, for one run."""

    def __init__(self, outputs: Any, *, run: str, run_id: str, tokenized: bool = False,
                 warn: Callable[[str], None] = _ignore) -> None:
        self.outputs = outputs
        self.run_id = run_id
        self.labels = {"run": run, "run_id": run_id}
        self._warn = warn
        self._state = LiveState(tokenized=tokenized)
        self._prometheus: Any = None
        self._otlp: Any = None
        self._scraper: Any = None
        self._linger_until = 0.0
        self._last: LiveSnapshot | None = None
        self._final_parts: list[Figures] = []
        self.final: LiveSnapshot | None = None

    @property
    def active(self) -> bool:
        return bool(self.outputs.any)

    def open(self) -> None:
        """Bind and start what the outputs ask for (BadInput, exit 2, when /metrics cannot bind)."""
        o = self.outputs
        if o.prometheus is not None:
            from loadtest.live.prometheus import PrometheusEndpoint

            host, port = o.prometheus_address
            self._prometheus = PrometheusEndpoint(host, port, self.labels)
            self._prometheus.open()
        if o.otlp is not None:
            from loadtest.live.otlp import OtlpPusher

            self._otlp = OtlpPusher(o.otlp, attributes=self.labels, interval_s=o.otlp_interval_s, warn=self._warn)
            self._otlp.start()
        if o.scrape:
            from loadtest.live.scrape import TargetScraper

            self._scraper = TargetScraper(o.scrape)
            self._scraper.start()

    def _publish(self, snap: LiveSnapshot) -> None:
        self._last = snap
        if self._prometheus is not None:
            self._prometheus.publish(snap)
        if self._otlp is not None:
            self._otlp.update(snap)

    def second(self, parts: Sequence[Figures], progress: Progress) -> None:
        """The run so far (the workers' streamed figures, the merged live line): to every exporter."""
        if self._prometheus is not None or self._otlp is not None:
            self._publish(self._state.update(parts, progress))

    def workers_done(self, parts: Sequence[Figures]) -> None:
        """The workers' final figures, at the positions of :meth:`second`'s (kept for :meth:`finish`)."""
        self._final_parts = list(parts)

    def finish(self, result: RunResult) -> None:
        """The finished run's figures, published; the last push and the last scrape."""
        if self._prometheus is not None or self._otlp is not None:
            self.final = snap = self._state.final(result, self._final_parts)
            self._publish(snap)
            if self._otlp is not None:
                self._otlp.finish(snap)
        if self._scraper is not None:
            self._scraper.stop()
        self._linger_until = time.monotonic() + float(self.outputs.prometheus_linger_s)

    def target_rows(self, t0_epoch_ns: int) -> list[dict[str, Any]] | None:
        """target_metrics.csv's rows on the run's clock (None: nothing was scraped)."""
        return None if self._scraper is None else self._scraper.rows(t0_epoch_ns)

    def status(self) -> dict[str, Any] | None:
        """summary.json's ``live``: where the run exported and how that went (None: no live output)."""
        if not self.active:
            return None
        out: dict[str, Any] = {"run_id": self.run_id}
        if self._prometheus is not None:
            out["prometheus"] = self._prometheus.status()
        if self._otlp is not None:
            out["otlp"] = self._otlp.status()
        if self._scraper is not None:
            out["scrape"] = self._scraper.status()
        return out

    def close(self, *, linger: bool = True) -> None:
        """Stop everything; /metrics first stays up until the linger after :meth:`finish` ends."""
        if self._otlp is not None and self.final is None and self._last is not None:
            self._otlp.finish(self._last)  # the run ended in an error: push what it had
        if self._scraper is not None:
            self._scraper.stop()
        if self._prometheus is not None:
            wait = self._linger_until - time.monotonic()
            try:
                if linger and self.final is not None and wait > 0:
                    time.sleep(wait)
            except KeyboardInterrupt:  # Ctrl-C while lingering: the run is written, stop serving
                pass
            finally:
                self._prometheus.close()
                self._prometheus = None
