"""The simulated teacher's reasoning: traces that verify, mistakes at the configured rate, tokens, cuts.

Calls the solver and engine directly (no HTTP) so thousands of problems stay fast; ground truth
comes from reasoning-gym's own answers and scorers, not from the simulator.
"""

from __future__ import annotations

import json
import random
import re
from fractions import Fraction

import pytest
import reasoning_gym

from tracesynth.errors import SourceError
from tracesynth.sim import arith, engine
from tracesynth.sim.answer_key import AnswerKey
from tracesynth.sim.solver import Solver, find_expression, user_text_of_prompt
from tracesynth.sim.tokens import TOKEN_RE, count_chat_prompt, count_tokens, cut_after_tokens

BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
TEMPLATE = "{q}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."


def boxed(text: str) -> str | None:
    found = BOXED.findall(text)
    return found[-1] if found else None


def gym(name: str, size: int, seed: int = 7, **config):
    return reasoning_gym.create_dataset(name, size=size, seed=seed, **config)


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("basic_arithmetic", {}),
        ("basic_arithmetic", {"format_style": "natural", "whitespace": "random"}),
        ("chain_sum", {}),
        ("chain_sum", {"min_digits": 3, "max_digits": 5}),
        ("products", {}),
    ],
)
def test_correct_traces_verify_against_reasoning_gym(name, config):
    ds = gym(name, 150, **config)
    solver = Solver(seed=3, wrong_rate=0.0)
    for entry in ds:
        sol = solver.solve(TEMPLATE.format(q=entry["question"]))
        assert sol.kind == "arithmetic", entry["question"]
        answer = boxed(sol.content)
        assert answer == entry["answer"], (entry["question"], sol.content)
        assert ds.score_answer(answer, entry) == 1.0
        assert not sol.wrong and sol.answer == sol.truth


_FACT = [
    (
        re.compile(r"^\s*(\d)\+(\d)\+(\d)=(\d+), write (\d), carry (\d)$"),
        lambda a, b, c, s, w, k: a + b + c == s and w == s % 10 and k == s // 10,
    ),
    (
        re.compile(r"^\s*(\d)-(\d)-(\d)=(-?\d+), (?:add 10: \d+, )?write (\d), borrow (\d)$"),
        lambda a, b, c, d, w, k: a - b - c == d and w == d % 10 and k == (d < 0),
    ),
    (re.compile(r"^\s*(\d+)\*(\d)=(\d+)(?:, shifted (\d+): (\d+))?$"), None),
    (re.compile(r"^\s*(\d+)\+(\d+)=(\d+)$"), lambda a, b, s: a + b == s),
    (re.compile(r"^\s*so (.+) = (-?\d+(?:/\d+)?)$"), None),
]


def check_line(line: str) -> bool | None:
    """True/False when ``line`` states a checkable fact, None otherwise."""
    for pattern, rule in _FACT:
        m = pattern.match(line)
        if not m:
            continue
        if pattern.pattern.startswith("^\\s*so"):
            return Fraction(arith.Evaluator().run(arith.parse(m.group(1)))) == Fraction(m.group(2))
        if rule is None:  # partial product line
            x, d, p, shift, shifted = m.groups()
            ok = int(x) * int(d) == int(p)
            return ok and (shift is None or int(p) * 10 ** int(shift) == int(shifted))
        return rule(*(int(g) for g in m.groups()))
    return None


def test_every_written_step_of_a_correct_trace_is_true():
    solver = Solver(seed=5)
    checked = 0
    for name in ("basic_arithmetic", "chain_sum", "products"):
        for entry in gym(name, 60, seed=11):
            for line in solver.solve(entry["question"]).reasoning.splitlines():
                verdict = check_line(line)
                if verdict is not None:
                    assert verdict, line
                    checked += 1
    assert checked > 1000


