"""One conversation of a chat user (issue 20): its turns through the session's steps, in order,
one at a time, on one connection.

A conversation is ``turns`` passes through ``session.steps``; each ``gen`` in it is a turn,
numbered from 1 (tag ``turn=N``, ``RequestRecord.turn``). How a turn carries what came before is
the scenario's ``history``:

- ``server``: every turn after the first names the conversation's id, taken from its latest
  ``conv-message``, in the gen field ``id_field`` (default ``conversationId``);
- ``client``: no id; each prompt carries the conversation so far (earlier prompts and answers,
  then the new prompt), as a client-side chat sends it;
- ``none``: independent turns.

**Intended times** (coordinated omission stays corrected): the first turn's is the
conversation's start (its arrival, in open loop); a later turn's is the end of the previous
answer plus the think times between, and the turn is sent when that time comes. A turn sent
late (the generator, or a queue, held it up) is late in ``ttft``, not in ``ttft_uncorrected``.

**Ends**: ``completed`` (every turn answered), ``abandoned`` (with probability ``abandon`` per
answer the user stops reading after a seeded 1..8 chunks, when the next chunk shows the answer
goes on: the socket is closed; an answer no longer than that is read to the end), ``failed`` (a turn failed: the connection is lost or
retired, the next conversation takes a new one), ``unfinished`` (the run ended first) or
``dropped`` (open loop: its start found the queue full).
"""

from __future__ import annotations

import random
from typing import Any

from loadtest.engine.connection import Connection
from loadtest.metrics.record import RequestRecord
from loadtest.schedule.arrivals import trace_prompt

__all__ = ["ABANDON_MAX_CHUNKS", "Conversation"]

#: an abandoning user stops after 1..this many chunks (seeded, uniform)
ABANDON_MAX_CHUNKS = 8


def _with_turn(tags: tuple[str, ...], turn: int) -> tuple[str, ...]:
    """The request's tags with ``turn=N`` among them, keys still sorted."""
    return tuple(sorted((*tags, f"turn={turn}"), key=lambda t: t.partition("=")[0]))


