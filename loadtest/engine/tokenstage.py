"""Token counting off the event loop (issue 19: "after its stream ends and off the hot path").

A completed answer goes to one background thread that tokenizes it
(:meth:`~loadtest.metrics.tokens.TokenCounter.stamp_many`, whose ``encode_batch`` releases the
GIL), then back to the loop, where the collector counts it as it counts any request. The loop
that timestamps frames never waits on a tokenizer: a 1,000-token answer costs ~1.3 ms of
encoding with a 16k BPE, which ``encode`` on the loop would add to every frame arriving
meanwhile. Answers that end while a batch is being encoded form the next batch.

The collector places a request by its own times (``t_stop``, each chunk's arrival), not by
when it is reported, so the short delay moves no figure between seconds or out of the window;
:meth:`TokenStage.drain` is awaited before the worker's final figures are taken.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from loadtest.clock import Clock
from loadtest.metrics.record import RequestRecord
from loadtest.metrics.tokens import TokenCounter

__all__ = ["TokenStage"]

# One thread encodes, by design: the library's own thread pool (rayon, on for encode_batch)
# spins its idle threads, which cost ~30 % more CPU per answer here (126 vs 186 µs for a
# 150-token answer) for no gain. Set before the library's pool starts; a user's choice stands.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class TokenStage:
    """Tokenizes completed answers on a thread, then hands each to ``report(rec, now_ns)``."""

    def __init__(self, counter: TokenCounter, report: Callable[[RequestRecord, int], None], clock: Clock) -> None:
        self._counter, self._report, self._clock = counter, report, clock
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loadtest-tokens")
        self._waiting: list[RequestRecord] = []
        self._busy = False
        self._idle = asyncio.Event()
        self._idle.set()
        #: the longest an answer waited between its end and being counted (ns)
        self.max_delay_ns = 0
        #: the first tokenizer failure (its answers are counted without tokens)
        self.error: str | None = None
        #: CPU seconds the tokenizer thread spent (the tokenizer's share of the generator's CPU)
        self.cpu_s = 0.0

    def submit(self, rec: RequestRecord) -> None:
        """A completed answer (its stream ended): count its tokens, then report it."""
        self._waiting.append(rec)
        if not self._busy:
            self._start()

    def _start(self) -> None:
        batch, self._waiting = self._waiting, []
        self._busy = True
        self._idle.clear()
        loop = asyncio.get_running_loop()
        t_submit = self._clock.now_ns()
        fut = loop.run_in_executor(self._pool, self._stamp, batch)
        fut.add_done_callback(lambda f: self._done(batch, t_submit, f))

    def _stamp(self, batch: list[RequestRecord]) -> None:
        """On the thread: count the batch's tokens, timing this thread's CPU."""
        c0 = time.thread_time()
        try:
            self._counter.stamp_many(batch)
        finally:
            self.cpu_s += time.thread_time() - c0

    def _done(self, batch: list[RequestRecord], t_submit: int, fut: Future[None] | asyncio.Future[None]) -> None:
        exc = None if fut.cancelled() else fut.exception()
        if exc is not None and self.error is None:
            self.error = f"{type(exc).__name__}: {exc}"[:300]
        now = self._clock.now_ns()
        self.max_delay_ns = max(self.max_delay_ns, now - t_submit)
        for rec in batch:
            if exc is not None:
                rec.output_tokens = -1  # not counted: never a guess
            self._report(rec, now)
        self._busy = False
        if self._waiting:
            self._start()
        else:
            self._idle.set()

    async def drain(self) -> None:
        """Until every answer submitted so far has been counted and reported."""
        while self._busy or self._waiting:
            await self._idle.wait()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
