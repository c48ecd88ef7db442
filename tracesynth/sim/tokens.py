"""The simulator's tokenizer: simple, deterministic, documented, so its token counts are honest.

A token is one digit, one run of letters (``[^\\W\\d_]+``), or one other non-space character;
whitespace is free. ``"12+345=357"`` is 10 tokens; ``"Add the columns."`` is 4.
Chat prompts count the tokens of every message's text plus 4 per message and 3 for the reply
priming (the usual chat-template overhead). This is not any real model's tokenizer.
"""

from __future__ import annotations

import re
from typing import Any

TOKEN_RE = re.compile(r"\d|[^\W\d_]+|[^\s]")
# ASCII fast path (10x faster than the regex): tokens = non-space chars - letters + runs of letters
_LETTERS = bytes(97 if (65 <= b <= 90 or 97 <= b <= 122) else 32 for b in range(256))
_SPACES = bytes(32 if (9 <= b <= 13 or 28 <= b <= 32) else 120 for b in range(256))


def count_tokens(text: str) -> int:
    """Number of tokens in ``text``."""
    if not text:
        return 0
    if not text.isascii():
        return len(TOKEN_RE.findall(text))
    raw = text.encode("ascii")
    letters = raw.translate(_LETTERS)
    return len(raw) - raw.translate(_SPACES).count(32) - letters.count(97) + len(letters.split())


def cut_after_tokens(text: str, n: int) -> str:
    """The prefix of ``text`` that holds exactly its first ``n`` tokens (all of it if shorter)."""
    if n <= 0:
        return ""
    end = 0
    for i, m in enumerate(TOKEN_RE.finditer(text), 1):
        end = m.end()
        if i == n:
            return text[:end]
    return text


def message_text(content: Any) -> str:
    """The text of a chat message's content (a string or a list of content parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return str(content)


def count_chat_prompt(messages: list[dict[str, Any]]) -> int:
    """Prompt tokens of a chat request (see module docstring)."""
    return 3 + sum(4 + count_tokens(message_text(m.get("content"))) for m in messages if isinstance(m, dict))
