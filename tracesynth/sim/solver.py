"""What the simulated teacher thinks: a problem text in, a reasoning trace and an answer out.

Order of attempts for a user message:

1. an arithmetic expression found in it (symbols, or phrasings like "the sum of A and B",
   "subtract A from B", "multiply A by B") covering every number in the text, in a text without
   words that change what the numbers mean ("remainder", "percent", "digits", ...) — worked step
   by step by :mod:`tracesynth.sim.arith`;
2. the answer key (:mod:`tracesynth.sim.answer_key`), with a short generic trace;
3. otherwise a valid completion saying it cannot solve the problem (no boxed answer).

The teacher's mistakes (what it planted is ``Solution.planted``):

* with probability ``wrong_rate`` a plausible wrong boxed answer. Arithmetic, one of ``mistakes``
  (equally likely): ``step`` — a mistake inside one step carried on to the answer (a dropped carry
  or borrow, a wrong column digit, a wrong partial product); ``transposed`` — the column work is
  right but the result is written with two adjacent digits swapped (85 → 58; a result without two
  different digits gets a ``step`` mistake instead). Answer key: an off-by-one or a neighbour's answer;
* with probability ``slip_rate`` (arithmetic only, never together with a wrong answer) a slip in
  the middle of the trace that the trace notices and corrects — ``7+8+0=14, hold on, 7+8+0 is 15,
  not 14; write 5, carry 1`` — so the final answer is right and outcome verification passes it.

Every random choice comes from ``random.Random`` seeded by (seed, problem identity, variant), so
a sample is the same whatever order requests arrive in. ``Solution.recheck`` is what it says
after a budget-forcing "Wait": it re-checks the steps and, half the time, catches its mistake.
:func:`audit` reads an arithmetic trace (the teacher's or a student's) against the true one and
says what it holds (clean, a recovered slip, a step mistake, transposed digits), which is how a
report counts what verification caught without any record from the simulator.
This module does not know about HTTP, tokens or truncation.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import lru_cache
from typing import Literal

from tracesynth.sim import arith
from tracesynth.sim.answer_key import AnswerKey, normalize
from tracesynth.thinking import THINK, reply_parts

CATCH_RATE = 0.5  # chance that a budget-forcing "Wait" finds a deliberate mistake
_WORDS = [
    (re.compile(r"\b(?:the\s+)?sum\s+of\s+(-?\d+)\s+and\s+(-?\d+)", re.I), "{0} + {1}"),
    (re.compile(r"\badd\s+(-?\d+)\s+(?:and|to|plus)\s+(-?\d+)", re.I), "{0} + {1}"),
    (re.compile(r"\bsubtract\s+(-?\d+)\s+from\s+(-?\d+)", re.I), "{1} - {0}"),
    (re.compile(r"\b(?:the\s+)?difference\s+(?:between|of)\s+(-?\d+)\s+and\s+(-?\d+)", re.I), "{0} - {1}"),
    (re.compile(r"\b(?:the\s+)?product\s+of\s+(-?\d+)\s+and\s+(-?\d+)", re.I), "{0} * {1}"),
    (re.compile(r"\bmultiply\s+(-?\d+)\s+(?:by|and|with)\s+(-?\d+)", re.I), "{0} * {1}"),
    (re.compile(r"\bdivide\s+(-?\d+)\s+by\s+(-?\d+)", re.I), "{0} / {1}"),
]
_INFIX = [
    (re.compile(r"\s+multiplied\s+by\s+", re.I), " * "),
    (re.compile(r"\s+divided\s+by\s+", re.I), " / "),
    (re.compile(r"\s+plus\s+", re.I), " + "),
    (re.compile(r"\s+minus\s+", re.I), " - "),
    (re.compile(r"\s+times\s+", re.I), " * "),
]
# words that make the numbers mean something else than the expression they form
_MEANING_WORDS = (
    r"remainder|modulo|\bmod\b|percent|%|square|cube|root|power|exponent|factorial|\bdigits?\b|average|"
    r"\bmean\b|\bdecimal|\bround|\bbase\b|\bprobability|\bratio\b|\bfraction"
)
_OP_WORDS = r"sum|add|subtract|difference|product|multipl|divide|plus|minus|times"
# ASCII text is lower-cased once and searched without re.I (4-8x faster); other text keeps re.I
_CHANGES_MEANING = re.compile(_MEANING_WORDS, re.I)
_CHANGES_MEANING_ASCII = re.compile(_MEANING_WORDS, re.A)
_ANY_WORD = re.compile(_OP_WORDS, re.I)
_ANY_WORD_ASCII = re.compile(_OP_WORDS, re.A)
_SYMBOLS = str.maketrans({"×": "*", "÷": "/", "−": "-", "–": "-", "·": "*"})
_CANDIDATE = re.compile(r"[-+(\s]*\d[\d\s+\-*/()]*")
_VARIABLE_END = re.compile(r"(?:^|\W)[A-Za-z]$")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
# chat-template markers around the user turn of a raw completion prompt
_USER_TURN = [
    re.compile(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", re.S),
    re.compile(r"<\|start_header_id\|>user<\|end_header_id\|>\s*(.*?)<\|eot_id\|>", re.S),
    re.compile(r"<｜User｜>(.*?)<｜Assistant｜>", re.S),
    re.compile(r"<\|user\|>\s*(.*?)(?:<\|end\|>|<\|assistant\|>)", re.S),
]


@dataclass(frozen=True)
class Solution:
    """One sampled answer: reasoning, final content, and what the simulator knows about it."""

    kind: Literal["arithmetic", "answer_key", "unknown"]
    identity: str
    reasoning: str
    content: str
    answer: str | None
    truth: str | None
    wrong: bool
    recheck: Callable[[], tuple[str, str]] = field(repr=False, compare=False)
    planted: str = "none"  # none | step | transposed | slip (arithmetic) | key (a wrong answer-key answer)

    def continue_after_wait(self, waits: int) -> tuple[str, str]:
        """(more reasoning, final content) after the ``waits``-th budget-forcing 'Wait'."""
        more, content = self.recheck()
        if waits <= 1:
            return more, content
        return ", I have already checked this; the answer stays the same.", content


def user_text_of_prompt(prompt: str) -> str:
    """The user's turn inside a raw completion prompt (the whole prompt when no template is recognised)."""
    head = prompt.split(THINK.start)[0]
    for pattern in _USER_TURN:
        found = pattern.findall(head)
        if found:
            return found[-1]
    return head


