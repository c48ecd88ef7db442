"""The ``judge`` verifier: ask a (cheap) model whether the final answer matches the reference.

This is the s1 / Bespoke-Stratos fallback for answers rule-based parsing cannot decide. It
calls the model through :class:`tracesynth.teacher.client.TeacherClient` (same transport, retries
and secret handling as harvesting) with the prompt ``prompts/judge.txt`` (fields: ``question``,
``answer`` = the reference, ``metadata.response`` = the sample's final answer: its last
``\\boxed{}``, else the last ``max_answer_chars`` characters of the answer part).

The reply's last ``CORRECT`` / ``INCORRECT`` decides pass / fail; a reply with neither, or an
endpoint error, is ``unverifiable`` / ``judge_error`` with the reason kept.

Options (``verify.options.judge``; the verify stage fills the endpoint from ``teacher:`` when
unset): ``base_urls`` (or ``base_url``), ``model``, ``api_key_env``, ``http`` (``aiohttp`` |
``openai``), ``request_timeout_s`` (120), ``max_attempts`` (3), ``max_tokens`` (2048),
``temperature`` (0), ``prompt`` (template name or path, default ``judge``),
``max_answer_chars`` (2000). When it runs as a fallback (``when``, ``fallback_for``) is decided
by :func:`tracesynth.stages.verify.registry.score`.

The call is synchronous (``asyncio.run``), so this verifier cannot be used from inside a running
event loop; the verify stage runs it in worker processes.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

from tracesynth.config import PromptConfig
from tracesynth.errors import TracesynthError
from tracesynth.records import Problem, Sample
from tracesynth.stages.verify.verifiers.answer import answer_text, boxed
from tracesynth.stages.verify.verifiers.base import Outcome, failed, passed, unverifiable

_DECISION = re.compile(r"\b(INCORRECT|CORRECT)\b", re.IGNORECASE)


def judge_messages(problem: Problem, response: str, template: str = "judge") -> list[dict[str, Any]]:
    from tracesynth.sources.prompts import render_messages

    question = problem.prompt
    if question is None and problem.messages:
        users = [m.get("content") for m in problem.messages if m.get("role") == "user"]
        question = str(users[-1]) if users else ""
    ask = Problem(id=problem.id, prompt=question or "", answer=problem.answer or "", metadata={"response": response})
    return render_messages(ask, PromptConfig(template=template, system=None))


def final_answer(sample: Sample, max_chars: int = 2000) -> str:
    text = answer_text(sample)
    boxes = boxed(text)
    if boxes:
        return boxes[-1]
    return text.strip()[-max_chars:]


async def _ask(messages: list[dict[str, Any]], options: dict[str, Any]) -> str:
    from tracesynth.teacher.client import TeacherClient

    urls = options.get("base_urls") or options.get("base_url")
    if not urls:
        raise ValueError("judge: no endpoint (options base_url / base_urls, or the teacher's)")
    key_env = options.get("api_key_env")
    key = os.environ.get(key_env) if key_env else None
    async with TeacherClient(
        urls,
        model=options["model"],
        api_key=key or None,
        api_key_env=key_env,
        timeout_s=float(options.get("request_timeout_s", 120)),
        concurrency=1,
        max_attempts=int(options.get("max_attempts", 3)),
        http=options.get("http", "aiohttp"),
    ) as client:
        result = await client.chat(
            messages,
            temperature=float(options.get("temperature", 0.0)),
            max_tokens=int(options.get("max_tokens", 2048)),
        )
    return result.choices[0].content or ""


def verify_judge(problem: Problem, sample: Sample, options: dict[str, Any]) -> Outcome:
    if not (options.get("base_urls") or options.get("base_url")) or not options.get("model"):
        return unverifiable("judge_error", "judge is not configured: set verify.options.judge.base_url and model")
    if problem.answer is None or not str(problem.answer).strip():
        return unverifiable("no_reference", "the problem has no reference answer")
    response = final_answer(sample, int(options.get("max_answer_chars", 2000)))
    if not response:
        return failed("no_answer", "empty answer")
    messages = judge_messages(problem, response, options.get("prompt", "judge"))
    try:
        reply = asyncio.run(_ask(messages, options))
    except TracesynthError as exc:
        return unverifiable("judge_error", f"judge call failed: {type(exc).__name__}: {exc}"[:500], response[:500])
    found = _DECISION.findall(reply)
    details = {"model": options["model"], "reply": reply.strip()[-200:]}
    if not found:
        return unverifiable(
            "judge_error", f"judge reply has no CORRECT/INCORRECT: {reply.strip()[-120:]!r}", response[:500], **details
        )
    if found[-1].upper() == "CORRECT":
        return passed(response[:500], **details)
    return failed("mismatch", "the judge found the answer incorrect", response[:500], **details)


__all__ = ["final_answer", "judge_messages", "verify_judge"]
