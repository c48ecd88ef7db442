"""Normalise OpenAI-compatible response bodies: reasoning vs answer, finish reason, usage.

Servers put the chain of thought in different places; :func:`normalise_message` accepts all of them:

* ``message.reasoning_content`` — DeepSeek API, vLLM's reasoning parser (before ``reasoning``),
  SGLang ``--reasoning-parser``, llama.cpp ``--reasoning-format deepseek``;
* ``message.reasoning`` — newer vLLM, OpenRouter, Ollama's OpenAI-compatible API;
  ``message.reasoning_details[].text`` (OpenRouter) and ``message.thinking`` (Ollama native) as fallbacks;
* inline ``<think>…</think>`` at the start of ``content`` — raw R1 / QwQ served without a parser;
  an unclosed ``<think>`` (output cut by max_tokens) is all reasoning and no answer;
* only a closing ``</think>`` — R1-distill models whose chat template opens the tag in the prompt.

An empty thinking block (``<think>\\n\\n</think>``) gives ``reasoning == ""`` and the flag
``empty_think`` so the format verifier can drop it. SDK objects (``ChatCompletionMessage``, where
``reasoning_content`` is an *extra* field in ``model_extra``) are accepted as well as dicts.

This module parses bodies; it does no I/O and raises :class:`MalformedResponse` for bodies that are
not a chat/completion response at all (retried by the client).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tracesynth.records import Usage

OPEN, CLOSE = "<think>", "</think>"


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


def split_think(text: str) -> tuple[str | None, str, list[str]]:
    """Split inline think tags out of ``text`` → (reasoning or None, answer, flags)."""
    stripped = text.lstrip()
    if stripped.startswith(OPEN):
        body = stripped[len(OPEN):]
        end = body.find(CLOSE)
        if end < 0:  # cut before the tag closed: all reasoning, no answer
            return body.strip(), "", ["unclosed_think"]
        reasoning, answer = body[:end].strip(), body[end + len(CLOSE):].strip()
        return reasoning, answer, ([] if reasoning else ["empty_think"])
    end = text.find(CLOSE)
    if end >= 0 and OPEN not in text[:end]:  # R1-distill: the template opened the tag in the prompt
        reasoning, answer = text[:end].strip(), text[end + len(CLOSE):].strip()
        return reasoning, answer, (["closing_think_only"] + ([] if reasoning else ["empty_think"]))
    start = text.find(OPEN)
    if start >= 0:  # a preamble before the block: keep it with the answer
        reasoning, after, flags = split_think(text[start:])
        return reasoning, (text[:start].strip() + ("\n\n" + after if after else "")).strip(), flags
    return None, text.strip(), []


def normalise_message(message: Any, finish_reason: str | None = None, index: int = 0) -> Choice:
    """A chat ``message`` (dict or SDK object) → :class:`Choice`."""
    msg = _as_dict(message)
    content = _text(msg.get("content")) or ""
    reasoning = _field_reasoning(msg)
    flags: list[str] = []
    if reasoning is None:
        reasoning, content, flags = split_think(content)
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


def parse_usage(usage: Any) -> Usage:
    """The ``usage`` object of a response → :class:`Usage` (reasoning and cached tokens included)."""
    if not isinstance(usage, dict):
        return Usage()
    details = usage.get("completion_tokens_details") or {}
    prompt_details = usage.get("prompt_tokens_details") or {}
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else None
    if cached is None:
        cached = usage.get("prompt_cache_hit_tokens")  # DeepSeek API
    return Usage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        reasoning_tokens=int(reasoning or usage.get("reasoning_tokens") or 0),
        cached_tokens=int(cached or 0),
    )


def parse_chat(body: dict[str, Any]) -> tuple[list[Choice], Usage, str | None]:
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
        idx = ch.get("index")
        choices.append(normalise_message(ch["message"], ch.get("finish_reason"), idx if isinstance(idx, int) else pos))
    choices.sort(key=lambda c: c.index)
    return choices, parse_usage(body.get("usage")), body.get("model")


def parse_completion(body: dict[str, Any]) -> tuple[list[Choice], Usage, str | None]:
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
        choices.append(Choice(idx if isinstance(idx, int) else pos, None, ch["text"], ch.get("finish_reason")))
    choices.sort(key=lambda c: c.index)
    return choices, parse_usage(body.get("usage")), body.get("model")