def find_expression(text: str) -> arith.Node | None:
    """The arithmetic expression a problem text asks for, or None (see module docstring)."""
    if text.isascii():
        low = text.lower()
        changes, words = _CHANGES_MEANING_ASCII.search(low), _ANY_WORD_ASCII.search(low)
    else:
        text = text.translate(_SYMBOLS)
        changes, words = _CHANGES_MEANING.search(text), _ANY_WORD.search(text)
    if changes:
        return None
    if words:
        for pattern, template in _WORDS:
            m = pattern.search(text)
            if m:
                return _covering(text, template.format(*m.groups()), [m.span()])
        for pattern, repl in _INFIX:
            text = pattern.sub(repl, text)
    numbers = [m.span() for m in _NUMBER.finditer(text)]
    if not numbers:
        return None
    first, last = numbers[0][0], numbers[-1][1]
    for m in _CANDIDATE.finditer(text):  # only a candidate holding every number can qualify
        if m.start() <= first and m.end() >= last:
            return _parse_candidate(text, m.start(), m.end())
    return None


def _covering(text: str, expr: str, spans: list[tuple[int, int]]) -> arith.Node | None:
    try:
        node = arith.parse(expr)
    except arith.ParseError:
        return None
    return node if _covers_all_numbers(text, spans) else None


def _covers_all_numbers(text: str, spans: list[tuple[int, int]]) -> bool:
    return all(any(s <= m.start() and m.end() <= e for s, e in spans) for m in _NUMBER.finditer(text))


