"""Integer arithmetic with a written, step-by-step trace — and, on request, one plausible mistake.

``parse(text)`` reads an expression of integers, ``+ - * /``, parentheses and unary minus (the
shapes reasoning-gym's basic_arithmetic, chain_sum and products print). ``Evaluator`` walks it in
the usual order (parentheses, then ``* /``, then ``+ -``, left to right) and writes one step per
operation, regular enough for a small student to learn:

* addition / subtraction of multi-digit numbers: one line per digit column, right to left,
  ``d1+d2+c=s, write x, carry y`` (``borrow`` for subtraction);
* multiplication: one partial product per digit of the shorter factor, then running sums;
* division: the quotient with its check ``q*d=n``; single-digit facts are one line. Like
  reasoning-gym (whose reference answers use Python's ``//``), a division that is not exact
  rounds down, and the trace says so.

A mistake (``inject_at`` = step number) is a dropped carry or borrow, a wrong column sum, a wrong
partial product or a wrong quotient; later steps use the wrong value, so it reaches the answer.
This module knows nothing of HTTP, prompts or randomness sources other than the ``rng`` it is given.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

Num = int | Fraction
MAX_DIGITS = 40
MAX_OPS = 40

_TOKEN = re.compile(r"\s*(\d+|[-+*/()])")


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
    """Parse an integer expression; raises :class:`ParseError` if it is not one."""
    toks: list[str] = []
    pos, text = 0, text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ParseError(f"unexpected {text[pos:pos + 1]!r}")
        toks.append(m.group(1))
        pos = m.end()
    p = _Parser(toks)
    node = p.expr()
    if p.i != len(toks):
        raise ParseError("trailing tokens")
    if count_ops(node) > MAX_OPS:
        raise ParseError("expression too long")
    return node


class _Parser:
    def __init__(self, toks: list[str]) -> None:
        self.toks, self.i = toks, 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise ParseError("unexpected end")
        self.i += 1
        return tok

    def expr(self) -> Node:
        node = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            node = Bin(op, node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.peek() in ("*", "/"):
            op = self.take()
            node = Bin(op, node, self.unary())
        return node

    def unary(self) -> Node:
        tok = self.peek()
        if tok in ("-", "+"):
            self.take()
            nxt = self.peek()
            if nxt is not None and nxt.isdigit():
                self.take()
                return Lit(-int(nxt) if tok == "-" else int(nxt))
            inner = self.unary()
            return Neg(inner) if tok == "-" else inner
        return self.primary()

    def primary(self) -> Node:
        tok = self.take()
        if tok.isdigit():
            if len(tok) > MAX_DIGITS:
                raise ParseError("number too long")
            return Lit(int(tok))
        if tok == "(":
            node = self.expr()
            if self.take() != ")":
                raise ParseError("missing )")
            return node
        raise ParseError(f"unexpected {tok!r}")


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


def fmt(x: Num) -> str:
    """An exact number as text: integers plainly, other fractions as p/q."""
    if type(x) is int:
        return str(x)
    if isinstance(x, Fraction):
        return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"
    return str(x)


def _norm(x: Num) -> Num:
    return int(x) if isinstance(x, Fraction) and x.denominator == 1 else x


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
        return _norm(self._eval(node))

    def _eval(self, node: Node) -> Num:
        kind = type(node)
        if kind is Lit:
            return node.value
        if kind is Neg:
            v = self._eval(node.operand)
            self._record(f"-({fmt(v)})", [f"-({fmt(v)}) = {fmt(-v)}"], -v, -v, allow_mistake=False)
            return -v
        a, b = self._eval(node.left), self._eval(node.right)
        true = _apply(node.op, a, b)
        wrong = len(self.steps) + 1 == self.inject_at
        lines, res = _STEP[node.op](a, b, self.rng if wrong else None)
        self._record(f"{fmt(a)} {node.op} {fmt(b)}", lines, res, true)
        return res

    def _record(self, header: str, lines: list[str], res: Num, true: Num, allow_mistake: bool = True) -> None:
        if not allow_mistake and len(self.steps) + 1 == self.inject_at:
            self.inject_at = len(self.steps) + 2  # a negation cannot go wrong: move to the next step
        self.steps.append(Step(header, lines, _norm(res), _norm(true)))


def _apply(op: str, a: Num, b: Num) -> Num:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise ZeroDivisionError("division by zero")
    if _is_int(a, b):
        return a // b  # reasoning-gym's convention: integer division rounds down
    return _norm(Fraction(a) / Fraction(b))


def _is_int(a: Num, b: Num) -> bool:
    return type(a) is int and type(b) is int


def _off(rng: random.Random, x: int) -> int:
    """A near miss for a small fact."""
    return x + rng.choice([-1, 1]) if x > 0 else x + 1


def _digits(x: int) -> list[int]:
    return [int(c) for c in reversed(str(x))]


def _add_columns(a: int, b: int, rng: random.Random | None) -> tuple[list[str], int]:
    """Column addition of a, b >= 0 with one line per column."""
    if a < 10 and b < 10:
        s = a + b
        if rng is not None:
            s = _off(rng, s)
        return [f"{a}+{b}={s}"], s
    da, db = _digits(a), _digits(b)
    n = max(len(da), len(db))
    # plan the columns, then pick a mistake: a dropped carry if there is one, else a wrong column sum
    carries = []
    c = 0
    for i in range(n):
        s = (da[i] if i < len(da) else 0) + (db[i] if i < len(db) else 0) + c
        c = s // 10
        carries.append(c)
    drop = wrong_col = None
    if rng is not None:
        with_carry = [i for i, ci in enumerate(carries) if ci]
        if with_carry:
            drop = rng.choice(with_carry)
        else:
            wrong_col = rng.randrange(min(len(da), len(db)))
    lines, out, c = [], [], 0
    short = min(len(da), len(db))
    for i in range(n):
        x, y = (da[i] if i < len(da) else 0), (db[i] if i < len(db) else 0)
        if i >= short and c == 0:  # nothing left to add: copy the rest of the longer number
            rest = (da if len(da) > len(db) else db)[i:]
            lines.append(f"no carry, copy the remaining digits {''.join(map(str, reversed(rest)))}")
            out.extend(rest)
            break
        cin = c
        s = x + y + cin
        if i == wrong_col:
            s = s + 1 if s % 10 != 9 else s - 1
        c = 0 if i == drop else s // 10
        lines.append(f"{x}+{y}+{cin}={s}, write {s % 10}, carry {c}")
        out.append(s % 10)
    if c:
        lines.append(f"final carry {c}, write {c}")
        out.append(c)
    res = int("".join(str(d) for d in reversed(out)))
    return lines, res


def _sub_columns(a: int, b: int, rng: random.Random | None) -> tuple[list[str], int]:
    """Column subtraction a - b with a >= b >= 0, one line per column."""
    if a < 10 and b < 10:
        s = a - b
        if rng is not None:
            s = s + 1 if s == 0 else _off(rng, s)
        return [f"{a}-{b}={s}"], s
    da, db = _digits(a), _digits(b)
    borrows, br = [], 0
    for i in range(len(da)):
        d = da[i] - (db[i] if i < len(db) else 0) - br
        br = 1 if d < 0 else 0
        borrows.append(br)
    drop = wrong_col = None
    if rng is not None:
        with_borrow = [i for i, bi in enumerate(borrows) if bi]
        if with_borrow:
            drop = rng.choice(with_borrow)
        else:
            wrong_col = rng.randrange(len(db))
    lines, out, br = [], [], 0
    for i in range(len(da)):
        x, y = da[i], (db[i] if i < len(db) else 0)
        if i >= len(db) and br == 0:  # nothing left to subtract: copy the rest
            lines.append(f"no borrow, copy the remaining digits {''.join(map(str, reversed(da[i:])))}")
            out.extend(da[i:])
            break
        d = x - y - br
        prefix = f"{x}-{y}-{br}={d}"
        if d < 0:
            w, nb = d + 10, 1
            prefix += f", add 10: {w}"
        else:
            w, nb = d, 0
        if i == wrong_col:
            w = w + 1 if w < 9 else w - 1
        if i == drop:
            nb = 0
        lines.append(f"{prefix}, write {w}, borrow {nb}")
        out.append(w)
        br = nb
    res = int("".join(str(d) for d in reversed(out)))
    return lines, res


def _signed_add(a: int, b: int, rng: random.Random | None) -> tuple[list[str], int]:
    """a + b for any signs, reduced to column work on magnitudes."""
    if a >= 0 and b >= 0:
        lines, r = _add_columns(a, b, rng)
        return lines, r
    if a < 0 and b < 0:
        lines, r = _add_columns(-a, -b, rng)
        return [f"both negative: -({-a} + {-b})", *lines], -r
    pos, neg = (a, -b) if a >= 0 else (b, -a)
    head = f"{fmt(a)} + {fmt(b)} = {pos} - {neg}"
    lines, r = _magnitude_sub(pos, neg, rng)
    return [head, *lines], r


def _magnitude_sub(x: int, y: int, rng: random.Random | None) -> tuple[list[str], int]:
    """x - y for x, y >= 0: column subtraction, flipped when y > x."""
    if x >= y:
        return _sub_columns(x, y, rng)
    lines, r = _sub_columns(y, x, rng)
    return [f"{x} < {y}, so {x} - {y} = -({y} - {x})", *lines], -r


def _step_add(a: Num, b: Num, rng: random.Random | None) -> tuple[list[str], Num]:
    if not _is_int(a, b):
        r = _norm(a + b)
        r = r + 1 if rng is not None else r
        return [f"{fmt(a)} + {fmt(b)} = {fmt(r)}"], r
    return _signed_add(a, b, rng)


def _step_sub(a: Num, b: Num, rng: random.Random | None) -> tuple[list[str], Num]:
    if not _is_int(a, b):
        r = _norm(a - b)
        r = r + 1 if rng is not None else r
        return [f"{fmt(a)} - {fmt(b)} = {fmt(r)}"], r
    if b < 0:
        lines, r = _signed_add(a, -b, rng)
        return [f"{a} - {b} = {a} + {-b}", *lines], r
    if a < 0:
        lines, r = _add_columns(-a, b, rng)
        return [f"{a} - {b} = -({-a} + {b})", *lines], -r
    return _magnitude_sub(a, b, rng)


def _step_mul(a: Num, b: Num, rng: random.Random | None) -> tuple[list[str], Num]:
    if not _is_int(a, b):
        r = _norm(a * b)
        r = r + 1 if rng is not None else r
        return [f"{fmt(a)} * {fmt(b)} = {fmt(r)}"], r
    neg = (a < 0) != (b < 0)
    x, y = abs(a), abs(b)
    lines = []
    if a < 0 or b < 0:
        lines.append(f"signs: the product is {'negative' if neg else 'positive'}, multiply {x} * {y}")
    if x < 10 and y < 10:
        p = x * y
        if rng is not None:
            p = max(0, p + rng.choice([-x or 1, x or 1, -1, 1])) if p else 1
        lines.append(f"{x}*{y}={p}")
        return lines, -p if neg else p
    if len(str(y)) > len(str(x)):
        x, y = y, x
    dy = _digits(y)
    bad = rng.randrange(len(dy)) if rng is not None else None
    partials = []
    for i, d in enumerate(dy):
        p = x * d
        if i == bad:
            k = rng.randrange(len(str(p))) if p else 0
            p = p + 10**k if (p // 10**k) % 10 != 9 else p - 10**k
        shifted = p * 10**i
        lines.append(f"{x}*{d}={p}" + (f", shifted {i}: {shifted}" if i else ""))
        partials.append(shifted)
    total = partials[0]
    for p in partials[1:]:
        lines.append(f"{total}+{p}={total + p}")
        total += p
    return lines, -total if neg else total


def _step_div(a: Num, b: Num, rng: random.Random | None) -> tuple[list[str], Num]:
    if b == 0:
        raise ZeroDivisionError("division by zero")
    if not _is_int(a, b):
        q = _norm(Fraction(a) / Fraction(b))
        q = q + 1 if rng is not None else q
        return [f"{fmt(a)} / {fmt(b)} = {fmt(q)}"], q
    q, r = divmod(a, b)
    if rng is not None:
        q = q + rng.choice([-1, 1])
    if r:
        return [f"{a} / {b} is not exact; integer division rounds down: {q}, check: {q}*{b}+{r}={a}"], q
    return [f"{a} / {b} = {q}, check: {q}*{b}={a}"], q


_STEP = {"+": _step_add, "-": _step_sub, "*": _step_mul, "/": _step_div}
