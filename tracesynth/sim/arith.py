"""Integer arithmetic with a written, step-by-step trace — and, on request, one plausible mistake.

``parse(text)`` reads an expression of integers, ``+ - * /``, parentheses and unary minus (the
shapes reasoning-gym's basic_arithmetic, chain_sum and products print). ``Evaluator`` walks it in
the usual order (parentheses, then ``* /``, then ``+ -``, left to right) and writes one step per
operation, regular enough for a small student to learn:

column-by-column addition and subtraction, partial products, checked quotients (the written
procedures and their mistakes live in :mod:`tracesynth.sim.columns`).

A mistake (``inject_at`` = step number) goes into that step; later steps use the wrong value,
so it reaches the answer.
This module knows nothing of HTTP, prompts or randomness sources other than the ``rng`` it is given.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import NamedTuple

from tracesynth.sim.columns import STEPS, Num, apply_op, exact, fmt

MAX_DIGITS = 40
MAX_OPS = 40

_TOKENS = re.compile(r"\d+|[-+*/()]")
_BAD_CHAR = re.compile(r"[^\d\s+\-*/()]")


class Lit(NamedTuple):
    value: int


class Neg(NamedTuple):
    operand: Node


class Bin(NamedTuple):
    op: str
    left: Node
    right: Node


Node = Lit | Neg | Bin


class ParseError(ValueError):
    pass


def parse(text: str) -> Node:
    """Parse an integer expression; raises :class:`ParseError` if it is not one.

    Recursive descent over a token list (closures over locals: ~3x faster than a parser object,
    which matters because the simulator parses every request).
    """
    bad = _BAD_CHAR.search(text)
    if bad:
        raise ParseError(f"unexpected {bad.group()!r}")
    toks = _TOKENS.findall(text)
    n, i, ops = len(toks), 0, 0

    def expr() -> Node:
        nonlocal i, ops
        node = term()
        while i < n and (toks[i] == "+" or toks[i] == "-"):
            op = toks[i]
            i += 1
            node = Bin(op, node, term())
            ops += 1
        return node

    def term() -> Node:
        nonlocal i, ops
        node = unary()
        while i < n and (toks[i] == "*" or toks[i] == "/"):
            op = toks[i]
            i += 1
            node = Bin(op, node, unary())
            ops += 1
        return node

    def unary() -> Node:
        nonlocal i, ops
        if i < n and (toks[i] == "-" or toks[i] == "+"):
            sign = toks[i]
            i += 1
            if i < n and toks[i].isdigit():
                return Lit(-literal() if sign == "-" else literal())
            inner = unary()
            if sign == "+":
                return inner
            ops += 1
            return Neg(inner)
        if i < n and toks[i].isdigit():
            return Lit(literal())
        if i >= n:
            raise ParseError("unexpected end")
        if toks[i] != "(":
            raise ParseError(f"unexpected {toks[i]!r}")
        i += 1
        node = expr()
        if i >= n:
            raise ParseError("unexpected end")
        if toks[i] != ")":
            raise ParseError("missing )")
        i += 1
        return node

    def literal() -> int:
        nonlocal i
        tok = toks[i]
        i += 1
        if len(tok) > MAX_DIGITS:
            raise ParseError("number too long")
        return int(tok)

    node = expr()
    if i != n:
        raise ParseError("trailing tokens")
    if ops > MAX_OPS:
        raise ParseError("expression too long")
    return node


def count_ops(node: Node) -> int:
    if isinstance(node, Lit):
        return 0
    if isinstance(node, Neg):
        return 1 + count_ops(node.operand)
    return 1 + count_ops(node.left) + count_ops(node.right)


def render(node: Node) -> str:
    """The expression as text (single spaces, parentheses where needed)."""
    if isinstance(node, Lit):
        return str(node.value)
    if isinstance(node, Neg):
        return f"-({render(node.operand)})"
    left, right = render(node.left), render(node.right)
    if isinstance(node.left, Bin) and _prec(node.left.op) < _prec(node.op):
        left = f"({left})"
    if isinstance(node.right, Bin) and _prec(node.right.op) <= _prec(node.op):
        right = f"({right})"
    return f"{left} {node.op} {right}"


def _prec(op: str) -> int:
    return 1 if op in "+-" else 2


@dataclass
class Step:
    """One operation of the walk: its header, its detail lines and its (possibly wrong) result."""

    header: str
    lines: list[str]
    result: Num
    true_result: Num


class Evaluator:
    """Evaluate a parsed expression into steps; ``inject_at`` puts a mistake into that step (1-based)."""

    def __init__(self, rng: random.Random | None = None, inject_at: int | None = None) -> None:
        self.rng = rng
        self.inject_at = inject_at
        self.steps: list[Step] = []

    def run(self, node: Node) -> Num:
        return exact(self._eval(node))

    def _eval(self, node: Node) -> Num:
        if type(node) is Lit:
            return node.value
        if type(node) is Neg:
            v = self._eval(node.operand)
            self._record(f"-({fmt(v)})", [f"-({fmt(v)}) = {fmt(-v)}"], -v, -v, allow_mistake=False)
            return -v
        assert type(node) is Bin
        a, b = self._eval(node.left), self._eval(node.right)
        true = apply_op(node.op, a, b)
        wrong = len(self.steps) + 1 == self.inject_at
        lines, res = STEPS[node.op](a, b, self.rng if wrong else None)
        self._record(f"{fmt(a)} {node.op} {fmt(b)}", lines, res, true)
        return res

    def _record(self, header: str, lines: list[str], res: Num, true: Num, allow_mistake: bool = True) -> None:
        if not allow_mistake and len(self.steps) + 1 == self.inject_at:
            self.inject_at = len(self.steps) + 2  # a negation cannot go wrong: move to the next step
        self.steps.append(Step(header, lines, exact(res), exact(true)))
