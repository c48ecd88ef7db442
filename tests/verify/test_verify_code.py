"""The code verifier: stdin/stdout, function-call and test-code forms, with right, wrong, crashing
and slow solutions (each run in the sandbox)."""

from __future__ import annotations

import json

import pytest
from repo import DATA

from tracesynth.records import Problem, Sample
from tracesynth.stages.verify.registry import score
from tracesynth.stages.verify.verifiers.code import plan_tests, same_output

FAST = {"code": {"time_limit_s": 1}}


def answer(code: str, lang: str = "python") -> Sample:
    content = f"Here is my solution.\n\n```{lang}\n{code}\n```\n"
    return Sample(id="s-1", problem_id="p-1", index=0, model="m", content=content, reasoning="think")


def run(problem: Problem, code: str, options: dict | None = None) -> tuple[str, str, str]:
    (v,) = score(problem, answer(code), ["code"], options or FAST)
    return v.status, v.tag, v.reason


STDIO = Problem(
    id="p-1",
    prompt="Read two integers, print their sum.",
    tests=[
        {"input": "1 2\n", "output": "3\n"},
        {"input": "10 -4\n", "output": "6"},
        {"input": "5 5", "output": "10\n\n"},
    ],
    domain="code",
)


def test_stdio_right() -> None:
    assert run(STDIO, "a, b = map(int, input().split())\nprint(a + b)")[:2] == ("pass", "")


def test_stdio_right_with_trailing_spaces() -> None:
    assert run(STDIO, "a, b = map(int, input().split())\nprint(a + b, end='  \\n\\n')")[0] == "pass"


def test_stdio_wrong() -> None:
    status, tag, reason = run(STDIO, "a, b = map(int, input().split())\nprint(a - b)")
    assert (status, tag) == ("fail", "mismatch")
    assert "test 1/3" in reason and "expected '3', got '-1'" in reason


def test_stdio_wrong_on_a_later_test_records_partial_progress() -> None:
    p = STDIO.model_copy(update={"tests": [*STDIO.tests, {"input": "0 0", "output": "1"}]})
    (v,) = score(p, answer("a, b = map(int, input().split())\nprint(a + b)"), ["code"], FAST)
    assert (v.status, v.tag) == ("fail", "mismatch") and "test 4/4" in v.reason
    assert v.details["passed"] == 3 and v.score == pytest.approx(0.75)


def test_stdio_crashing() -> None:
    status, tag, reason = run(STDIO, "a, b = map(int, input().split())\nprint(a // 0)")
    assert (status, tag) == ("fail", "runtime_error") and "ZeroDivisionError" in reason


def test_stdio_slow() -> None:
    status, tag, reason = run(STDIO, "while True:\n    pass")
    assert (status, tag) == ("fail", "timeout") and "limit" in reason


def test_apps_style_input_output() -> None:
    p = Problem(id="p-1", prompt="double", tests={"inputs": ["2\n", "5\n"], "outputs": ["4\n", "10\n"]})
    assert run(p, "print(2 * int(input()))")[0] == "pass"
    assert run(p, "print(int(input()) + 2)")[:2] == ("fail", "mismatch")


FUNC = Problem(
    id="p-1",
    prompt="Write add(a, b).",
    tests={"fn_name": "add", "inputs": [[1, 2], [-1, 1], [[1], [2]]], "outputs": [3, 0, [1, 2]]},
)


def test_function_right() -> None:
    assert run(FUNC, "def add(a, b):\n    return a + b")[0] == "pass"


def test_function_wrong() -> None:
    status, tag, reason = run(FUNC, "def add(a, b):\n    return a - b")
    assert (status, tag) == ("fail", "mismatch") and "case 1" in reason


def test_function_crashing() -> None:
    status, tag, reason = run(FUNC, "def add(a, b):\n    return a + b + undefined_name")
    assert (status, tag) == ("fail", "runtime_error") and "NameError" in reason