class Conversation:
    """One conversation: build with the run's context, the session's steps and gen factories,
    then ``await run(conn)`` (closed loop) or :meth:`first_turn` + ``await run(conn, first)``
    (open loop: the first turn is queued for a connection like any arrival)."""

    def __init__(self, ctx: Any, steps: list[Any], gens: dict[int, Any], config: Any, rng: random.Random, *,
                 key: str, user: int, script: tuple[Any, ...] | None = None) -> None:
        self.ctx, self.steps, self.gens, self.config, self.rng = ctx, steps, gens, config, rng
        self.key, self.user = key, user
        #: a replayed trace conversation's later turns (loadtest.schedule.traceturns.TraceTurn):
        #: their prompts and times replace the steps' (the first gen step gives the other fields)
        self.script = script
        self.turns = 1 + len(script) if script is not None else config.draw_turns(rng)  # passes
        self.turn = 0  # turns sent so far (gens)
        self.outcome = "completed"
        self.server_id = ""  # the id of the latest conv-message (history: server)
        self.transcript = ""  # earlier prompts and answers (history: client)
        self.start_ns = 0
        self.end_ns = 0  # the last answer's end
        self.cursor_ns = 0  # the intended time of the next gen
        self.reported = False

    # ------------------------------------------------------------------ turns

    def _next_turn(self, step: Any, intended_ns: int, prompt: str | None = None) -> tuple[RequestRecord, str] | None:
        """The record and frame of the next turn at ``step`` (None: the request cap is reached)."""
        ctx = self.ctx
        rid = ctx.take_request()
        if rid is None:
            return None
        self.turn += 1
        history = self.config.history
        extra = {self.config.id_field: self.server_id} if history == "server" and self.server_id else None
        context = self.transcript if history == "client" else ""
        frame, prompt, tags = self.gens[id(step)].build(self.rng, prompt, context=context, extra=extra)
        # a closed-loop conversation's first turn is sent when its user starts it (unscheduled,
        # as any closed-loop gen); a later turn's time comes from the one before
        first = self.turn == 1
        rec = RequestRecord(request_id=rid, user=self.user, prompt_chars=len(prompt), prompt=prompt,
                            tags=_with_turn(tags, self.turn), turn=self.turn, conversation=self.key,
                            t_intended=0 if first else intended_ns, scheduled=not first)
        rec.phase = ctx.collector.phase_of(intended_ns)
        return rec, frame

    def first_frame(self, prompt: str | None = None) -> tuple[str, str, tuple[str, ...]]:
        """Open loop: the first turn's (frame, prompt, tags); the dispatcher makes its record and
        calls :meth:`begin`. The steps before the first gen of the first pass are not run: the
        arrival is the first question."""
        self.turn = 1
        first_gen = next(s for s in self.steps if id(s) in self.gens)
        frame, sent, tags = self.gens[id(first_gen)].build(self.rng, prompt)
        return frame, sent, _with_turn(tags, 1)

    def begin(self, rec: RequestRecord, intended_ns: int) -> None:
        """Open loop: ``rec`` is this conversation's first turn, intended at ``intended_ns``."""
        self.start_ns = self.cursor_ns = intended_ns
        rec.turn, rec.conversation = 1, self.key

    def _abandon_after(self) -> int:
        a = self.config.abandon
        if a and self.rng.random() < a:
            return self.rng.randint(1, ABANDON_MAX_CHUNKS)
        return 0

    # ------------------------------------------------------------------ the conversation

    async def run(self, conn: Connection, first: tuple[RequestRecord, str] | None = None) -> None:
        """Every turn in order on ``conn``; reports the conversation once, however it ends."""
        now = self.ctx.clock.now_ns
        if first is None:
            self.start_ns = self.cursor_ns = now()
        try:
            await self._turns(conn, first)
        except BaseException:
            self.outcome = "unfinished"  # cancelled with the run
            raise
        finally:
            self.report(self.end_ns or now())

    async def _turns(self, conn: Connection, first: tuple[RequestRecord, str] | None) -> None:
        from loadtest.scenario import GenStep, ThinkStep

        ctx = self.ctx
        now = ctx.clock.now_ns
        if self.script is not None:
            await self._replay(conn, first)
            return
        skipping = first is not None  # open loop: the first pass starts at its first gen
        for _ in range(self.turns):
            for step in self.steps:
                if conn.broken and not skipping:  # lost (or retired) mid-conversation: it ends here
                    self.outcome = "failed"
                    return
                if isinstance(step, GenStep):
                    if skipping:
                        skipping = False
                        assert first is not None
                        rec, frame = first
                        if not await self._ask(conn, rec, frame):
                            return
                    elif not await self._turn_at(conn, step):
                        return
                    continue
                if skipping:
                    continue
                if isinstance(step, ThinkStep):
                    self.cursor_ns += round(step.sample_s(self.rng) * 1e9)
                    continue
                if not ctx.running():
                    self.outcome = "unfinished"
                    return
                await ctx.session_step(step, conn)
                self.cursor_ns = max(self.cursor_ns, now())

    async def _ask(self, conn: Connection, rec: RequestRecord, frame: str) -> bool:
        """One turn, sent and read (or abandoned); False when the conversation ends with it."""
        await self.ctx.gen(conn, frame, rec, abandon_after=self._abandon_after())
        self.end_ns = self.cursor_ns = rec.t_stop or self.ctx.clock.now_ns()
        if rec.outcome == "ok":
            self.server_id = rec.conversation_id or self.server_id
            if self.config.history == "client":
                self.transcript = f"{rec.prompt}\n\n{''.join(rec.texts)}\n\n"
            return True
        self.outcome = {"abandoned": "abandoned", "cancelled": "unfinished"}.get(rec.outcome, "failed")
        return False

    async def _replay(self, conn: Connection, first: tuple[RequestRecord, str] | None) -> None:
        """A trace conversation: its first turn (the arrival), then each later turn at its own
        offset, or ``think`` seconds after the previous answer ended."""
        ctx = self.ctx
        step = next(s for s in self.steps if id(s) in self.gens)
        if first is not None and not await self._ask(conn, *first):
            return
        for turn in self.script or ():
            if conn.broken:
                self.outcome = "failed"
                return
            if turn.offset_s is not None:
                self.cursor_ns = ctx.collector.t0_ns + round(turn.offset_s * 1e9)
            else:
                self.cursor_ns += round(turn.think_s * 1e9)
            if not await self._turn_at(conn, step, trace_prompt(turn.prompt, turn.prompt_chars)):
                return

    async def _turn_at(self, conn: Connection, step: Any, prompt: str | None = None) -> bool:
        """The next turn at ``step``, sent when its intended time (the cursor) comes; False when
        the conversation ends (the run did, the request cap was reached, or the turn ended it)."""
        ctx = self.ctx
        if self.cursor_ns > ctx.clock.now_ns():
            await ctx.sleep_until_ns(self.cursor_ns)
        if not ctx.running():
            self.outcome = "unfinished"
            return False
        made = self._next_turn(step, self.cursor_ns, prompt)
        if made is None:
            self.outcome = "unfinished"
            return False
        return await self._ask(conn, *made)

    def report(self, end_ns: int, outcome: str | None = None) -> None:
        """Tell the collector how this conversation ended (once)."""
        if self.reported:
            return
        self.reported = True
        if outcome is not None:
            self.outcome = outcome
        self.ctx.collector.on_conversation(self.outcome, start_ns=self.start_ns, end_ns=max(end_ns, self.start_ns),
                                           turns=self.turn)
