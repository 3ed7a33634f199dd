"""One ``gen`` as measured: the record every layer fills and the collector counts. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["OFFERED_OUTCOMES", "RequestRecord", "tpot_ns"]

#: the outcomes of a request that was offered (its counters add up to ``requests.offered``)
OFFERED_OUTCOMES: tuple[str, ...] = ("completed", "failed", "dropped", "cancelled", "abandoned")


def tpot_ns(chunks: int, t_first: int, t_last: int) -> float | None:
    """Time per output token of one answer: ``(t_last - t_first) / (chunks - 1)`` (ns).

    The one TPOT formula (summary, requests.csv): None below two chunks.
    """
    if chunks > 1 and t_last > t_first:
        return (t_last - t_first) / (chunks - 1)
    return None


@dataclass(slots=True)
class RequestRecord:
    """Everything measured about one ``gen``; times are ``perf_counter_ns`` values (0 = not reached)."""

    request_id: int
    user: int
    phase: str = "measure"
    connection: int = -1
    t_intended: int = 0
    t_send: int = 0
    t_conv: int = 0
    t_first: int = 0
    t_last: int = 0
    t_stop: int = 0
    queue_ns: int = 0
    scheduled: bool = False  # t_intended came from a schedule (open loop, paced user)
    chunks: int = 0
    chars: int = 0
    unknown_events: int = 0
    gaps_ns: list[int] = field(default_factory=list)
    #: the text of each non-empty chunk, in order (to place each chunk in its second and window,
    #: and to count tokens once the answer is complete)
    texts: list[str] = field(default_factory=list)
    #: characters of each chunk, when ``texts`` was not kept (tests, replays); else from ``texts``
    chunk_chars: list[int] = field(default_factory=list)
    outcome: str = ""  # ok | failed | dropped | cancelled | abandoned (the user stopped reading)
    error_category: str = ""
    error_message: str = ""
    conversation_id: str = ""
    #: in a conversation (issue 20): the turn (1, 2, …) and the harness's own key of the
    #: conversation (unique in the run), whatever ids the server gave
    turn: int = 0
    conversation: str = ""
    message_id: str = ""
    #: the W3C trace id of the connection's upgrade (``traceparent``)
    trace_id: str = ""
    prompt_chars: int = 0
    prompt: str = ""
    #: ``key=value`` strings, sorted by key (loadtest.metrics.tags)
    tags: tuple[str, ...] = ()
    #: with a tokenizer, for a completed answer (-1: not counted)
    output_tokens: int = -1
    prompt_tokens: int = -1
    first_chunk_tokens: int = -1
    #: with a tokenizer: the answer's ``tokenizers.Encoding`` (to count the tokens that
    #: arrived inside the measured window: loadtest.metrics.tokens.tokens_before)
    encoding: Any = None

    def tpot_token_ns(self) -> float | None:
        """``(t_last - t_first) / (output_tokens - first_chunk_tokens)`` (ns per output token after
        the first chunk); None without token counts or a token after the first chunk."""
        n = self.output_tokens - self.first_chunk_tokens
        if self.output_tokens >= 0 and n > 0 and self.t_last > self.t_first:
            return (self.t_last - self.t_first) / n
        return None
