"""The simulated teacher's realistic mistakes: recovered slips, transposed digits, and the audit that reads them.

A slip is written, noticed and corrected inside the trace and the answer stays right (outcome
verification passes it); a transposed answer has every step right and two digits of the result
swapped. Everything is deterministic in (seed, problem, variant), and :func:`audit` recovers
exactly what was planted from the text alone.
"""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter

import httpx
import pytest
import reasoning_gym
from pydantic import ValidationError

from tracesynth.sim import SimOptions, SimTeacher
from tracesynth.sim.solver import Solver, audit

BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
SLIP = re.compile(r"(\d+(?:[+\-*]\d+)+)=(-?\d+), hold on, \1 is (-?\d+), not \2")


def sums(n: int, seed: int = 1, op: str = "+") -> list[str]:
    ds = reasoning_gym.create_dataset(
        "basic_arithmetic",
        size=n,
        seed=seed,
        min_terms=2,
        max_terms=2,
        min_digits=2,
        max_digits=2,
        operators=[op],
        allow_parentheses=False,
        allow_negation=False,
    )
    return [e["question"] for e in ds]


def transposable(answer: str) -> bool:
    """Two adjacent different digits whose swap does not start the number with 0."""
    return any(a != b and not (i == 0 and b == "0") for i, (a, b) in enumerate(itertools.pairwise(answer)))


def boxed(text: str) -> str:
    return BOXED.findall(text)[-1]


def test_defaults_plant_nothing_new():
    plain, same = Solver(seed=3, wrong_rate=0.3), Solver(seed=3, wrong_rate=0.3, slip_rate=0.0, mistakes=["step"])
    for q in sums(200):
        a, b = plain.solve(q), same.solve(q)
        assert (a.reasoning, a.content) == (b.reasoning, b.content)
        assert a.planted in ("none", "step") and (a.planted == "step") == a.wrong
        assert "hold on" not in a.reasoning


def test_rates_and_kinds_over_3000_problems():
    solver = Solver(seed=7, wrong_rate=0.25, slip_rate=0.15, mistakes=["step", "transposed"])
    kinds = Counter(solver.solve(q).planted for q in sums(3000, seed=2))
    wrong = kinds["step"] + kinds["transposed"]
    # binomial(3000, p): sd ~24 (0.25) and ~20 (0.15); 4 sd tolerance
    assert abs(wrong - 750) < 96, kinds
    assert abs(kinds["slip"] - 450) < 80, kinds
    # transposition needs two different digits in the sum (not 77, not 110 into 011): the rest fall back to a step
    assert kinds["transposed"] > 250 and kinds["step"] > kinds["transposed"] / 2, kinds


def test_a_recovered_slip_keeps_the_answer_right_and_undoes_to_the_true_trace():
    solver, clean = Solver(seed=4, slip_rate=1.0), Solver()
    for q in sums(300, seed=3) + sums(100, seed=4, op="-"):
        sol, true = solver.solve(q), clean.solve(q)
        assert sol.planted == "slip" and not sol.wrong and sol.answer == sol.truth == true.answer
        assert boxed(sol.content) == boxed(true.content)
        (m,) = SLIP.finditer(sol.reasoning)  # exactly one slip, noticed and corrected in place
        wrong, right = int(m.group(2)), int(m.group(3))
        assert abs(wrong - right) == 1 or (right == 0 and wrong == 1)
        assert eval(m.group(1)) == right  # the correction is the true value
        undone = sol.reasoning.replace(m.group(0) + "; ", f"{m.group(1)}={right}, ").replace(
            m.group(0), f"{m.group(1)}={right}"
        )
        assert undone == true.reasoning
        assert audit(sol.reasoning, sol.content) == "slip"


