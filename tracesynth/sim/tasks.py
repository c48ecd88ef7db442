"""What the simulated teacher answers to the model passes' prompts (tracesynth.stages.ask): rewrite and classify.

* A rewrite prompt (SkyThought's convert prompt, recognised by :data:`REWRITE_MARK`) gets the trace
  after "Content to be converted:" back in Sky-T1's blocks: its reasoning in
  ``<|begin_of_thought|>…<|end_of_thought|>``, its final answer in
  ``<|begin_of_solution|>…<|end_of_solution|>``. One trace in five (:func:`planted_change`, a hash
  of the trace, so tests know which) comes back with its last ``\\boxed{}`` answer changed — the
  failure a real rewriting model has and the pass must refuse.
* A classify prompt (s1's, recognised by :data:`CLASSIFY_MARK`) gets a short explanation ending on a
  two-digit MSC code: by keywords of the question, else one of a few codes by a hash of it (so a pool
  of look-alike arithmetic questions still spans several domains). A question containing
  :data:`NO_SUBJECT` gets a reply without a code (the unparseable case).

Everything else is the solver's (:func:`reply` returns None). Deterministic; no I/O.
"""

from __future__ import annotations

import hashlib
import re

from tracesynth.thinking import SOLUTION, THOUGHT, reply_parts, split_reasoning_text

REWRITE_MARK = "Your job is to convert them into two sections"
_CONTENT_MARK = "Content to be converted:"
CLASSIFY_MARK = "## Classification rubrics"
NO_SUBJECT = "(no subject)"
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
# (keywords, code, title): the MSC2020 classes a toy question most plausibly belongs to
_BY_KEYWORD = (
    (("triangle", "circle", "angle", "polygon"), "51", "Geometry"),
    (("probability", "dice", "coin", "random"), "60", "Probability theory and stochastic processes"),
    (("prime", "divisible", "remainder", "gcd", "digit"), "11", "Number theory"),
    (("how many ways", "arrange", "choose", "graph"), "05", "Combinatorics"),
    (("polynomial", "root", "equation"), "12", "Field theory and polynomials"),
)
_FALLBACK = (("11", "Number theory"), ("05", "Combinatorics"), ("97", "Mathematics education"))


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8", "replace")).digest()[:8], "big")


def planted_change(trace: str) -> bool:
    """Whether the simulator changes the answer when rewriting ``trace`` (one in five, by hash)."""
    return _hash(trace.strip()) % 5 == 0


def rewrite(trace: str) -> str:
    """``trace`` in Sky-T1's thought / solution blocks (with a planted answer change where :func:`planted_change`)."""
    reasoning, answer, _ = split_reasoning_text(trace)
    if reasoning is None:
        reasoning, answer, _ = reply_parts(None, trace)
    if planted_change(trace):
        boxes = list(_BOXED.finditer(answer))
        if boxes:
            last = boxes[-1]
            answer = f"{answer[: last.start()]}\\boxed{{{last.group(1)}1}}{answer[last.end() :]}"
        else:
            answer += "\n\nThe answer is \\boxed{0}."
    return (
        f"{THOUGHT.start}\n\n{reasoning.strip()}\n\n{THOUGHT.end}\n\n"
        f"{SOLUTION.start}\n\n{answer.strip()}\n\n{SOLUTION.end}"
    )


def classify(question: str) -> str:
    """A short explanation ending on a two-digit MSC code (none for a question holding :data:`NO_SUBJECT`)."""
    if NO_SUBJECT in question:
        return "This question does not fit any of the subjects."
    low = question.lower()
    for words, code, title in _BY_KEYWORD:
        if any(w in low for w in words):
            return f"The question is about {title.lower()}.\n{code}"
    code, title = _FALLBACK[_hash(question.strip()) % len(_FALLBACK)]
    return f"The question is closest to {title.lower()}.\n{code}"


def reply(text: str) -> str | None:
    """The reply to a pass prompt in the user message ``text``, or None when it is not one."""
    if REWRITE_MARK in text and _CONTENT_MARK in text:
        return rewrite(text.rsplit(_CONTENT_MARK, 1)[1])
    if CLASSIFY_MARK in text:
        question = text.split(CLASSIFY_MARK, 1)[0]
        question = question.split("## Question", 1)[-1]
        return classify(question.strip())
    return None


__all__ = ["CLASSIFY_MARK", "NO_SUBJECT", "REWRITE_MARK", "classify", "planted_change", "reply", "rewrite"]
