"""The math verifier: a table of (gold, answer) pairs with the verdict each must get, box policies,
region rules (no last-number fallback unless asked), unparseable gold, and timeouts."""

from __future__ import annotations

import time

import pytest

from tracesynth.records import Problem, Sample
from tracesynth.stages.verify.registry import score

P, F, U = "pass", "fail", "unverifiable"

# (gold, the sample's answer text, status, tag) — status "pass" has no tag
TABLE = [
    # equivalent forms
    ("\\frac{1}{2}", "so the answer is \\boxed{0.5}", P, ""),
    ("\\frac{1}{2}", "\\boxed{\\dfrac{1}{2}}", P, ""),
    ("\\frac{1}{2}", "\\boxed{1/2}", P, ""),
    ("\\frac{1}{2}", "\\boxed{\\frac{2}{4}}", P, ""),
    ("0.5", "\\boxed{\\frac12}", P, ""),
    ("\\sqrt{2}", "\\boxed{2^{1/2}}", P, ""),
    ("2\\sqrt{2}", "\\boxed{\\sqrt{8}}", P, ""),
    ("x^2+2x+1", "\\boxed{(x+1)^2}", P, ""),
    ("\\pi", "\\boxed{\\pi}", P, ""),
    ("\\frac{\\pi}{2}", "\\boxed{\\pi/2}", P, ""),
    ("-3", "\\boxed{-3}", P, ""),
    ("3", "\\boxed{3.0}", P, ""),
    ("\\frac{1}{3}", "\\boxed{0.333333}", P, ""),  # numeric equality to 6 places (math-verify's float_rounding)
    ("y = 2x + 1", "\\boxed{y=2x+1}", P, ""),
    ("x = 5", "\\boxed{5}", P, ""),  # an assignment in the gold may be answered by its value
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\boxed{\\begin{pmatrix}1\\\\2\\end{pmatrix}}", P, ""),
    ("e", "\\boxed{e}", P, ""),
    ("10", "\\boxed{\\text{10}}", P, ""),
    # near misses
    ("\\frac{1}{2}", "\\boxed{\\frac{1}{3}}", F, "mismatch"),
    ("\\frac{1}{3}", "\\boxed{0.33}", F, "mismatch"),
    ("2\\sqrt{2}", "\\boxed{2\\sqrt{3}}", F, "mismatch"),
    ("x^2+2x+1", "\\boxed{(x+1)^3}", F, "mismatch"),
    ("-3", "\\boxed{3}", F, "mismatch"),
    ("204", "\\boxed{205}", F, "mismatch"),
    ("\\pi", "\\boxed{3.14}", F, "mismatch"),
    ("y = 2x + 1", "\\boxed{y = 2x - 1}", F, "mismatch"),
    # AIME style three digits
    ("025", "\\boxed{25}", P, ""),
    ("25", "\\boxed{025}", P, ""),
    ("025", "\\boxed{26}", F, "mismatch"),
    # intervals
    ("[1, 2)", "\\boxed{[1,2)}", P, ""),
    ("[1, 2)", "\\boxed{[1,2]}", F, "mismatch"),
    ("(-\\infty, 3]", "\\boxed{(-\\infty,3]}", P, ""),
    ("(-\\infty, 3]", "\\boxed{(-\\infty,3)}", F, "mismatch"),
    ("(0,1) \\cup (2,3)", "\\boxed{(0,1)\\cup(2,3)}", P, ""),
    # sets vs ordered tuples
    ("\\{1, 2\\}", "\\boxed{\\{2, 1\\}}", P, ""),  # sets ignore order
    ("1, 2", "\\boxed{2, 1}", P, ""),  # an unbracketed list is a set
    ("(1, 2)", "\\boxed{(2, 1)}", F, "mismatch"),  # an ordered pair does not
    ("(1, 2)", "\\boxed{(1, 2)}", P, ""),
    ("(3, \\frac{\\pi}{2})", "\\boxed{\\left(3, \\frac{\\pi}{2}\\right)}", P, ""),
    ("\\{1, 2, 3\\}", "\\boxed{\\{1, 2\\}}", F, "mismatch"),
    # units
    ("5 \\text{ cm}", "\\boxed{5}", P, ""),
    ("5", "\\boxed{5\\text{ cm}}", P, ""),
    ("18", "\\boxed{\\$18}", P, ""),
    ("90^\\circ", "\\boxed{90}", P, ""),
    ("5 \\text{ cm}", "\\boxed{6 \\text{ cm}}", F, "mismatch"),
    # percentages (math-verify treats 10% as 10 and as 0.1)
    ("10\\%", "\\boxed{10\\%}", P, ""),
    ("10\\%", "\\boxed{10}", P, ""),
    ("10\\%", "\\boxed{0.1}", P, ""),
    ("10\\%", "\\boxed{11\\%}", F, "mismatch"),
    # thousands separators
    ("1,000", "\\boxed{1000}", P, ""),
    ("1000", "\\boxed{1{,}000}", P, ""),
    ("1000", "\\boxed{1,000}", P, ""),
    ("1234567", "\\boxed{1,234,567}", P, ""),
    ("1000", "\\boxed{1,001}", F, "mismatch"),
    # LaTeX vs plain text
    ("\\frac{3}{4}", "The final answer is 3/4", P, ""),
    ("\\frac{3}{4}", "The final answer is $\\frac{3}{4}$. I hope it is correct.", P, ""),
    ("\\sqrt{3}", "Final Answer: $\\sqrt{3}$", P, ""),
    ("12", "**Final answer:** 12", P, ""),
    ("12", "The final answer is 13.", F, "mismatch"),
    ("\\text{(B)}", "\\boxed{B}", P, ""),
    ("\\text{(B)}", "\\boxed{\\textbf{(B)}}", P, ""),
    ("\\text{(B)}", "\\boxed{(C)}", F, "mismatch"),
    ("\\text{Evelyn}", "\\boxed{\\text{Evelyn}}", P, ""),
    # multiple boxes: the last one wins by default
    ("3", "first \\boxed{2}, corrected: \\boxed{3}", P, ""),
    ("3", "\\boxed{3} then I changed my mind \\boxed{2}", F, "mismatch"),
    # no answer / no final-answer region: no last-number fallback by default
    ("3", "the result is 3", F, "no_answer"),
    ("3", "", F, "no_answer"),
    ("3", "we get 1+2 = 3 so yes", F, "no_answer"),
    # unparseable prediction / gold
    ("3", "\\boxed{}", F, "no_answer"),
    ("3", "\\boxed{\\frac{}{}}", U, "unparseable_answer"),
    ("{{", "\\boxed{3}", U, "unparseable_gold"),
    ("\\text{}", "\\boxed{3}", U, "unparseable_gold"),
]


