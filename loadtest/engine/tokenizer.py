"""Reading ``target.tokenizer``: the local tokenizer.json file, checked before anything connects.

Only the file is read; nothing is ever downloaded (the ``tokenizers`` library is handed the
file's text). The text crosses to every worker (a process, a Ray actor on another host), which
builds its own :class:`~loadtest.metrics.tokens.TokenCounter` from it.
"""

from __future__ import annotations

from pathlib import Path

from loadtest.errors import BadInput
from loadtest.metrics.tokens import TokenCounter

__all__ = ["read_tokenizer"]

#: a tokenizer.json is a few MB; a file far larger is not one (and would be copied to every worker)
_MAX_BYTES = 256 * 1024 * 1024


def read_tokenizer(path: str) -> str:
    """The text of the tokenizer.json at ``path``, loaded once to check it; BadInput (exit 2)
    naming the file when it is missing, unreadable or not a tokenizer."""
    p = Path(path)
    try:
        if p.stat().st_size > _MAX_BYTES:
            raise BadInput(f"tokenizer {path}: larger than {_MAX_BYTES // 2**20} MB; not a tokenizer.json")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"tokenizer {path}: no such file (target.tokenizer or --tokenizer)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"tokenizer {path}: cannot read ({exc})") from None
    try:
        TokenCounter(text, name=path)
    except ValueError as exc:
        raise BadInput(f"tokenizer {path}: {exc}") from None
    return text