def _parse_candidate(text: str, start: int, end: int) -> arith.Node | None:
    while start < end and text[start].isspace():
        start += 1
    frag = text[start:end].strip().rstrip("+-*/( ")
    if not frag:
        return None
    while frag.count("(") < frag.count(")") and frag.endswith(")"):
        frag = frag[:-1].rstrip()
    before = text[:start].rstrip()
    after = text[end:]
    if before[-1:] in (".", "^", "_", ")") or before[-1:].isdigit() or after[:1].isdigit():
        return None
    if (text[start - 1 : start].isalpha()) or after[:1].isalpha() or after[:1] == "^":
        return None
    if after[:1] == "." and after[1:2].isdigit():
        return None
    if frag[0] in "+-" and _VARIABLE_END.search(before):
        return None  # "y - 3 * 2": the minus is a binary operator after a variable
    try:
        node = arith.parse(frag)
    except arith.ParseError:
        return None
    return node if _has_binop(node) else None


def _has_binop(node: arith.Node) -> bool:
    if isinstance(node, arith.Bin):
        return True
    if isinstance(node, arith.Neg):
        return _has_binop(node.operand)
    return False


def _hash64(parts: tuple[object, ...]) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest(), "big")


def rng_for(*parts: object) -> random.Random:
    """A generator seeded by a hash of ``parts`` (stable across processes and runs)."""
    return random.Random(_hash64(parts))


def unit_for(*parts: object) -> float:
    """A uniform number in [0, 1) from a hash of ``parts`` (no generator to seed: ~10x cheaper)."""
    return (_hash64(parts) >> 11) * 2.0**-53


