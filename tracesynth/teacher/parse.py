"""Normalise OpenAI-compatible response bodies: reasoning vs answer, finish reason, usage.

Servers put the chain of thought in different places; :func:`normalise_message` accepts all of them:

* ``message.reasoning_content`` — DeepSeek API, vLLM's reasoning parser (before ``reasoning``),
  SGLang ``--reasoning-parser``, llama.cpp ``--reasoning-format deepseek``;
* ``message.reasoning`` — newer vLLM, OpenRouter, Ollama's OpenAI-compatible API;
  ``message.reasoning_details[].text`` (OpenRouter) and ``message.thinking`` (Ollama native) as fallbacks;
* delimiters inline in ``content`` — ``<think>…</think>``, R1-distill's lone ``</think>``, Sky-T1's
  ``<|begin_of_thought|>`` blocks — split by :func:`tracesynth.thinking.split_reasoning_text`;
* no delimiter at all (QwQ-32B-Preview): ``reasoning`` is None and ``content`` the whole reply.

SDK objects (``ChatCompletionMessage``, where ``reasoning_content`` is an *extra* field in
``model_extra``) are accepted as well as dicts. ``usage`` is parsed as reported, or None when it is
missing or not a usage object; whether to trust it is the ledger's business
(:func:`tracesynth.accounting.tokens.trusted_usage`).

This module parses bodies; it does no I/O and raises :class:`MalformedResponse` for bodies that are
not a usable chat/completion response (a field of the wrong type included; retried by the client).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tracesynth.records import Usage
from tracesynth.thinking import split_reasoning_text


class MalformedResponse(ValueError):
    """A 200 response whose body is not a usable completion (bad JSON, no choices, wrong shape)."""

    def __init__(self, message: str, kind: str = "malformed") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(slots=True)
class Choice:
    """One normalised choice: reasoning and answer separated, finish reason, quirk flags."""

    index: int
    reasoning: str | None
    content: str
    finish_reason: str | None
    flags: list[str] = field(default_factory=list)
    token_ids: list[int] | None = None  # the generated token ids, when the server returns them (vLLM)


def _text(value: Any) -> str | None:
    """A string field, or the joined text of a list of content parts."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [p.get("text") or "" if isinstance(p, dict) else str(p) for p in value]
        return "".join(parts)
    return str(value)


def _as_dict(message: Any) -> dict[str, Any]:
    if isinstance(message, dict):
        return message
    if hasattr(message, "model_dump"):  # openai SDK object: extras (reasoning_content) are kept
        return message.model_dump()
    raise MalformedResponse(f"message is a {type(message).__name__}, not an object")


def _field_reasoning(msg: dict[str, Any]) -> str | None:
    for key in ("reasoning_content", "reasoning", "thinking"):
        value = _text(msg.get(key))
        if value and value.strip():
            return value
    details = msg.get("reasoning_details")
    if isinstance(details, list):
        joined = "".join(d.get("text") or "" for d in details if isinstance(d, dict))
        if joined:
            return joined
    return None


def normalise_message(message: Any, finish_reason: str | None = None, index: int = 0) -> Choice:
    """A chat ``message`` (dict or SDK object) → :class:`Choice`."""
    msg = _as_dict(message)
    content = _text(msg.get("content")) or ""
    reasoning = _field_reasoning(msg)
    flags: list[str] = []
    if reasoning is None:
        reasoning, content, flags = split_reasoning_text(content)
        if reasoning is None and any(isinstance(msg.get(k), str) for k in ("reasoning_content", "reasoning")):
            reasoning, flags = "", ["empty_think"]  # a reasoning parser ran and the model did not think
    else:
        reasoning = reasoning.strip()
        content = content.strip()
    return Choice(index=index, reasoning=reasoning, content=content, finish_reason=finish_reason, flags=flags)


def split_reasoning(message: Any) -> tuple[str | None, str]:
    """``(reasoning, content)`` of a chat message — the agreed cross-module helper."""
    c = normalise_message(message)
    return c.reasoning, c.content


def _count(value: Any) -> int | None:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return int(value)


def parse_usage(usage: Any) -> Usage | None:
    """The ``usage`` object of a response → :class:`Usage`, or None when missing or not numbers."""
    if not isinstance(usage, dict):
        return None
    details = usage.get("completion_tokens_details") or {}
    prompt_details = usage.get("prompt_tokens_details") or {}
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    if reasoning is None:
        reasoning = usage.get("reasoning_tokens")
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else None
    if cached is None:
        cached = usage.get("prompt_cache_hit_tokens")  # DeepSeek API
    counts = [
        _count(usage.get("prompt_tokens")),
        _count(usage.get("completion_tokens")),
        _count(reasoning),
        _count(cached),
    ]
    if any(c is None for c in counts) or ("prompt_tokens" not in usage and "completion_tokens" not in usage):
        return None
    p, c, r, k = (int(x or 0) for x in counts)
    return Usage(prompt_tokens=p, completion_tokens=c, reasoning_tokens=r, cached_tokens=k)


def _finish(ch: dict[str, Any], pos: int) -> str | None:
    value = ch.get("finish_reason")
    if value is not None and not isinstance(value, str):
        raise MalformedResponse(f"choice {pos}: finish_reason is a {type(value).__name__}, not a string")
    return value


def parse_chat(body: dict[str, Any]) -> tuple[list[Choice], Usage | None, str | None]:
    """A /chat/completions body → (choices, usage, model). Raises :class:`MalformedResponse`."""
    if not isinstance(body, dict):
        raise MalformedResponse(f"body is a JSON {type(body).__name__}, not an object")
    if "error" in body and not body.get("choices"):
        err = body["error"]
        msg = err.get("message") if isinstance(err, dict) else err
        raise MalformedResponse(f"200 with an error body: {str(msg)[:200]}", kind="error_body")
    raw = body.get("choices")
    if not isinstance(raw, list) or not raw:
        raise MalformedResponse("response has no choices", kind="empty_choices")
    choices = []
    for pos, ch in enumerate(raw):
        if not isinstance(ch, dict) or not isinstance(ch.get("message"), dict):
            raise MalformedResponse(f"choice {pos} has no message object")
        content = ch["message"].get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise MalformedResponse(f"choice {pos}: message.content is a {type(content).__name__}, not text")
        idx = ch.get("index")
        choices.append(normalise_message(ch["message"], _finish(ch, pos), idx if isinstance(idx, int) else pos))
    choices.sort(key=lambda c: c.index)
    model = body.get("model")
    return choices, parse_usage(body.get("usage")), model if isinstance(model, str) else None


def parse_completion(body: dict[str, Any]) -> tuple[list[Choice], Usage | None, str | None]:
    """A /completions body → (choices with the text as ``content``, usage, model)."""
    if not isinstance(body, dict):
        raise MalformedResponse(f"body is a JSON {type(body).__name__}, not an object")
    raw = body.get("choices")
    if not isinstance(raw, list) or not raw:
        raise MalformedResponse("response has no choices", kind="empty_choices")
    choices = []
    for pos, ch in enumerate(raw):
        if not isinstance(ch, dict) or not isinstance(ch.get("text"), str):
            raise MalformedResponse(f"choice {pos} has no text")
        idx = ch.get("index")
        ids = ch.get("token_ids")
        token_ids = ids if isinstance(ids, list) and all(isinstance(x, int) for x in ids) else None
        choices.append(Choice(idx if isinstance(idx, int) else pos, None, ch["text"], _finish(ch, pos), [], token_ids))
    choices.sort(key=lambda c: c.index)
    model = body.get("model")
    return choices, parse_usage(body.get("usage")), model if isinstance(model, str) else None