def test_trace_shapes_are_regular():
    sol = Solver().solve("Calculate 4782 + 395.")
    assert "2+5+0=7, write 7, carry 0" in sol.reasoning
    assert "8+9+0=17, write 7, carry 1" in sol.reasoning
    sol = Solver().solve("Solve the following multiplication: 914 * 807. Give only the result as your final answer.")
    assert "914*8=7312, shifted 2: 731200" in sol.reasoning
    assert sol.content.endswith("\\boxed{737598}.")


def test_wrong_rate_statistics_over_2000_seeded_problems():
    ds = list(gym("chain_sum", 1000, seed=1)) + list(gym("products", 1000, seed=2))
    solver = Solver(seed=9, wrong_rate=0.25)
    wrong = 0
    for entry in ds:
        sol = solver.solve(entry["question"])
        answer = boxed(sol.content)
        assert answer is not None
        is_wrong = answer != entry["answer"]
        assert is_wrong == sol.wrong  # the flag says the truth, and every mistake reaches the answer
        wrong += is_wrong
    # binomial(2000, 0.25): sd ~ 19.4; 4 sd tolerance
    assert abs(wrong - 500) < 78, wrong


def test_mistakes_are_inside_the_trace_and_plausible():
    solver = Solver(seed=2, wrong_rate=1.0)
    kinds = set()
    for entry in gym("basic_arithmetic", 200, seed=4):
        sol = solver.solve(entry["question"])
        assert sol.wrong and boxed(sol.content) != entry["answer"]
        bad = [line for line in sol.reasoning.splitlines() if check_line(line) is False]
        assert bad, sol.reasoning  # a false step is written down, not just a wrong final line
        for line in bad:
            kinds.add(
                "carry" if "carry" in line else "borrow" if "borrow" in line else "product" if "*" in line else "other"
            )
    assert {"carry", "borrow", "product"} <= kinds


def test_determinism_is_per_problem_and_variant_not_order():
    qs = [e["question"] for e in gym("chain_sum", 50, seed=3)]
    a = [Solver(seed=1, wrong_rate=0.5).solve(q, (None, i % 3)) for i, q in enumerate(qs)]
    order = list(range(len(qs)))
    random.Random(0).shuffle(order)
    s = Solver(seed=1, wrong_rate=0.5)
    b = {i: s.solve(qs[i], (None, i % 3)) for i in order}
    assert [x.content for x in a] == [b[i].content for i in range(len(qs))]
    other = [Solver(seed=2, wrong_rate=0.5).solve(q, (None, i % 3)).content for i, q in enumerate(qs)]
    assert other != [x.content for x in a]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("What is the sum of 12 and 30?", 42),
        ("Subtract 5 from 12.", 7),
        ("Multiply 21 by 3.", 63),
        ("What is 7 × 8?", 56),
        ("Compute 120 divided by 4.", 30),
        ("What is 5 minus 9?", -4),
        ("Evaluate: (56+-33)-84.", -61),
        ("Calculate ( ( -9 - 6 ) - -( -3 * 4 ) ) * 2 / 2.", -27),
    ],
)
def test_phrasings_are_understood(text, value):
    assert arith.Evaluator().run(find_expression(text)) == value


@pytest.mark.parametrize(
    "text",
    [
        "What is 3.5 + 2?",
        "y - 3 * 2 = 10",
        "x^2 + 3 = 7",
        "Problem 3: 4 + 5",
        "Name the capital of France.",
        "Solve for x: 2x + 3 = 7",
        "What is the remainder of 2004 divided by 12?",
    ],
)
def test_non_arithmetic_is_not_guessed(text):
    assert find_expression(text) is None
    sol = Solver().solve(text)
    assert sol.kind == "unknown" and sol.answer is None and "\\boxed" not in sol.content


