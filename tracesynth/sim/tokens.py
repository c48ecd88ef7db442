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


def count_tokens(text: str) -> int:
    """Number of tokens in ``text``."""
    return len(TOKEN_RE.findall(text)) if text else 0


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
