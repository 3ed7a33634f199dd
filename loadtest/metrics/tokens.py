"""Token counts of answers and prompts, from a local Hugging Face tokenizer. Pure: the caller
reads the tokenizer.json file (nothing is ever downloaded) and hands its text in.

An answer is tokenized once, when its stream has ended, from the joined text of its chunks
(never chunk by chunk: a token may span two chunks, inference-perf #566). From the one
encoding come the answer's token count and, by bisection over the tokens' character offsets
(:func:`tokens_before`), how many tokens start in a run of chunks: the first chunk's
(``tpot_token``, AIPerf's correction for a bundled first chunk) and, for an answer that
crossed an edge of the measured window, those that arrived inside it. A token that spans two
chunks belongs to the chunk it starts in.

:meth:`TokenCounter.stamp_many` encodes with ``encode_batch``, which releases the GIL: the
engine calls it on a thread of its own, so tokenizing never holds up the event loop that
timestamps frames (a 1,000-token answer takes ~1.3 ms to encode with a 16k BPE; ``encode``
would hold the loop for all of it). What holds the GIL afterwards is a few calls per answer:
the offsets are never converted to a Python list (~80 µs for 1,000 tokens).

A chunk is not a token. Without a tokenizer nothing about tokens is counted or guessed.

``tokenizers`` is an extra (``pip install 'loadtest[tokens]'``: it pulls in huggingface_hub,
~40 MB that a run without a tokenizer never uses); it is imported when a tokenizer is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loadtest.metrics.record import RequestRecord

__all__ = ["TokenCounter", "tokens_before"]

#: prompts remembered by text (a scenario draws its prompts from a list; a prompt's count never changes)
_PROMPT_MEMO = 4096


class TokenCounter:
    """Counts tokens with one tokenizer (``tokenizer.json`` text); ``name`` says which (a path)."""

    __slots__ = ("_prompts", "_tok", "name")

    def __init__(self, tokenizer_json: str, *, name: str) -> None:
        """ValueError when the text is not a tokenizer the ``tokenizers`` library can load, or
        that library is not installed."""
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ValueError("counting tokens needs the tokenizers package, which is not installed: "
                             "pip install 'loadtest[tokens]'") from None
        try:
            self._tok = Tokenizer.from_str(tokenizer_json)
        except Exception as exc:  # the library raises plain Exception subclasses from Rust
            raise ValueError(f"not a Hugging Face tokenizer.json ({str(exc)[:200]})") from None
        self.name = name
        self._prompts: dict[str, int] = {}

    def stamp_many(self, recs: Sequence[RequestRecord]) -> None:
        """Set each completed answer's ``output_tokens``, ``first_chunk_tokens``, ``encoding``
        (kept until the collector has placed the answer's tokens in the window) and its
        prompt's ``prompt_tokens`` (as sent). Thread-safe for records no other thread touches
        meanwhile."""
        if not recs:
            return
        encodings = self._tok.encode_batch(["".join(r.texts) for r in recs], add_special_tokens=False)
        for rec, enc in zip(recs, encodings, strict=True):
            rec.output_tokens = n = len(enc)
            rec.first_chunk_tokens = tokens_before(enc, len(rec.texts[0]), n) if rec.texts else 0
            rec.encoding = enc
        new = list({r.prompt for r in recs if r.prompt and r.prompt not in self._prompts})
        if new:
            if len(self._prompts) + len(new) > _PROMPT_MEMO:
                self._prompts.clear()
            for text, enc in zip(new, self._tok.encode_batch(new, add_special_tokens=False), strict=True):
                self._prompts[text] = len(enc.ids)
        for rec in recs:
            rec.prompt_tokens = self._prompts[rec.prompt] if rec.prompt else 0

    def stamp(self, rec: RequestRecord) -> None:
        """:meth:`stamp_many` of one record."""
        self.stamp_many([rec])

    def answer(self, texts: Sequence[str]) -> tuple[int, int]:
        """``(output_tokens, first_chunk_tokens)`` of an answer given as its chunks' texts."""
        rec = RequestRecord(request_id=0, user=0, texts=list(texts))
        self.stamp(rec)
        return rec.output_tokens, rec.first_chunk_tokens


def tokens_before(encoding: Any, pos: int, n: int | None = None) -> int:
    """How many of ``encoding``'s tokens start before character ``pos`` of the encoded text
    (tokens are in text order; a bisection: ~log2(n) calls, never the whole offsets list)."""
    lo, hi = 0, len(encoding) if n is None else n
    while lo < hi:
        mid = (lo + hi) // 2
        span = encoding.token_to_chars(mid)
        if span is not None and span[0] < pos:
            lo = mid + 1
        else:
            hi = mid
    return lo