def write_key(tmp_path, rows) -> str:
    path = tmp_path / "key.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_answer_key_answers_and_misses_plausibly(tmp_path):
    rows = [
        {"id": f"q{i}", "question": f"How many legs do {i} spiders have in total?", "answer": str(8 * i)}
        for i in range(1, 401)
    ]
    rows.append({"prompt": "Which is a prime? (A) 4 (B) 7", "answer": "B"})
    key = AnswerKey.load(write_key(tmp_path, rows))
    solver = Solver(seed=4, wrong_rate=0.3, answer_key=key)
    wrong = 0
    for r in rows[:400]:
        sol = solver.solve(TEMPLATE.format(q=r["question"]))
        assert sol.kind == "answer_key"
        wrong += boxed(sol.content) != r["answer"]
        if sol.wrong:
            assert abs(int(boxed(sol.content)) - int(r["answer"])) == 1
    assert 70 < wrong < 170
    choice = Solver(seed=1, wrong_rate=1.0, answer_key=key).solve("Which is a prime? (A) 4 (B) 7")
    assert boxed(choice.content) == "C"


def test_answer_key_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "k.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n{"question": "b"}\n')
    with pytest.raises(SourceError, match=r"k\.jsonl:2: no 'answer'"):
        AnswerKey.load(path)
    path.write_text("{nope\n")
    with pytest.raises(SourceError, match=r"k\.jsonl:1: not JSON"):
        AnswerKey.load(path)


def test_tokenizer_fast_path_matches_the_documented_regex():
    rng = random.Random(0)
    alphabet = [chr(i) for i in range(128)] + ["é", "→", "\u00a0", "数"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30)))
        assert count_tokens(text) == len(TOKEN_RE.findall(text)), repr(text)
    assert count_tokens("12+345=357") == 10
    assert count_tokens("Add the columns.") == 4
    assert cut_after_tokens("Add the columns.", 2) == "Add the"
    assert count_chat_prompt([{"role": "user", "content": "Add 2"}]) == 3 + 4 + 2


def test_max_tokens_cut_is_exact_and_stop_wins_when_earlier():
    sol = Solver().solve("Calculate 4782 + 395.")
    full = engine.finish(engine.chat_pieces(sol, "reasoning_content"), None, [])
    assert full.finish_reason == "stop"
    assert full.completion_tokens == count_tokens(sol.reasoning) + count_tokens(sol.content)
    for budget in (1, 7, full.reasoning_tokens, full.reasoning_tokens + 2, full.completion_tokens - 1):
        c = engine.finish(engine.chat_pieces(sol, "think"), budget, [])
        assert c.finish_reason == "length" and c.completion_tokens == budget
        assert count_tokens(c.fields["content"]) == budget
    c = engine.finish(engine.chat_pieces(sol, "reasoning"), 10_000, ["carry 1"])
    assert c.finish_reason == "stop" and c.fields["reasoning"].endswith("8+9+0=17, write 7, ")
    assert "content" not in c.fields


def test_budget_forcing_continuation_rechecks_and_can_fix_a_mistake():
    prompt_head = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n<think>\n"
    solver = Solver(seed=0, wrong_rate=1.0)
    fixed = 0
    for entry in gym("chain_sum", 40, seed=8):
        head = prompt_head.format(q=entry["question"])
        assert user_text_of_prompt(head) == entry["question"]
        sol = solver.solve(entry["question"])
        first = engine.continuation(sol, head)
        assert first.startswith(sol.reasoning) and boxed(first) == sol.answer
        more = engine.continuation(sol, head + sol.reasoning + "\nWait")
        assert "Wait" not in more and boxed(more) is not None
        fixed += boxed(more) == entry["answer"]
        again = engine.continuation(sol, head + sol.reasoning + "\nWait" + more.split("</think>")[0] + "Wait")
        assert "already checked" in again
        assert engine.continuation(sol, head + sol.reasoning[:40]) == sol.reasoning[40:] + engine.CLOSE + sol.content
        assert engine.continuation(sol, head + sol.reasoning + "\n</think>\n\n") == sol.content
    assert 8 <= fixed <= 32  # about half the mistakes are caught on re-check
