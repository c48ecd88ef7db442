"""What every verifier shares: the Outcome it returns, the tags, and a CPU-time deadline.

A verifier is a plain function ``(problem, sample, options) -> Outcome``. ``Outcome`` is a
Verdict without the ids (``score()`` in ``tracesynth.stages.verify.registry`` adds them). Statuses are
three-valued and never hide an error:

* ``pass`` — the answer is right;
* ``fail`` — the sample is wrong (wrong answer, no final answer, a program that crashes or
  loops); ``tag`` says which;
* ``unverifiable`` — the verifier could not decide (unparseable gold, no reference, a timeout
  of the verifier itself, a sandbox or judge error); ``reason`` keeps the error.

Tags (every non-pass carries one; verify.json counts them):

========================  ==============  ==========================================================
tag                       status          meaning
========================  ==============  ==========================================================
no_answer                 fail            no final answer found (no \\boxed{}, code block, ...)
unparseable_answer        unverifiable    a final answer was found but could not be parsed
unparseable_gold          unverifiable    the reference answer could not be parsed
no_reference              unverifiable    the problem has no answer/tests/entry for this verifier
mismatch                  fail            parsed, compared, different
partial                   fail            reasoning-gym gave a partial score (0 < score < 1)
timeout                   either          verifier over its CPU budget (unverifiable) or the
                                          program under test over its limits (fail)
runtime_error             fail            the program under test crashed
resource_limit            fail            the program hit the memory / output limit
sandbox_error             unverifiable    the sandbox could not run the program
judge_error               unverifiable    the judge endpoint failed or answered unreadably
not_needed                unverifiable    judge used as a fallback and the rule-based verifiers
                                          decided (``keep`` ignores these)
verifier_error            unverifiable    an exception inside a verifier (message kept)
sample_error              unverifiable    the sample itself is an error row
no_problem                unverifiable    the sample's problem is not in problems.jsonl
format checks             fail            truncated, no_reasoning, no_final_answer, undelimited,
                                          unclosed_think, chat_markup, too_short, too_long, script
                                          (see format.py)
========================  ==============  ==========================================================

This module has no verifier logic of its own.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tracesynth.records import Status

TAGS = (
    "no_answer",
    "unparseable_answer",
    "unparseable_gold",
    "no_reference",
    "mismatch",
    "partial",
    "timeout",
    "runtime_error",
    "resource_limit",
    "sandbox_error",
    "judge_error",
    "not_needed",
    "verifier_error",
    "sample_error",
    "no_problem",
    "truncated",
    "no_reasoning",
    "no_final_answer",
    "undelimited",
    "unclosed_think",
    "chat_markup",
    "too_short",
    "too_long",
    "script",
)


@dataclass
class Outcome:
    status: Status
    answer: str | None = None
    reason: str = ""
    tag: str = ""
    score: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


def passed(answer: str | None = None, reason: str = "", **details: Any) -> Outcome:
    return Outcome("pass", answer, reason, "", 1.0, details)


def failed(tag: str, reason: str, answer: str | None = None, score: float | None = 0.0, **details: Any) -> Outcome:
    return Outcome("fail", answer, reason, tag, score, details)


def unverifiable(tag: str, reason: str, answer: str | None = None, **details: Any) -> Outcome:
    return Outcome("unverifiable", answer, reason, tag, None, details)


class VerifierTimeout(BaseException):
    """Raised inside a verifier when its CPU budget is spent (a BaseException, so that library
    code catching ``Exception`` — math-verify does — cannot swallow it)."""


_deadline_armed = False


def _on_sigprof(signum: int, frame: Any) -> None:
    if _deadline_armed:
        raise VerifierTimeout()


@contextmanager
def cpu_deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`VerifierTimeout` once this process has used ``seconds`` of CPU in the block.

    Uses ``ITIMER_PROF`` / ``SIGPROF`` (CPU time, so a loaded machine does not cause false
    timeouts, and independent of the ``SIGALRM`` math-verify would use). Signals only work in
    the main thread: elsewhere the block runs without a deadline. Python code is interrupted at
    once; a computation stuck inside one C call is interrupted when it returns, which is why the
    verify stage's worker processes also carry a hard ``RLIMIT_CPU`` (see stage.py).
    """
    global _deadline_armed
    if not seconds or seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return
    old_handler = signal.signal(signal.SIGPROF, _on_sigprof)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    _deadline_armed = True
    try:
        yield
    finally:
        _deadline_armed = False
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old_handler)


__all__ = ["TAGS", "Outcome", "VerifierTimeout", "cpu_deadline", "failed", "passed", "unverifiable"]