class Solver:
    """Turns a user message into a :class:`Solution`; deterministic in (seed, problem, variant)."""

    def __init__(
        self,
        seed: int = 0,
        wrong_rate: float = 0.0,
        answer_key: AnswerKey | None = None,
        *,
        slip_rate: float = 0.0,
        mistakes: Sequence[str] = ("step",),
        wrong_rate_bounds: tuple[float, float] | None = None,
    ) -> None:
        self.seed, self.wrong_rate, self.key = seed, wrong_rate, answer_key
        self.bounds = wrong_rate_bounds
        self.slip_rate, self.mistakes = slip_rate, tuple(mistakes) or ("step",)
        self.solve = lru_cache(maxsize=4096)(self._solve)
        self.analyse = lru_cache(maxsize=4096)(self._analyse)

    def _analyse(self, text: str) -> tuple[arith.Node | None, list[arith.Step], arith.Num, str | None, str | None]:
        """What the text asks (shared by every sample of a problem): expression, true steps, key entry."""
        node = find_expression(text)
        entry = self.key.lookup(text) if self.key is not None else None
        if node is not None:
            good = arith.Evaluator()
            try:
                truth = good.run(node)
            except ZeroDivisionError:
                node = None
            else:
                if entry is None or _same_number(entry.answer, truth):
                    return node, good.steps, truth, None, None
        return None, [], 0, entry.id if entry else None, entry.answer if entry else None

    def _solve(self, text: str, variant: object = 0) -> Solution:
        node, steps, truth, key_id, key_answer = self.analyse(text)
        if node is not None:
            return self._arithmetic(node, steps, truth, variant)
        if key_id is not None and key_answer is not None:
            return self._from_key(text, key_id, key_answer, variant)
        return _unknown(text)

    def problem_wrong_rate(self, problem: object) -> float:
        """The wrong rate of one problem: ``wrong_rate``, or its own draw in ``wrong_rate_bounds``."""
        if self.bounds is None:
            return self.wrong_rate
        lo, hi = self.bounds
        return lo + (hi - lo) * unit_for("sim-difficulty", self.seed, problem)

    # -- arithmetic ------------------------------------------------------------------------
    def _arithmetic(self, node: arith.Node, good: list[arith.Step], truth: arith.Num, variant: object) -> Solution:
        expr = arith.render(node)
        steps, value, bad_at, planted = good, truth, None, "none"
        wrong_rate = self.problem_wrong_rate(expr)
        # one uniform draw decides: [0, wrong_rate) a wrong answer, [wrong_rate, wrong_rate + slip_rate) a slip
        u = unit_for("sim", self.seed, expr, variant) if wrong_rate > 0 or self.slip_rate > 0 else 1.0
        if u < wrong_rate:
            rng = rng_for("sim", self.seed, expr, variant)
            kind = self.mistakes[0]
            if len(self.mistakes) > 1:
                kind = self.mistakes[int(unit_for("sim-kind", self.seed, expr, variant) * len(self.mistakes))]
            swapped = _transposed(truth, rng) if kind == "transposed" else None
            if swapped is not None:
                steps, value, bad_at = [*good[:-1], replace(good[-1], result=swapped)], swapped, len(good)
                planted = "transposed"
            else:
                steps, value, bad_at = _mistaken(node, good, truth, rng)
                planted = "step"
        elif u < wrong_rate + self.slip_rate:
            slipped = _slipped(good, rng_for("sim-slip", self.seed, expr, variant))
            if slipped is not None:
                steps, planted = slipped, "slip"
        reasoning = _write_steps(expr, steps, value)
        content = _final(fmt := arith.fmt(value))
        seed = self.seed

        def recheck() -> tuple[str, str]:  # only budget forcing needs it: computed on demand
            return _recheck(steps, good, bad_at, value, truth, rng_for("sim-recheck", seed, expr, variant))

        return Solution("arithmetic", expr, reasoning, content, fmt, arith.fmt(truth), value != truth, recheck, planted)

    # -- answer key ------------------------------------------------------------------------
    def _from_key(self, text: str, key_id: str, truth: str, variant: object) -> Solution:
        rng = rng_for("sim-key", self.seed, key_id, variant)
        wrong = rng.random() < self.problem_wrong_rate(key_id)
        answer = _near_miss(truth, rng, self.key.answers if self.key else []) if wrong else truth
        snippet = _snippet(text)
        reasoning = (
            f"The question: {snippet}\n"
            "This is not an expression I can work digit by digit, so I recall how this problem goes.\n"
            f"Working through it, the result I get is {answer}.\n"
            f"Checking that this answers what was asked: it does, so the answer is {answer}."
        )
        if wrong and rng.random() < CATCH_RATE:
            recheck = f", let me check that result again. {answer} does not hold up; redoing it gives {truth}."
            after = truth
        else:
            recheck = f", let me check that result again. It still comes out as {answer}."
            after = answer
        return Solution(
            "answer_key",
            key_id,
            reasoning,
            _final(answer),
            answer,
            truth,
            answer != truth,
            lambda: (recheck, _final(after)),
            "key" if answer != truth else "none",
        )


def _final(answer: str) -> str:
    return f"The answer is \\boxed{{{answer}}}."


def _snippet(text: str, limit: int = 300) -> str:
    norm = normalize(text)
    return norm if len(norm) <= limit else norm[: limit - 3] + "..."


def _unknown(text: str) -> Solution:
    reasoning = (
        f"The question: {_snippet(text)}\n"
        "I find no arithmetic expression in it that I can work out, and it is not in my answer key.\n"
        "I should not guess."
    )
    content = "I cannot solve this problem."
    return Solution(
        "unknown",
        normalize(text)[:200],
        reasoning,
        content,
        None,
        None,
        False,
        lambda: (", I still cannot solve it.", content),
    )


def _same_number(a: str, b: arith.Num) -> bool:
    try:
        return Fraction(a.strip()) == Fraction(b)
    except (ValueError, ZeroDivisionError):
        return False