def test_function_slow() -> None:
    assert run(FUNC, "def add(a, b):\n    while True:\n        pass")[:2] == ("fail", "timeout")


def test_livecodebench_functional_pairs() -> None:
    p = Problem(
        id="p-1",
        prompt="f",
        metadata={"fn_name": "f"},
        tests=[{"input": "[1, 2]\n3", "output": "6", "testtype": "functional"}],
    )
    assert run(p, "def f(xs, k):\n    return sum(xs) + k")[0] == "pass"
    assert plan_tests(p)[0] == "functional"


ASSERTS = Problem(id="p-1", prompt="Write is_even(n).", tests=["assert is_even(2)", "assert not is_even(3)"])


def test_assert_style_right_and_wrong() -> None:
    assert run(ASSERTS, "def is_even(n):\n    return n % 2 == 0")[0] == "pass"
    assert run(ASSERTS, "def is_even(n):\n    return True")[:2] == ("fail", "mismatch")


def test_exiting_before_the_tests_is_not_a_pass() -> None:
    status, tag, reason = run(ASSERTS, "import sys\nsys.exit(0)\ndef is_even(n):\n    return False")
    assert (status, tag) == ("fail", "mismatch") and "did not run to the end" in reason


def test_no_code_block_and_no_tests() -> None:
    s = Sample(id="s-1", problem_id="p-1", index=0, model="m", content="def f(): pass", reasoning="r")
    (v,) = score(ASSERTS, s, ["code"])
    assert (v.status, v.tag) == ("fail", "no_answer")
    (v,) = score(Problem(id="p-1", prompt="q"), answer("print(1)"), ["code"])
    assert (v.status, v.tag) == ("unverifiable", "no_reference")


def test_last_python_block_is_the_answer() -> None:
    content = (
        "First try:\n```python\nprint(0)\n```\nOutput:\n```text\n0\n```\nFixed:\n```python\n"
        "a, b = map(int, input().split())\nprint(a + b)\n```"
    )
    s = Sample(id="s-1", problem_id="p-1", index=0, model="m", content=content, reasoning="r")
    assert score(STDIO, s, ["code"], FAST)[0].status == "pass"


def _humaneval() -> list[dict]:
    """The shipped HumanEval (data/ is part of the repository: a missing file is a failure, not a skip)."""
    with (DATA / "humaneval.jsonl").open() as fh:
        return [json.loads(line) for line in fh]


@pytest.mark.parametrize("index", [0, 2, 11])
def test_humaneval_full_function_body_only_and_wrong(index: int) -> None:
    row = _humaneval()[index]
    p = Problem(
        id=row["task_id"],
        prompt=row["prompt"],
        tests=row["test"],
        domain="code",
        metadata={"entry_point": row["entry_point"]},
    )
    full = row["prompt"] + row["canonical_solution"]
    assert run(p, full, {"code": {"time_limit_s": 3}})[0] == "pass"  # whole function, imports included
    body_only = row["canonical_solution"]
    assert run(p, body_only, {"code": {"time_limit_s": 3}})[0] == "pass"  # HumanEval completion style
    wrong = f"def {row['entry_point']}(*args, **kwargs):\n    return None"
    assert run(p, wrong, {"code": {"time_limit_s": 3}})[:2] == ("fail", "mismatch")


@pytest.mark.parametrize(
    ("got", "want", "mode", "same"),
    [
        ("3\n", "3", "lines", True),
        ("3  \n\n", "3\n", "lines", True),
        ("1 2\n3", "1 2 3", "lines", False),
        ("1 2\n3", "1 2 3", "tokens", True),
        ("0.3333333", "0.333333", "tokens", False),
        ("3\n", "3", "exact", False),
    ],
)
def test_output_comparison(got: str, want: str, mode: str, same: bool) -> None:
    assert same_output(got, want, mode) is same


def test_float_tolerance() -> None:
    assert same_output("0.3333333", "0.333333", "tokens", float_tol=1e-5)