def sample(content: str | None, reasoning: str | None = "thinking", **kw) -> Sample:
    return Sample(id="s-1", problem_id="p-1", index=0, model="m", content=content, reasoning=reasoning, **kw)


def problem(answer: str | None) -> Problem:
    return Problem(id="p-1", prompt="q", answer=answer)


def test_table_has_at_least_60_pairs() -> None:
    assert len(TABLE) >= 60


@pytest.mark.parametrize(("gold", "content", "status", "tag"), TABLE, ids=[f"{i}" for i in range(len(TABLE))])
def test_math_table(gold: str, content: str, status: str, tag: str) -> None:
    (v,) = score(problem(gold), sample(content), ["math"], {"math": {"timeout_s": 10}})
    assert (v.status, v.tag) == (status, tag), v
    assert v.verifier == "math" and v.sample_id == "s-1" and v.problem_id == "p-1"
    if status != "pass":
        assert v.reason


def test_answer_is_taken_from_content_not_reasoning() -> None:
    s = sample("I could not finish.", reasoning="maybe \\boxed{3}")
    (v,) = score(problem("3"), s, ["math"])
    assert (v.status, v.tag) == ("fail", "no_answer")


def test_text_after_a_leftover_think_tag_is_the_answer() -> None:
    s = sample("<think>try \\boxed{2}</think> so \\boxed{3}", reasoning=None)
    assert score(problem("3"), s, ["math"])[0].status == "pass"


def test_last_number_fallback_only_when_asked() -> None:
    s = sample("adding them up gives 42.")
    assert score(problem("42"), s, ["math"])[0].tag == "no_answer"
    (v,) = score(problem("42"), s, ["math"], {"math": {"fallback": "last_number"}})
    assert v.status == "pass" and v.details["region"] == "last_number"
    (v,) = score(problem("41"), s, ["math"], {"math": {"fallback": "last_number"}})
    assert (v.status, v.tag) == ("fail", "mismatch")


@pytest.mark.parametrize(
    ("policy", "content", "status"),
    [
        ("last", "\\boxed{2} \\boxed{3}", "pass"),
        ("first", "\\boxed{2} \\boxed{3}", "fail"),
        ("first", "\\boxed{3} \\boxed{2}", "pass"),
        ("any", "\\boxed{2} \\boxed{3}", "pass"),
        ("all", "\\boxed{2} \\boxed{3}", "fail"),
        ("all", "\\boxed{3} and again \\boxed{3.0}", "pass"),
        ("join", "\\boxed{2} \\boxed{3}", "fail"),
    ],
)
def test_box_policies(policy: str, content: str, status: str) -> None:
    (v,) = score(problem("3"), sample(content), ["math"], {"math": {"boxes": policy}})
    assert v.status == status, v


def test_join_policy_reads_several_boxes_as_one_set() -> None:
    (v,) = score(problem("2, 3"), sample("x = \\boxed{2} or x = \\boxed{3}"), ["math"], {"math": {"boxes": "join"}})
    assert v.status == "pass"
    (v,) = score(problem("2, 3"), sample("x = \\boxed{2} or x = \\boxed{3}"), ["math"])
    assert v.status == "fail"


def test_bad_policy_is_unverifiable_with_the_error() -> None:
    (v,) = score(problem("3"), sample("\\boxed{3}"), ["math"], {"math": {"boxes": "middle"}})
    assert (v.status, v.tag) == ("unverifiable", "verifier_error")
    assert "boxes must be one of" in v.reason


def test_no_reference_answer() -> None:
    (v,) = score(problem(None), sample("\\boxed{3}"), ["math"])
    assert (v.status, v.tag) == ("unverifiable", "no_reference")


def test_pathological_expression_times_out_instead_of_hanging() -> None:
    t0 = time.monotonic()
    (v,) = score(problem("2"), sample("\\boxed{2^{2^{2^{2^{30}}}}}"), ["math"], {"math": {"timeout_s": 0.5}})
    assert (v.status, v.tag) == ("unverifiable", "timeout")
    assert time.monotonic() - t0 < 30


def test_verdict_records_the_extracted_answer_and_gold() -> None:
    (v,) = score(problem("\\frac{1}{2}"), sample("thus \\boxed{\\frac{2}{4}}."), ["math"])
    assert v.answer == "\\frac{2}{4}"
    assert v.details["region"] == "boxed" and v.details["gold"]
    assert v.score == 1.0
