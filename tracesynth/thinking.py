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
* no delimiter at all (QwQ-32B-Preview) — ``(None, text)``: the caller decides whether the whole
  reply is the trace (:data:`UNDELIMITED`).

:data:`THINK` is what tracesynth writes into training text and what students are trained and
evaluated with. This module works on strings; it does no I/O.
"""

from __future__ import annotations

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


ALL_MARKERS = (THINK.start, THINK.end, THOUGHT.start, THOUGHT.end, SOLUTION.start, SOLUTION.end)

__all__ = [
    "ALL_MARKERS",
    "SOLUTION",
    "THINK",
    "THOUGHT",
    "UNDELIMITED",
    "Delimiters",
    "answer_region",
    "split_reasoning_text",
    "split_sky_t1",
    "split_think",
]