def _near_miss(truth: str, rng: random.Random, others: list[str]) -> str:
    """A plausible wrong answer: off by one for numbers, the next letter for choices, else another answer."""
    t = truth.strip()
    if re.fullmatch(r"-?\d+", t):
        return str(int(t) + rng.choice([-1, 1]))
    if re.fullmatch(r"-?\d+\.\d+", t):
        places = len(t.split(".")[1])
        step = Fraction(1, 10**places) * rng.choice([-1, 1])
        return f"{float(Fraction(t) + step):.{places}f}"
    if re.fullmatch(r"-?\d+/\d+", t):
        num, den = t.split("/")
        return f"{int(num) + 1}/{den}"
    if re.fullmatch(r"[A-Ea-e]", t):
        return chr((ord(t.upper()) - ord("A") + 1) % 5 + ord("A"))
    pool = [a for a in others if a != t]
    return rng.choice(pool) if pool else f"not {t}"


def _mistaken(
    node: arith.Node, good: list[arith.Step], truth: arith.Num, rng: random.Random
) -> tuple[list[arith.Step], arith.Num, int | None]:
    """Steps with one mistake that changes the final value (several tries, then a copying slip)."""
    order = list(range(1, len(good) + 1))
    rng.shuffle(order)
    for at in order[:8]:
        ev = arith.Evaluator(rng, inject_at=at)
        try:
            value = ev.run(node)
        except ZeroDivisionError:
            continue
        if value != truth:
            return ev.steps, value, next(i for i, s in enumerate(ev.steps, 1) if s.result != s.true_result)
    return good, truth + 1, None


def _transposed(truth: arith.Num, rng: random.Random) -> int | None:
    """The result with two adjacent, different digits swapped (no leading zero), or None when there are none."""
    if type(truth) is not int:
        return None
    digits = str(abs(truth))
    pairs = [i for i in range(len(digits) - 1) if digits[i] != digits[i + 1] and not (i == 0 and digits[1] == "0")]
    if not pairs:
        return None
    i = rng.choice(pairs)
    swapped = digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :]
    return -int(swapped) if truth < 0 else int(swapped)


# a written fact that a slip can go into: "7+8+0=15, write 5, carry 1", "37*4=148, shifted 1: 1480", "3+4=7"
_FACT_LINE = re.compile(r"^(\d+(?:[+\-*]\d+)+)=(-?\d+)(?:, (.*))?$")
_SLIP_TEXT = "{lhs}={wrong}, hold on, {lhs} is {right}, not {wrong}"
_SLIP_LINE = re.compile(r"^(\s*)(\d+(?:[+\-*]\d+)+)=(-?\d+), hold on, \2 is (-?\d+), not \3(?:; (.*))?$", re.M)


def _slipped(good: list[arith.Step], rng: random.Random) -> list[arith.Step] | None:
    """The true steps with one fact first written off by one, then noticed and corrected (None: no fact line)."""
    spots = [(si, li) for si, step in enumerate(good) for li, line in enumerate(step.lines) if _FACT_LINE.match(line)]
    if not spots:
        return None
    si, li = rng.choice(spots)
    m = _FACT_LINE.match(good[si].lines[li])
    assert m is not None
    lhs, right, rest = m.group(1), int(m.group(2)), m.group(3)
    wrong = right + rng.choice([-1, 1]) if right != 0 else 1
    line = _SLIP_TEXT.format(lhs=lhs, wrong=wrong, right=right) + (f"; {rest}" if rest else "")
    lines = [*good[si].lines[:li], line, *good[si].lines[li + 1 :]]
    return [*good[:si], replace(good[si], lines=lines), *good[si + 1 :]]


def _write_steps(expr: str, steps: list[arith.Step], value: arith.Num) -> str:
    out = [f"We need to evaluate {expr}.", "Order: parentheses first, then * and /, then + and -, left to right."]
    for i, step in enumerate(steps, 1):
        out.append(f"Step {i}: {step.header}")
        out.append("  " + "\n  ".join(step.lines))  # every step has at least one line
        out.append(f"  so {step.header} = {arith.fmt(step.result)}")
    out.append(f"The result is {arith.fmt(value)}.")
    return "\n".join(out)


