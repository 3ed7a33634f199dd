"""Token counts (issue 19): one encoding of the joined answer, never chunk by chunk; the first
chunk's tokens for tpot_token; a tokenizer that is missing or broken is exit 2 before anything
connects."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from support.helpers import ROOT, env_without, run_cli
from tokenizers import Tokenizer, models, pre_tokenizers

from loadtest.metrics.record import RequestRecord
from loadtest.metrics.tokens import TokenCounter, tokens_before

WORDS = ["[UNK]", "artificial", "intelligence", "is", "the", "study", "of", "systems", "."]


def word_tokenizer() -> str:
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok.to_str()


def test_an_answer_is_counted_from_its_joined_text_not_chunk_by_chunk() -> None:
    counter = TokenCounter(word_tokenizer(), name="words")
    # "artificial" is split across two chunks: chunk by chunk it would be two unknown tokens
    chunks = ["artif", "icial intelligence ", "is the", " study."]
    n, first = counter.answer(chunks)
    assert n == 6  # artificial intelligence is the study .
    assert first == 1  # the token that starts in the first chunk
    chunked = sum(counter.answer([c])[0] for c in chunks)
    assert chunked != n  # what per-chunk counting (inference-perf #566) would have reported
    # the tokens that start in each chunk (window placement): [artificial] [intelligence] [is the] [study .]
    rec = RequestRecord(request_id=1, user=0, texts=chunks)
    counter.stamp(rec)
    bounds = [0, 5, 24, 30, 37]  # where each chunk starts in the joined text, and its end
    starts = [tokens_before(rec.encoding, b) for b in bounds]
    assert [b - a for a, b in itertools.pairwise(starts)] == [1, 1, 2, 2] and starts[-1] == n
    assert counter.answer([]) == (0, 0)


def test_tpot_token_is_the_stream_time_over_tokens_after_the_first_chunk() -> None:
    counter = TokenCounter(word_tokenizer(), name="words")
    rec = RequestRecord(request_id=1, user=0, t_first=1_000_000, t_last=61_000_000, chunks=3,
                        texts=["the study ", "of the ", "systems ."], prompt="artificial intelligence")
    counter.stamp(rec)
    assert (rec.output_tokens, rec.first_chunk_tokens, rec.prompt_tokens) == (6, 2, 2)
    assert rec.tpot_token_ns() == pytest.approx(60_000_000 / 4)


def test_not_a_tokenizer_is_refused() -> None:
    with pytest.raises(ValueError, match=r"not a Hugging Face tokenizer\.json"):
        TokenCounter('{"version": "1.0", "model": 3}', name="bad")


@pytest.mark.realtime  # a process
def test_without_the_tokens_extra_a_tokenizer_is_exit_2_naming_it(tmp_path: Path) -> None:
    """tokenizers is the `tokens` extra: a run given a tokenizer where it is not installed is
    refused before anything connects, saying what to install."""
    no_tokenizers = env_without("tokenizers", tmp_path)
    tok = tmp_path / "tokenizer.json"
    tok.write_text(word_tokenizer(), encoding="utf-8")
    sc = tmp_path / "sc.yaml"
    sc.write_text("target: {url: 'ws://127.0.0.1:9/v2/chat', api_key_env: NOPE}\n"
                  "load: {duration: 1s, warmup: 0s}\n", encoding="utf-8")
    r = run_cli("run", str(sc), "--tokenizer", str(tok), "--api-key", "k", "--out", str(tmp_path / "out"),
                env=no_tokenizers)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"tokenizer {tok}: counting tokens needs the tokenizers package" in r.stderr
    assert "pip install 'loadtest[tokens]'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out" / "summary.json").exists()
    # without a tokenizer the same install runs (the import is the tokenizer's, not the run's)
    ok = run_cli("validate", str(ROOT / "scenarios" / "smoke.yaml"), env=no_tokenizers)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.realtime  # a process
@pytest.mark.parametrize("content", [None, "{not json", '{"model": {"type": "Nope"}}'])
def test_a_missing_or_broken_tokenizer_is_exit_2_before_anything_connects(tmp_path: Path, content: str | None) -> None:
    tok = tmp_path / "tokenizer.json"
    if content is not None:
        tok.write_text(content, encoding="utf-8")
    sc = tmp_path / "sc.yaml"
    # an unreachable target: had anything connected first, the exit would be 3
    sc.write_text("target: {url: 'ws://127.0.0.1:9/v2/chat', api_key_env: NOPE}\n"
                  "load: {duration: 1s, warmup: 0s}\n", encoding="utf-8")
    r = run_cli("run", str(sc), "--tokenizer", str(tok), "--api-key", "k", "--out", str(tmp_path / "out"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "tokenizer" in r.stderr and str(tok) in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out" / "summary.json").exists()
