"""Token counts of answers and prompts, from a local Hugging Face tokenizer. Pure: the caller
reads the tokenizer.json file (nothing is ever downloaded) and hands its text in.

An answer is tokenized once, when its stream has ended, from the joined text of its chunks
(never chunk by chunk: a token may span two chunks, inference-perf #566). From the one
encoding come the answer's token count and the tokens of its first chunk (the tokens that
start inside it), for ``tpot_token`` (AIPerf's correction for a bundled first chunk).

A chunk is not a token. Without a tokenizer nothing about tokens is counted or guessed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from tokenizers import Tokenizer

from loadtest.metrics.record import RequestRecord

__all__ = ["TokenCounter"]

#: answers (and prompts) remembered by text: the same text always has the same tokens
_MEMO_ENTRIES = 2048


class TokenCounter:
    """Counts tokens with one tokenizer (``tokenizer.json`` text); ``name`` says which (a path)."""

    __slots__ = ("_answers", "_prompts", "_tok", "name")

    def __init__(self, tokenizer_json: str, *, name: str) -> None:
        """ValueError when the text is not a tokenizer the ``tokenizers`` library can load."""
        try:
            self._tok = Tokenizer.from_str(tokenizer_json)
        except Exception as exc:  # the library raises plain Exception subclasses from Rust
            raise ValueError(f"not a Hugging Face tokenizer.json ({str(exc)[:200]})") from None
        self.name = name
        self._answers: dict[str, tuple[int, tuple[tuple[int, int], ...]]] = {}
        self._prompts: dict[str, int] = {}

    def _encode(self, text: str) -> tuple[int, tuple[tuple[int, int], ...]]:
        memo = self._answers.get(text)
        if memo is None:
            enc = self._tok.encode(text, add_special_tokens=False)
            memo = (len(enc.ids), tuple(enc.offsets))
            if len(self._answers) >= _MEMO_ENTRIES:
                self._answers.clear()
            self._answers[text] = memo
        return memo

    def stamp(self, rec: RequestRecord) -> None:
        """Set a completed answer's ``output_tokens``, ``first_chunk_tokens`` and the
        ``prompt_tokens`` of its prompt as sent."""
        rec.output_tokens, rec.first_chunk_tokens = self.answer(rec.texts)
        rec.prompt_tokens = self.prompt(rec.prompt) if rec.prompt else 0

    def answer(self, texts: Sequence[str]) -> tuple[int, int]:
        """``(output_tokens, first_chunk_tokens)`` of an answer given as its chunks' texts."""
        if not texts:
            return 0, 0
        n, offsets = self._encode("".join(texts))
        return n, bisect_left(offsets, (len(texts[0]),))

    def tokens_in_chunks(self, texts: Sequence[str], start: int, stop: int) -> int:
        """Tokens of the answer that start inside chunks ``start .. stop-1`` (placing an answer's
        tokens inside or outside the measured window when its stream crossed an edge)."""
        if start >= stop or not texts:
            return 0
        _, offsets = self._encode("".join(texts))
        lo = sum(len(t) for t in texts[:start])
        hi = lo + sum(len(t) for t in texts[start:stop])
        return bisect_left(offsets, (hi,)) - bisect_left(offsets, (lo,))

    def prompt(self, text: str) -> int:
        """Tokens of a prompt as the client sent it (the proxy may add context we cannot see)."""
        n = self._prompts.get(text)
        if n is None:
            n = len(self._tok.encode(text, add_special_tokens=False).ids)
            if len(self._prompts) >= _MEMO_ENTRIES:
                self._prompts.clear()
            self._prompts[text] = n
        return n