def test_a_transposed_answer_has_right_work_and_swapped_digits():
    solver, clean = Solver(seed=5, wrong_rate=1.0, mistakes=["transposed"]), Solver()
    seen = 0
    for q in sums(300, seed=5):
        sol, true = solver.solve(q), clean.solve(q)
        assert sol.wrong and boxed(sol.content) != true.answer
        if sol.planted != "transposed":
            assert sol.planted == "step" and not transposable(true.answer)
            continue
        seen += 1
        got, want = boxed(sol.content), true.answer
        assert sorted(got) == sorted(want) and got[0] != "0"
        assert sum(a != b for a, b in zip(got, want, strict=True)) == 2
        # every column line is the true one; only the two result lines differ
        assert sol.reasoning.splitlines()[:-2] == true.reasoning.splitlines()[:-2]
        assert audit(sol.reasoning, sol.content) == "transposed"
    assert seen > 250


def test_audit_recovers_exactly_what_was_planted():
    solver = Solver(seed=11, wrong_rate=0.3, slip_rate=0.2, mistakes=["step", "transposed"])
    qs = sums(1500, seed=6) + sums(300, seed=7, op="-")
    expect = {"none": "clean", "slip": "slip", "step": "step", "transposed": "transposed"}
    for i, q in enumerate(qs):
        sol = solver.solve(q, (None, i % 2))
        assert audit(sol.reasoning, sol.content) == expect[sol.planted], (sol.planted, sol.reasoning)


def test_audit_reads_other_texts():
    true = Solver().solve("Calculate 47 + 38.")
    assert audit(true.reasoning, true.content) == "clean"
    assert audit("I cannot do this.", "The answer is \\boxed{85}.") == "not_arithmetic"
    assert audit(None, None) == "not_arithmetic"
    assert audit(true.reasoning, "The answer is \\boxed{84}.") == "wrong"  # right work, another answer
    assert audit(true.reasoning, "no boxed answer") == "wrong"
    garbled = true.reasoning.replace("write 5, carry 1", "write 5, carry 1 1")
    assert audit(garbled, true.content) == "other"  # right answer, trace not the true one
    broken = true.reasoning.replace("7+8+0=15", "7+8+0=14")
    assert audit(broken, "The answer is \\boxed{75}.") == "step"


def test_mistakes_are_deterministic_per_problem_and_variant_not_order():
    qs = sums(120, seed=8)
    make = lambda seed: Solver(seed=seed, wrong_rate=0.3, slip_rate=0.3, mistakes=["step", "transposed"])  # noqa: E731
    first = [make(1).solve(q, (None, i % 2)) for i, q in enumerate(qs)]
    order = list(range(len(qs)))
    random.Random(0).shuffle(order)
    again = make(1)
    shuffled = {i: again.solve(qs[i], (None, i % 2)) for i in order}
    assert [(s.reasoning, s.planted) for s in first] == [
        (shuffled[i].reasoning, shuffled[i].planted) for i in range(len(qs))
    ]
    other = [make(2).solve(q, (None, i % 2)).reasoning for i, q in enumerate(qs)]
    assert other != [s.reasoning for s in first]


def test_options_validate_rates_and_kinds():
    assert SimOptions(mistakes="step, transposed").mistakes == ["step", "transposed"]
    with pytest.raises(ValidationError, match="wrong_rate \\+ slip_rate"):
        SimOptions(wrong_rate=0.7, slip_rate=0.4)
    with pytest.raises(ValidationError):
        SimOptions(mistakes=["typo"])
    with pytest.raises(ValidationError):
        SimOptions(mistakes=[])


def test_the_server_plants_what_its_options_say():
    q = "Calculate 47 + 38.\n\nPlease reason step by step, and put your final answer within \\boxed{}."
    body = {"model": "m", "messages": [{"role": "user", "content": q}]}
    with SimTeacher(slip_rate=1.0, seed=2) as sim:
        r = httpx.post(f"{sim.base_url}/chat/completions", json=body, timeout=10).json()
        msg = r["choices"][0]["message"]
        assert "hold on" in msg["reasoning_content"] and boxed(msg["content"]) == "85"
    with SimTeacher(wrong_rate=1.0, mistakes=["transposed"], seed=2) as sim:
        msg = httpx.post(f"{sim.base_url}/chat/completions", json=body, timeout=10).json()["choices"][0]["message"]
        assert boxed(msg["content"]) == "58"
