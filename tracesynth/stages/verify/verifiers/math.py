"""The ``math`` verifier: math-verify (HuggingFace) on the gold answer and the final answer region.

* Gold (``Problem.answer``) is parsed leniently: as the content of a ``\\boxed{}`` (LaTeX, then
  plain expressions), then, failing that, anywhere in the text. A gold answer that yields no
  mathematical object is ``unverifiable`` / ``unparseable_gold`` — never a pass.
* The prediction is parsed strictly from the final answer region (see answer.py): the
  ``\\boxed{}`` contents (which one: option ``boxes``), else the text after the last "final answer
  is"; nothing else unless ``fallback: last_number`` is set (the last number in the answer part).
  No region → ``fail`` / ``no_answer``; a region that does not parse → ``unverifiable`` /
  ``unparseable_answer`` (the judge verifier can take these).
* Comparison is ``math_verify.verify`` (symbolic and numeric equality, sets vs ordered tuples,
  intervals, relations, matrices; ``1,000`` is a thousand; percentages follow math-verify,
  which deliberately treats ``10\\%`` as equal to both ``10`` and ``0.1``; units in ``\\text{}``
  are dropped).

Options (``verify.options.math``): ``boxes`` = ``last`` (default) | ``first`` | ``all`` (every box
must match) | ``any`` (one box matching is enough — lenient, easy to game) | ``join`` (all boxes
as one comma-separated answer, e.g. several solutions); ``fallback`` = ``none`` | ``last_number``;
``final_answer_phrase`` (default true); ``float_rounding`` (6), ``numeric_precision`` (15),
``strict`` (true: variables and set/tuple kinds matter), ``allow_set_relation_comp`` (false).

math-verify's own timeouts use ``SIGALRM`` and return "no match" on a timeout; they are turned
off here and replaced by the CPU deadline of :func:`tracesynth.stages.verify.registry.score` (a timeout is then
``unverifiable`` / ``timeout``, not a silent mismatch). This module does not pick verifiers or
write verdicts.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from tracesynth.records import Problem, Sample
from tracesynth.stages.verify.verifiers.answer import answer_text, boxed, final_answer_phrase
from tracesynth.stages.verify.verifiers.base import Outcome, failed, passed, unverifiable

BOX_POLICIES = ("last", "first", "all", "any", "join")


class _DropTimeoutDisabled(logging.Filter):
    """math-verify warns once that its timeout is off; we replaced it with our own deadline."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Timeout is disabled")


def _mv() -> Any:
    import math_verify

    for name in ("math_verify.parser", "math_verify.grader"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTimeoutDisabled) for f in logger.filters):
            logger.addFilter(_DropTimeoutDisabled())
    return math_verify


@lru_cache(maxsize=1)
def _configs() -> tuple[list[Any], list[Any], list[Any]]:
    mv = _mv()
    boxed_first = [mv.LatexExtractionConfig(boxed_match_priority=0), mv.ExprExtractionConfig()]
    anywhere = [mv.LatexExtractionConfig(), mv.ExprExtractionConfig()]
    numbers = [mv.ExprExtractionConfig()]
    return boxed_first, anywhere, numbers


def _has_math(parsed: list[Any]) -> bool:
    from sympy import Basic, MatrixBase

    return any(isinstance(p, (Basic, MatrixBase)) for p in parsed)


def _unwrap_dollars(text: str) -> str:
    t = text.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(t) > len(left) + len(right) and t.startswith(left) and t.endswith(right):
            return t[len(left) : -len(right)].strip()
    return t


@lru_cache(maxsize=4096)
def parse_gold(gold: str) -> tuple[Any, ...]:
    """The parsed gold answer (empty when nothing mathematical could be read)."""
    mv = _mv()
    boxed_first, anywhere, _ = _configs()
    text = gold if "\\boxed" in gold else "\\boxed{" + _unwrap_dollars(gold) + "}"
    parsed = mv.parse(text, extraction_config=boxed_first, parsing_timeout=None)
    if not _has_math(parsed):
        parsed = mv.parse(gold, extraction_config=anywhere, parsing_timeout=None)
    return tuple(parsed) if _has_math(parsed) else ()


def parse_prediction(region: str, kind: str) -> list[Any]:
    mv = _mv()
    boxed_first, anywhere, numbers = _configs()
    if kind == "boxed":
        return mv.parse("\\boxed{" + region + "}", extraction_config=boxed_first, parsing_timeout=None)
    if kind == "last_number":
        return mv.parse(region, extraction_config=numbers, parsing_timeout=None)
    return mv.parse(region, extraction_config=anywhere, parsing_timeout=None)


def candidates(text: str, options: dict[str, Any]) -> tuple[list[str], str]:
    """The answer strings to check and where they came from (boxed / final_answer / last_number)."""
    policy = options.get("boxes", "last")
    boxes = [b for b in boxed(text) if b]
    if boxes:
        if policy == "last":
            return [boxes[-1]], "boxed"
        if policy == "first":
            return [boxes[0]], "boxed"
        if policy == "join":
            return [", ".join(boxes)], "boxed"
        return boxes, "boxed"
    if options.get("final_answer_phrase", True):
        phrase = final_answer_phrase(text)
        if phrase:
            return [phrase], "final_answer"
    if options.get("fallback", "none") == "last_number" and text.strip():
        return [text], "last_number"
    return [], "none"


def verify_math(problem: Problem, sample: Sample, options: dict[str, Any]) -> Outcome:
    policy = options.get("boxes", "last")
    if policy not in BOX_POLICIES:
        raise ValueError(f"math: boxes must be one of {', '.join(BOX_POLICIES)}, got {policy!r}")
    if problem.answer is None or not str(problem.answer).strip():
        return unverifiable("no_reference", "the problem has no reference answer")
    gold = parse_gold(str(problem.answer))
    if not gold:
        return unverifiable("unparseable_gold", f"math-verify could not parse the gold answer {problem.answer!r:.200}")
    text = answer_text(sample)
    cands, region = candidates(text, options)
    if not cands:
        return failed("no_answer", "no \\boxed{} answer or 'final answer is' phrase in the answer")
    mv = _mv()
    verify_kw = {
        k: options[k]
        for k in ("float_rounding", "numeric_precision", "strict", "allow_set_relation_comp")
        if k in options
    }
    results: list[bool | None] = []
    shown: list[str] = []
    for cand in cands:
        parsed = parse_prediction(cand, region)
        if not _has_math(parsed):
            results.append(None)
            shown.append(cand if region != "last_number" else "")
            continue
        shown.append(next((p for p in parsed if isinstance(p, str)), cand) if region == "last_number" else cand)
        results.append(bool(mv.verify(list(gold), parsed, timeout_seconds=None, **verify_kw)))
    answer = shown[-1] if len(shown) == 1 else " | ".join(shown)
    answer = answer[:500]
    details: dict[str, Any] = {
        "region": region,
        "boxes": len(cands) if region == "boxed" else 0,
        "gold": str(gold[-1])[:200],
    }
    if policy == "any" and any(r is True for r in results):
        return passed(answer, **details)
    if all(r is True for r in results):
        return passed(answer, **details)
    if any(r is False for r in results):
        return failed(
            "mismatch",
            f"answer {answer!r:.120} does not match the reference {problem.answer!r:.120}",
            answer,
            **details,
        )
    return unverifiable(
        "unparseable_answer", f"math-verify could not parse the answer {answer!r:.200}", answer, **details
    )


__all__ = ["BOX_POLICIES", "candidates", "parse_gold", "parse_prediction", "verify_math"]
