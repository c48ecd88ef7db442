"""The ``format`` verifier: is the sample a well-formed reasoning trace?

Checks, each with its tag (the first failing check gives the verdict's tag; the reason lists
every failing check):

* ``truncated``: ``finish_reason == "length"`` (never a pass; option ``allow_truncated``);
* ``no_reasoning``: the reasoning is missing or only whitespace — including an empty
  ``<think>\\n\\n</think>`` (option ``require_reasoning``, default true);
* a teacher that does not separate its thinking (no reasoning field, no delimiter: QwQ-32B-Preview)
  is judged on what a recipe needs of it — its whole reply is the trace, and it must end in a final
  answer (:func:`tracesynth.thinking.reply_parts`): ``no_final_answer`` when nothing at its end
  marks one, ``no_reasoning`` when the reply is its final answer alone (option ``undelimited``,
  default true; false fails every such reply with tag ``undelimited``);
* ``unclosed_think``: think tags left in the answer or the reasoning (``<think>`` without its
  ``</think>``, or a stray tag) (option ``require_closed_think``, default true);
* ``chat_markup``: the reasoning or the answer holds a special token of a chat template
  (``<|im_end|>``, ``<|im_start|>``, ... — :mod:`tracesynth.markup`, plus option ``markup``: the
  student tokenizer's own special tokens, filled in by the verify stage); it would become real special
  tokens in training (option ``forbid_markup``, default true);
* ``too_short`` / ``too_long``: ``min_reasoning_tokens``, ``max_reasoning_tokens``,
  ``min_answer_tokens``, ``max_answer_tokens`` (unset by default). Token counts come from the
  endpoint's usage (reasoning tokens; completion minus reasoning for the answer) when it
  reported them, else one token per four characters; ``details.token_source`` says which;
* ``script``: option ``scripts`` (e.g. ``[latin]``) — the share of letters of the answer (and of
  the reasoning, with ``script_fields: [content, reasoning]``) written in those Unicode scripts
  must be at least ``min_script_share`` (0.95). Catches language mixing (R1-Zero's known
  failure). Digits, punctuation and math symbols are not letters and do not count; Greek and
  mathematical alphanumeric letters count as Latin (in practice they are math symbols).

A sample passing every check is ``pass``; this verifier never returns ``unverifiable``.
"""

from __future__ import annotations

import math
import unicodedata
from typing import Any

from tracesynth.accounting.tokens import CHARS_PER_TOKEN
from tracesynth.markup import find_markup
from tracesynth.records import Problem, Sample
from tracesynth.stages.verify.verifiers.base import Outcome, failed, passed
from tracesynth.thinking import THINK, reply_parts, split_undelimited


def _script(ch: str) -> str:
    """The Unicode script of a letter, from its name (LATIN, CYRILLIC, CJK, HIRAGANA, ...)."""
    name = unicodedata.name(ch, "")
    first = name.split(" ", 1)[0]
    if first in ("CJK", "HIRAGANA", "KATAKANA", "HANGUL"):
        return "cjk" if first == "CJK" else first.lower()
    return first.lower() or "unknown"


def script_share(text: str, scripts: set[str]) -> tuple[float, int]:
    """(share of letters in ``scripts``, number of letters). Math italic letters count as Latin."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 1.0, 0
    ok = 0
    for c in letters:
        s = _script(c)
        if s in scripts or (s == "mathematical" and "latin" in scripts) or (s == "greek" and "latin" in scripts):
            ok += 1
    return ok / len(letters), len(letters)


def _tokens(sample: Sample, reasoning: str, content: str) -> tuple[int, int, str]:
    u = sample.usage
    if u.completion_tokens and u.reasoning_tokens:
        return u.reasoning_tokens, max(0, u.completion_tokens - u.reasoning_tokens), "usage"
    if u.completion_tokens and not reasoning.strip():
        return 0, u.completion_tokens, "usage"
    est = (math.ceil(len(reasoning) / CHARS_PER_TOKEN), math.ceil(len(content) / CHARS_PER_TOKEN))
    return est[0], est[1], f"estimate ({CHARS_PER_TOKEN:g} characters a token)"


def verify_format(problem: Problem, sample: Sample, options: dict[str, Any]) -> Outcome:
    problems: list[tuple[str, str]] = []
    reasoning, content, undelimited = reply_parts(sample.reasoning, sample.content)
    if sample.finish_reason == "length" and not options.get("allow_truncated", False):
        problems.append(("truncated", "finish_reason is 'length'"))
    if undelimited and not options.get("undelimited", True):
        problems.append(("undelimited", "the reply has no reasoning field and no thinking delimiter"))
    elif undelimited and split_undelimited(sample.content or "") is None:
        problems.append(
            (
                "no_final_answer",
                "the reply does not separate its reasoning and nothing at its end marks a final answer "
                "(a \\boxed{}, 'final answer', an <answer> tag or a code block)",
            )
        )
    start, end = THINK.start, THINK.end
    stripped = reasoning.replace(start, "").replace(end, "").strip()
    if options.get("require_reasoning", True) and not stripped and not any(t == "no_final_answer" for t, _ in problems):
        problems.append(("no_reasoning", "reasoning is empty"))
    if options.get("require_closed_think", True):
        if content.count(start) != content.count(end) or start in reasoning or end in reasoning:
            problems.append(("unclosed_think", "think tags left unbalanced in the answer or reasoning"))
    if options.get("forbid_markup", True):
        extra = tuple(options.get("markup") or ())
        hit = find_markup(reasoning, extra) or find_markup(content, extra)
        if hit:
            problems.append(
                (
                    "chat_markup",
                    f"the text holds chat-template markup {hit!r}: it would become a special token in training",
                )
            )
    r_tok, a_tok, source = _tokens(sample, reasoning, content)
    bounds = (
        ("min_reasoning_tokens", r_tok, "too_short", "reasoning"),
        ("max_reasoning_tokens", r_tok, "too_long", "reasoning"),
        ("min_answer_tokens", a_tok, "too_short", "answer"),
        ("max_answer_tokens", a_tok, "too_long", "answer"),
    )
    for key, value, tag, what in bounds:
        limit = options.get(key)
        if limit is None:
            continue
        if (key.startswith("min") and value < limit) or (key.startswith("max") and value > limit):
            problems.append((tag, f"{what} has {value} tokens ({key.split('_')[0]} {limit})"))
    details: dict[str, Any] = {"reasoning_tokens": r_tok, "answer_tokens": a_tok, "token_source": source}
    if undelimited:
        details["undelimited"] = True
    scripts = options.get("scripts")
    if scripts:
        allowed = {str(s).lower() for s in scripts}
        floor = float(options.get("min_script_share", 0.95))
        for fld in options.get("script_fields", ["content"]):
            share, n = script_share(content if fld == "content" else reasoning, allowed)
            details[f"{fld}_script_share"] = round(share, 4)
            if n and share < floor:
                problems.append(("script", f"{fld}: {share:.0%} of letters in {sorted(allowed)} (min {floor:.0%})"))
    if not problems:
        return passed(None, **details)
    return failed(problems[0][0], "; ".join(msg for _, msg in problems), None, **details)


__all__ = ["script_share", "verify_format"]
