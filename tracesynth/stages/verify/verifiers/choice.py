"""The ``choice`` verifier: multiple-choice letters or option text.

Gold is ``Problem.answer``: a letter in any usual dress ("B", "(B)", "\\text{(B)}") or the text
of one option, mapped to its letter through ``metadata.choices`` / ``metadata.options`` (a list,
lettered A, B, ... in order, or a mapping letter -> text).

The prediction comes from the final answer region only, first match wins: the last
``\\boxed{}``; the last "answer is X" / "Answer: X" / "final answer: X"; a last line that is just
an option ("**B**", "(B)", "B)", "B. text"). A candidate is read as a letter when it is one of the
allowed letters in any of these dresses, else as option text when it equals one (case and
spacing ignored). No letter found → ``fail`` / ``no_answer``; a letter outside the options →
``fail`` / ``mismatch``.

Options: ``letters`` (default: as many as there are choices, else A-J).
"""

from __future__ import annotations

import re
import string
from typing import Any

from tracesynth.records import Problem, Sample
from tracesynth.stages.verify.verifiers.answer import answer_text, boxed
from tracesynth.stages.verify.verifiers.base import Outcome, failed, passed, unverifiable

_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mathbf|textit|emph)\s*\{([^{}]*)\}")
_ANSWER_IS = re.compile(
    r"(?:final\s+answer|answer)\s*(?:is|:|：)?\s*(?:option\s*|choice\s*)?[:\-]?\s*(\**\(?[A-Za-z]\)?\**(?:[.)\s:]|$)[^\n]*)",
    re.IGNORECASE,
)
_LETTER_FORMS = (
    re.compile(r"^\(([A-Za-z])\)"),  # (B) / (b) ...
    re.compile(r"^([A-Za-z])(?:[.):]|$)"),  # B / B) / B. / B:
    re.compile(r"^([A-Z])\s"),  # "B because ..." (upper case only: "a bit" is not option A)
)


def choices_of(problem: Problem) -> dict[str, str]:
    raw = problem.metadata.get("choices", problem.metadata.get("options"))
    if isinstance(raw, dict):
        return {str(k).strip().upper(): str(v) for k, v in raw.items()}
    if isinstance(raw, (list, tuple)):
        return {string.ascii_uppercase[i]: str(v) for i, v in enumerate(raw) if i < 26}
    return {}


def _clean(text: str) -> str:
    t = text.strip()
    for _ in range(3):
        t = _WRAPPERS.sub(r"\1", t)
    t = t.replace("$", "").replace("*", "").strip()
    return t.strip(" .:;")


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", _clean(text)).casefold()


def to_letter(text: str, letters: str, choices: dict[str, str]) -> str | None:
    """The option letter ``text`` names, or None."""
    t = _clean(text)
    for form in _LETTER_FORMS:
        m = form.match(t)
        if m and m.group(1).upper() in letters:
            return m.group(1).upper()
    wanted = _norm(text)
    for letter, option in choices.items():
        if wanted and wanted == _norm(option):
            return letter
    return None


def _prediction(text: str, letters: str, choices: dict[str, str]) -> tuple[str | None, str | None]:
    """(letter, raw candidate) from the final answer region."""
    boxes = boxed(text)
    if boxes:
        return to_letter(boxes[-1], letters, choices), boxes[-1]
    found = list(_ANSWER_IS.finditer(text))
    if found:
        raw = found[-1].group(1).strip()
        return to_letter(raw, letters, choices), raw
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if lines:
        last = lines[-1].strip()
        letter = to_letter(last, letters, choices)
        if letter:
            return letter, last
    return None, None


def verify_choice(problem: Problem, sample: Sample, options: dict[str, Any]) -> Outcome:
    choices = choices_of(problem)
    letters = str(options.get("letters") or "".join(choices) or "ABCDEFGHIJ").upper()
    if problem.answer is None or not str(problem.answer).strip():
        return unverifiable("no_reference", "the problem has no reference answer")
    gold = to_letter(str(problem.answer), letters, choices)
    if gold is None:
        why = f"reference {problem.answer!r:.100} is not one of the options {letters}"
        return unverifiable("unparseable_gold", why)
    letter, raw = _prediction(answer_text(sample), letters, choices)
    if raw is None:
        return failed("no_answer", "no option letter found in the final answer")
    if letter is None:
        return failed("mismatch", f"final answer {raw!r:.100} is not one of the options {letters}", raw[:200])
    if letter == gold:
        return passed(letter, gold=gold)
    return failed("mismatch", f"chose {letter}, the answer is {gold}", letter, gold=gold)


__all__ = ["choices_of", "to_letter", "verify_choice"]
