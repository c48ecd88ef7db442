"""Token counts: the one taxonomy every reader uses, the estimate from text, and when a server's usage is not trusted.

* :class:`TokenCounts` — ``prompt`` (of which ``cached``), ``reasoning`` and ``answer``; a sample's
  completion is reasoning + answer. The ledger, the spend scanner, the receipt, the card and the
  report all count in these four.
* :data:`CHARS_PER_TOKEN` — the characters-per-token rate of every estimate (prompt sizes for the
  budget's worst case, ``tracesynth cost``, curation lengths without a tokenizer, usage a server did
  not report). BPE tokenizers average about 4 characters a token on English prose and nearer 3 on
  maths and code; 3.5 errs toward more tokens, which is the safe side for a cap.
* :func:`trusted_usage` — a server's ``usage`` is taken as it is only when it is present, whole,
  non-negative and plausible (completion tokens at most ``max_tokens`` per choice, with a small
  slack for servers that count the stop token). Otherwise the counts are estimated from the text
  (the prompt from the messages; the completion from the reply's text, or ``max_tokens`` when there
  is no text) and the sample is flagged ``usage_estimated``.

This module computes numbers; it reads and writes nothing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from tracesynth.records import Usage

CHARS_PER_TOKEN = 3.5
DEFAULT_WORST_OUTPUT_TOKENS = 32_768  # worst case assumed per choice when max_tokens is not set
PROMPT_MARGIN = 1.5  # the worst case takes the prompt estimate times this (tokenizers differ)
_COMPLETION_SLACK = 16  # tokens a server may count beyond max_tokens (stop token, special tokens)
USAGE_ESTIMATED = "usage_estimated"  # the flag on a sample whose usage is tracesynth's estimate


def text_tokens(text: str | None) -> int:
    """Estimated tokens of a text (at least 1 for a non-empty one)."""
    if not text:
        return 0
    return int(len(text) / CHARS_PER_TOKEN) + 1


def prompt_tokens(messages_or_prompt: Any) -> int:
    """Estimated prompt tokens of a raw prompt or chat messages (+ 4 per message for the chat markup)."""
    if isinstance(messages_or_prompt, str):
        return text_tokens(messages_or_prompt)
    total = 0
    for m in messages_or_prompt:
        c = m.get("content")
        total += 4 + text_tokens(c if isinstance(c, str) else json.dumps(c))
    return total + 2


@dataclass
class TokenCounts:
    """Tokens by kind: prompt (cached is part of it), reasoning and answer (together the completion)."""

    prompt: int = 0
    cached: int = 0
    reasoning: int = 0
    answer: int = 0

    @property
    def completion(self) -> int:
        return self.reasoning + self.answer

    def add(self, usage: Usage) -> None:
        reasoning = min(max(usage.reasoning_tokens, 0), max(usage.completion_tokens, 0))
        self.prompt += max(usage.prompt_tokens, 0)
        self.cached += min(max(usage.cached_tokens, 0), max(usage.prompt_tokens, 0))
        self.reasoning += reasoning
        self.answer += max(usage.completion_tokens, 0) - reasoning

    def add_dict(self, usage: dict[str, Any]) -> None:
        """Add a ``usage`` object as stored in a row (missing fields are 0)."""
        self.add(Usage(**{k: int(usage.get(k) or 0) for k in Usage.model_fields if k in usage}))

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "completion": self.completion}


def trusted_usage(
    reported: Usage | None, *, text: str, prompt_estimate: int, max_tokens: int | None, choices: int = 1
) -> tuple[Usage, str | None]:
    """``(usage to charge, why it was estimated or None)`` for one reply (see the module docstring)."""
    why = _distrust(reported, prompt_estimate, max_tokens, choices)
    if why is None:
        assert reported is not None
        return reported, None
    completion = text_tokens(text) if text else (max_tokens or DEFAULT_WORST_OUTPUT_TOKENS) * choices
    if max_tokens:
        completion = min(completion, max_tokens * choices)
    return Usage(prompt_tokens=prompt_estimate, completion_tokens=completion), why


def _distrust(u: Usage | None, prompt_estimate: int, max_tokens: int | None, choices: int) -> str | None:
    if u is None:
        return "missing"
    fields = (u.prompt_tokens, u.completion_tokens, u.reasoning_tokens, u.cached_tokens)
    if any(v < 0 for v in fields):
        return "negative"
    if u.prompt_tokens == 0 and u.completion_tokens == 0:
        return "zero"
    if max_tokens and u.completion_tokens > max_tokens * choices + _COMPLETION_SLACK * choices:
        return f"completion_tokens {u.completion_tokens} > max_tokens {max_tokens}"
    if u.prompt_tokens > 20 * prompt_estimate + 4096:
        return f"prompt_tokens {u.prompt_tokens} for a prompt of about {prompt_estimate}"
    return None


__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_WORST_OUTPUT_TOKENS",
    "PROMPT_MARGIN",
    "USAGE_ESTIMATED",
    "TokenCounts",
    "prompt_tokens",
    "text_tokens",
    "trusted_usage",
]