def _recheck(
    steps: list[arith.Step],
    good: list[arith.Step],
    bad_at: int | None,
    value: arith.Num,
    truth: arith.Num,
    rng: random.Random,
) -> tuple[str, str]:
    """The re-check after 'Wait': finds the deliberate mistake with probability CATCH_RATE."""
    if value == truth or (bad_at is not None and rng.random() >= CATCH_RATE) or bad_at is None:
        lines = [f"Step {i}: {s.header} = {arith.fmt(s.result)}, checks out." for i, s in enumerate(steps, 1)]
        return ", let me check the steps again.\n" + "\n".join(
            lines
        ) + f"\nSo the result is {arith.fmt(value)}.", _final(arith.fmt(value))
    lines = [f"Step {i}: {s.header} = {arith.fmt(s.result)}, checks out." for i, s in enumerate(steps[: bad_at - 1], 1)]
    bad = steps[bad_at - 1]
    lines.append(
        f"Step {bad_at}: {bad.header} is {arith.fmt(bad.true_result)}, not {arith.fmt(bad.result)}. "
        "I made a mistake there; redoing from this step:"
    )
    lines.extend(f"Step {i}: {s.header} = {arith.fmt(s.result)}" for i, s in enumerate(good, 1) if i > bad_at)
    return ", let me check the steps again.\n" + "\n".join(lines) + f"\nSo the result is {arith.fmt(truth)}.", _final(
        arith.fmt(truth)
    )


_EVALUATE = re.compile(r"^We need to evaluate (.+)\.$", re.M)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
AUDIT_KINDS = ("clean", "slip", "step", "transposed", "wrong", "other", "not_arithmetic")


def _unslip(m: re.Match[str]) -> str:
    indent, lhs, right, rest = m.group(1), m.group(2), m.group(4), m.group(5)
    return f"{indent}{lhs}={right}" + (f", {rest}" if rest else "")


@lru_cache(maxsize=4096)
def _true_trace(expr: str) -> tuple[str, str] | None:
    try:
        node = arith.parse(expr)
        good = arith.Evaluator()
        truth = good.run(node)
    except (arith.ParseError, ZeroDivisionError):
        return None
    return _write_steps(arith.render(node), good.steps, truth), arith.fmt(truth)


def audit(reasoning: str | None, content: str | None) -> str:
    """What an arithmetic trace in the simulator's format holds, judged against the true trace.

    ``clean`` (the true trace and answer), ``slip`` (right answer; the true trace once every
    noticed-and-corrected slip is undone), ``step`` (wrong answer with a false step written down),
    ``transposed`` (wrong answer: every step right, the result written with its digits permuted),
    ``wrong`` (another wrong or missing answer), ``other`` (right answer, but the trace is not the true
    one: an unnoticed error or garbled text), ``not_arithmetic`` (no "We need to evaluate" line).
    Deterministic and exact for the simulated teacher's own traces; for a student's, a reading. A reply
    with no reasoning field and no delimiter (``reasoning`` None: the ``undelimited`` persona) is read
    as :func:`tracesynth.thinking.reply_parts` splits it for training.
    """
    if reasoning is None:
        reasoning, content, _ = reply_parts(None, content)
    text = (reasoning or "").strip()
    m = _EVALUATE.search(text)
    truth_trace = _true_trace(m.group(1)) if m else None
    if truth_trace is None:
        return "not_arithmetic"
    good, truth = truth_trace
    found = _BOXED.findall(content or "")
    answer = found[-1].strip() if found else None
    if answer != truth:
        got, want = text.splitlines(), good.splitlines()
        same_work = len(got) == len(want) and got[:-2] == want[:-2] and got[-1] == f"The result is {answer}."
        if same_work and answer and sorted(answer.lstrip("-")) == sorted(truth.lstrip("-")):
            return "transposed"
        if got[: len(want) - 2] != want[: len(want) - 2]:
            return "step"
        return "wrong"
    if text == good:
        return "clean"
    unslipped, n = _SLIP_LINE.subn(_unslip, text)
    if n and unslipped == good:
        return "slip"
    return "other"
