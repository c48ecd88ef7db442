"""How reasoning is delimited in text: the one home of the thinking delimiters and of splitting a reply.

Teachers mark their chain of thought in different ways; :func:`split_reasoning_text` takes all of them:

* ``<think>…</think>`` at the start of the text — raw R1 / QwQ served without a reasoning parser;
  an unclosed ``<think>`` (output cut by max_tokens) is all reasoning and no answer (flag
  ``unclosed_think``); an empty block gives ``""`` and the flag ``empty_think``;
* only a closing ``</think>`` — R1-distill models whose chat template opens the tag in the prompt
  (flag ``closing_think_only``);
* Sky-T1's blocks ``<|begin_of_thought|>…<|end_of_thought|>`` then
  ``<|begin_of_solution|>…<|end_of_solution|>`` — the thought is the reasoning, the solution
  the answer (flag ``sky_t1_blocks``);
* no delimiter at all (QwQ-32B-Preview) — ``(None, text)``: the parser keeps the reply as sent, and
  the stages that need its parts (the answer verifiers, the ``format`` verifier, the export) call
  :func:`reply_parts`: the whole reply is the trace, its final answer is the part at its end that
  holds the last final-answer mark (:func:`split_undelimited`, flag :data:`UNDELIMITED`).

:data:`THINK` is what tracesynth writes into training text and what students are trained and
evaluated with. This module works on strings; it does no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Delimiters:
    start: str
    end: str

    def wrap(self, reasoning: str, answer: str) -> str:
        """The training text of a reasoning trace followed by its answer."""
        return f"{self.start}\n{reasoning}\n{self.end}\n\n{answer}"

    def as_list(self) -> list[str]:
        return [self.start, self.end]


THINK = Delimiters("<think>", "</think>")
THOUGHT = Delimiters("<|begin_of_thought|>", "<|end_of_thought|>")  # Sky-T1 / Bespoke-Stratos format
SOLUTION = Delimiters("<|begin_of_solution|>", "<|end_of_solution|>")
UNDELIMITED = "undelimited"  # flag: the reply had no delimiter; the whole text is the trace


def split_think(text: str, delimiters: Delimiters = THINK) -> tuple[str | None, str, list[str]]:
    """Split a think block out of ``text`` → (reasoning or None, answer, flags)."""
    start, end = delimiters.start, delimiters.end
    stripped = text.lstrip()
    if stripped.startswith(start):
        body = stripped[len(start) :]
        at = body.find(end)
        if at < 0:  # cut before the tag closed: all reasoning, no answer
            return body.strip(), "", ["unclosed_think"]
        reasoning, answer = body[:at].strip(), body[at + len(end) :].strip()
        return reasoning, answer, ([] if reasoning else ["empty_think"])
    at = text.find(end)
    if at >= 0 and start not in text[:at]:  # R1-distill: the template opened the tag in the prompt
        reasoning, answer = text[:at].strip(), text[at + len(end) :].strip()
        return reasoning, answer, (["closing_think_only"] + ([] if reasoning else ["empty_think"]))
    first = text.find(start)
    if first >= 0:  # a preamble before the block: keep it with the answer
        inner, after, flags = split_think(text[first:], delimiters)
        return inner, (text[:first].strip() + ("\n\n" + after if after else "")).strip(), flags
    return None, text.strip(), []


def split_sky_t1(text: str) -> tuple[str | None, str, list[str]] | None:
    """Sky-T1 thought/solution blocks → (reasoning, answer, flags), or None when there are none."""
    if THOUGHT.start not in text and THOUGHT.end not in text:
        return None
    reasoning, rest, flags = split_think(text, THOUGHT)
    if reasoning is None:
        return None
    answer = rest
    if SOLUTION.start in answer:
        answer = answer.split(SOLUTION.start, 1)[1]
        answer = answer.split(SOLUTION.end, 1)[0] if SOLUTION.end in answer else answer
    elif SOLUTION.end in answer:
        answer = answer.split(SOLUTION.end, 1)[0]
    flags = ["sky_t1_blocks", *(f for f in flags if f != "closing_think_only")]
    if SOLUTION.end not in rest and flags.count("unclosed_think") == 0 and SOLUTION.start in rest:
        flags.append("unclosed_solution")
    return reasoning, answer.strip(), flags


def split_reasoning_text(text: str) -> tuple[str | None, str, list[str]]:
    """Reasoning and answer of a reply that carries its reasoning inline (see the module docstring)."""
    sky = split_sky_t1(text)
    if sky is not None:
        return sky
    return split_think(text)


def answer_region(text: str) -> str:
    """The part of a text after its last end-of-thinking delimiter (where a final answer may stand)."""
    for d in (THINK, THOUGHT):
        if d.end in text:
            text = text.rsplit(d.end, 1)[1]
    return text


# what marks a final answer in a reply that does not delimit its thinking (the answer verifiers read the same)
_ANSWER_MARKS = re.compile(r"\\(?:boxed|fbox)\b|<answer>|final\s+(?:answer|solution)", re.IGNORECASE)
_FENCE_OPEN = re.compile(r"^[ \t]*```", re.MULTILINE)
_HEADING = re.compile(r"^[\W_]*final\s+(?:answer|solution)[\W_]*$", re.IGNORECASE)  # "**Final Answer**"
_CODE_THEN_MARK = 400  # characters: a final-answer mark this close after the last code block belongs to it


def _last_fence_start(text: str) -> int:
    """Where the last fenced code block opens (-1: none): fences pair up, so the last opening one is
    the second-to-last fence when their count is even."""
    fences = [m.start() for m in _FENCE_OPEN.finditer(text)]
    if len(fences) < 2:
        return -1
    return fences[-2] if len(fences) % 2 == 0 else fences[-1]


def split_undelimited(text: str) -> tuple[str, str] | None:
    """(reasoning, final answer) of a reply with no delimiter, or None when nothing in it marks a final answer.

    The final answer is the paragraph holding the last final-answer mark — a ``\\boxed{}``, "final
    answer", an ``<answer>`` tag, or the opening fence of the last code block (with a mark just after
    that block, the block) — to the end of the reply, with a "Final Answer" heading just above it.
    Everything before is the reasoning (``""`` when the reply is its final answer alone).
    """
    marks = [m.start() for m in _ANSWER_MARKS.finditer(text)]
    mark = marks[-1] if marks else -1
    fence = _last_fence_start(text)
    if fence >= 0:
        fence_end = text.rfind("```")
        if mark < 0 or mark < fence or mark - fence_end <= _CODE_THEN_MARK:
            mark = fence
    if mark < 0:
        return None
    cut = text.rfind("\n\n", 0, mark)
    start = 0 if cut < 0 else cut + 2
    if start > 0:  # a heading paragraph just above the answer goes with it
        prev_cut = text.rfind("\n\n", 0, start - 2)
        prev = text[(0 if prev_cut < 0 else prev_cut + 2) : start - 2]
        if _HEADING.match(prev.strip()):
            start = 0 if prev_cut < 0 else prev_cut + 2
    return text[:start].strip(), text[start:].strip()


def reply_parts(reasoning: str | None, content: str | None) -> tuple[str, str, bool]:
    """(reasoning, answer, undelimited) of a stored reply. ``reasoning`` None means the teacher did not
    separate its thinking: the reply is split by :func:`split_undelimited`; with no final answer in it,
    the reply stays all answer (``("", reply, True)``) so nothing is dropped from it."""
    if reasoning is not None:
        return reasoning, content or "", False
    text = content or ""
    parts = split_undelimited(text)
    if parts is None:
        return "", text.strip(), True
    return parts[0], parts[1], True


ALL_MARKERS = (THINK.start, THINK.end, THOUGHT.start, THOUGHT.end, SOLUTION.start, SOLUTION.end)

__all__ = [
    "ALL_MARKERS",
    "SOLUTION",
    "THINK",
    "THOUGHT",
    "UNDELIMITED",
    "Delimiters",
    "answer_region",
    "reply_parts",
    "split_reasoning_text",
    "split_sky_t1",
    "split_think",
    "split_undelimited",
]
