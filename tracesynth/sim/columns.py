"""The written procedures behind each step of :mod:`tracesynth.sim.arith`, with optional mistakes.

Each ``_step_<op>(a, b, rng)`` returns (detail lines, result). With ``rng=None`` the result is
right; with an ``rng`` it makes one plausible mistake and carries it on:

* addition / subtraction: one line per digit column, right to left —
  ``d1+d2+c=s, write x, carry y`` / ``d1-d2-b=d, add 10: x, write x, borrow 1`` — and one
  "copy the remaining digits" line once nothing is left to carry or borrow; the mistake is a
  dropped carry / borrow, or a wrong column when there is none;
* signs are reduced to magnitudes in a first line (``478 + -682 = 478 - 682``);
* multiplication: one partial product per digit of the shorter factor, then running sums;
  the mistake is one wrong digit in a partial product; single-digit facts are one line;
* division: the quotient and its check; a division that is not exact rounds down like Python's
  ``//`` (reasoning-gym's convention) and says so; the mistake is a quotient off by one.
"""

from __future__ import annotations

import random
from fractions import Fraction
from typing import cast

Num = int | Fraction


def fmt(x: Num) -> str:
    """An exact number as text: integers plainly, other fractions as p/q."""
    if type(x) is int:
        return str(x)
    if isinstance(x, Fraction):
        return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"
    return str(x)


def exact(x: Num) -> Num:
    return int(x) if isinstance(x, Fraction) and x.denominator == 1 else x


def apply_op(op: str, a: Num, b: Num) -> Num:
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
    return exact(Fraction(a) / Fraction(b))


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
    if rng is None:
        return _add_lines(a, b), a + b
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
    if rng is None:
        return _sub_lines(a, b), a - b
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


def _add_lines(a: int, b: int) -> list[str]:
    """The lines of a correct column addition (the fast path of :func:`_add_columns`: same text)."""
    sa, sb = str(a), str(b)
    la, lb = len(sa), len(sb)
    n, short, longer = max(la, lb), min(la, lb), (sa if la > lb else sb)
    lines, c = [], 0
    for i in range(n):
        if i >= short and c == 0:
            lines.append(f"no carry, copy the remaining digits {longer[: n - i]}")
            break
        x = ord(sa[la - 1 - i]) - 48 if i < la else 0
        y = ord(sb[lb - 1 - i]) - 48 if i < lb else 0
        s = x + y + c
        lines.append(f"{x}+{y}+{c}={s}, write {s % 10}, carry {s // 10}")
        c = s // 10
    if c:
        lines.append(f"final carry {c}, write {c}")
    return lines


def _sub_lines(a: int, b: int) -> list[str]:
    """The lines of a correct column subtraction a - b, a >= b >= 0 (fast path of :func:`_sub_columns`)."""
    sa, sb = str(a), str(b)
    la, lb = len(sa), len(sb)
    lines, br = [], 0
    for i in range(la):
        if i >= lb and br == 0:
            lines.append(f"no borrow, copy the remaining digits {sa[: la - i]}")
            break
        x = ord(sa[la - 1 - i]) - 48
        y = ord(sb[lb - 1 - i]) - 48 if i < lb else 0
        d = x - y - br
        if d < 0:
            lines.append(f"{x}-{y}-{br}={d}, add 10: {d + 10}, write {d + 10}, borrow 1")
            br = 1
        else:
            lines.append(f"{x}-{y}-{br}={d}, write {d}, borrow 0")
            br = 0
    return lines


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
        r = exact(a + b)
        r = r + 1 if rng is not None else r
        return [f"{fmt(a)} + {fmt(b)} = {fmt(r)}"], r
    a, b = cast(int, a), cast(int, b)  # _is_int said so
    return _signed_add(a, b, rng)


def _step_sub(a: Num, b: Num, rng: random.Random | None) -> tuple[list[str], Num]:
    if not _is_int(a, b):
        r = exact(a - b)
        r = r + 1 if rng is not None else r
        return [f"{fmt(a)} - {fmt(b)} = {fmt(r)}"], r
    a, b = cast(int, a), cast(int, b)  # _is_int said so
    if b < 0:
        lines, r = _signed_add(a, -b, rng)
        return [f"{a} - {b} = {a} + {-b}", *lines], r
    if a < 0:
        lines, r = _add_columns(-a, b, rng)
        return [f"{a} - {b} = -({-a} + {b})", *lines], -r
    return _magnitude_sub(a, b, rng)


def _step_mul(a: Num, b: Num, rng: random.Random | None) -> tuple[list[str], Num]:
    if not _is_int(a, b):
        r = exact(a * b)
        r = r + 1 if rng is not None else r
        return [f"{fmt(a)} * {fmt(b)} = {fmt(r)}"], r
    a, b = cast(int, a), cast(int, b)  # _is_int said so
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
            assert rng is not None
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
        q = exact(Fraction(a) / Fraction(b))
        q = q + 1 if rng is not None else q
        return [f"{fmt(a)} / {fmt(b)} = {fmt(q)}"], q
    a, b = cast(int, a), cast(int, b)  # _is_int said so
    q, r = divmod(a, b)
    if rng is not None:
        q = q + rng.choice([-1, 1])
    if r:
        return [f"{a} / {b} is not exact; integer division rounds down: {q}, check: {q}*{b}+{r}={a}"], q
    return [f"{a} / {b} = {q}, check: {q}*{b}={a}"], q


STEPS = {"+": _step_add, "-": _step_sub, "*": _step_mul, "/": _step_div}
