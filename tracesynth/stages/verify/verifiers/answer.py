"""Find the final-answer region of a teacher's answer: ``\\boxed{}`` contents, "final answer is ...",
``<answer>`` tags and fenced code blocks.

Only the answer part of a sample is searched (``Sample.content``; if a ``</think>`` is still in
it, only the text after the last one; for a teacher that did not separate its thinking — no
reasoning field, no delimiter — the final answer at the end of its reply,
:func:`tracesynth.thinking.reply_parts`), never the reasoning: a number the model tried and
rejected while thinking is not its answer. These functions find text; they do not parse or
judge it (math_verifier.py, choice.py, gym.py and code.py do).
"""

from __future__ import annotations

import re

from tracesynth.records import Sample
from tracesynth.thinking import answer_region, reply_parts

_BOX_CMD = re.compile(r"\\(?:boxed|fbox)\s*")
_FINAL_PHRASE = re.compile(r"final\s+answer(?:\s+is)?\s*[:：]?\s*", re.IGNORECASE)
_I_HOPE = re.compile(r"\s*I hope it is correct\.?\s*$", re.IGNORECASE)
_ANSWER_TAG = re.compile(r"<answer>\s?(.*?)\s?</answer>", re.DOTALL)
_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)```", re.DOTALL)


def answer_text(sample: Sample) -> str:
    """The part of the sample that holds the final answer (content after any ``</think>``)."""
    _, text, _ = reply_parts(sample.reasoning, sample.content)
    return answer_region(text)


def boxed(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` / ``\\fbox{...}`` in order (braces matched; ``\\boxed 5`` too)."""
    out: list[str] = []
    pos = 0
    while True:
        m = _BOX_CMD.search(text, pos)
        if m is None:
            return out
        i = m.end()
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                c = text[j]
                if c == "\\":
                    j += 2
                    continue
                if c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if depth != 0:  # unbalanced: the box runs to the end of the text
                out.append(text[i + 1 :].strip())
                return out
            out.append(text[i + 1 : j].strip())
            pos = j + 1
        else:  # "\boxed 5": one token
            tok = re.match(r"[^\s$.,;]+", text[i:])
            if tok:
                out.append(tok.group(0))
            pos = i + (tok.end() if tok else 1)


def final_answer_phrase(text: str) -> str | None:
    """What follows the last "final answer (is)" on its line, without "I hope it is correct"."""
    last = None
    for m in _FINAL_PHRASE.finditer(text):
        last = m
    if last is None:
        return None
    rest = text[last.end() :].split("\n", 1)[0]
    rest = _I_HOPE.sub("", rest).strip().rstrip(".").strip()
    return rest or None


def answer_tag(text: str) -> str | None:
    """The last ``<answer>...</answer>`` (the reasoning-gym / DeepSeek-R1-Zero convention)."""
    found = _ANSWER_TAG.findall(text)
    return found[-1].strip() if found else None


def code_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced code block as (language tag, code), in order."""
    return [(lang.lower(), code) for lang, code in _FENCE.findall(text)]


def final_code(text: str, languages: tuple[str, ...] = ("python", "py", "python3", "")) -> str | None:
    """The last fenced code block whose language tag is one of ``languages``."""
    blocks = [code for lang, code in code_blocks(text) if lang in languages]
    return blocks[-1] if blocks else None


__all__ = ["answer_tag", "answer_text", "boxed", "code_blocks", "final_answer_phrase", "final_code"]
