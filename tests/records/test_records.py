"""Records round-trip through JSON and their ids are stable and sensitive to what matters."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tracesynth.records import Problem, Sample, Trace, Usage, Verdict, sample_id, sample_ids


def test_problem_id_is_content_hash_and_stable():
    a = Problem(prompt="What is 2+2?", answer="4", source="t")
    b = Problem(prompt="What is 2+2?", answer="4", source="t")
    c = Problem(prompt="What is 2+3?", answer="5", source="t")
    assert a.id == b.id
    assert a.id != c.id
    assert a.id.startswith("p-")


def test_problem_id_given_by_source_is_kept():
    assert Problem(id="gsm8k-17", prompt="q").id == "gsm8k-17"


def test_problem_needs_prompt_or_messages():
    with pytest.raises(ValidationError, match="prompt or messages"):
        Problem(answer="4")


def test_unknown_field_rejected():
    with pytest.raises(ValidationError):
        Problem(prompt="q", questoin="typo")


def test_records_round_trip_json():
    s = Sample(
        id="s-1",
        problem_id="p-1",
        index=0,
        model="m",
        reasoning="think",
        content="\\boxed{4}",
        finish_reason="stop",
        usage=Usage(prompt_tokens=3, completion_tokens=5, reasoning_tokens=2),
        latency_s=0.25,
        cost_usd=1e-6,
        endpoint="http://127.0.0.1:1/v1",
    )
    assert Sample.model_validate_json(s.model_dump_json()) == s
    v = Verdict(sample_id="s-1", problem_id="p-1", verifier="math", status="pass", answer="4")
    t = Trace(sample_id="s-1", problem_id="p-1", prompt="q", verdicts=[v], usage=s.usage)
    assert Trace.model_validate_json(t.model_dump_json()) == t
    assert s.usage.total_tokens == 8


def test_verdict_status_is_three_valued():
    with pytest.raises(ValidationError):
        Verdict(sample_id="s", problem_id="p", verifier="math", status="maybe")


def test_sample_id_depends_on_each_input():
    base = sample_id("p-1", 0, "m", {"temperature": 0.6, "top_p": 0.95}, "tpl")
    assert base == sample_id("p-1", 0, "m", {"top_p": 0.95, "temperature": 0.6}, "tpl")  # key order
    assert base != sample_id("p-2", 0, "m", {"temperature": 0.6, "top_p": 0.95}, "tpl")
    assert base != sample_id("p-1", 1, "m", {"temperature": 0.6, "top_p": 0.95}, "tpl")
    assert base != sample_id("p-1", 0, "m2", {"temperature": 0.6, "top_p": 0.95}, "tpl")
    assert base != sample_id("p-1", 0, "m", {"temperature": 0.7, "top_p": 0.95}, "tpl")
    assert base != sample_id("p-1", 0, "m", {"temperature": 0.6, "top_p": 0.95}, "tpl2")


@pytest.mark.parametrize(
    "model,sampling,tpl",
    [
        ("m", {"temperature": 0.6, "top_p": 0.95, "max_tokens": 4096}, "tpl"),
        (
            "deepseek-ai/DeepSeek-R1",
            {
                "temperature": 0.0,
                "stop": ["</answer>", "\u00e9"],
                "seed": None,
                "extra_body": {"top_k": 20, "chat_template_kwargs": {"enable_thinking": True}},
            },
            "h",
        ),
        ("ünïcode-model", {}, ""),
    ],
)
def test_sample_ids_factory_gives_the_ids_sample_id_gives(model, sampling, tpl):
    """The harvester's fast path must never change an id (resume would pay twice)."""
    make = sample_ids(model, sampling, tpl)
    for problem in ["p-1", "gsm8k-train-0001", 'quote " and \\ backslash', "ünïcode ✓ 中文", "", "x" * 300]:
        for index in (0, 1, 7, 12345):
            assert make(problem, index) == sample_id(problem, index, model, sampling, tpl)


def test_sample_id_ignores_max_tokens():
    """Raising the budget must not re-pay complete samples (truncated ones are re-asked explicitly)."""
    a = sample_id("p", 0, "m", {"temperature": 0.6, "max_tokens": 1000}, "t")
    b = sample_id("p", 0, "m", {"temperature": 0.6, "max_tokens": 32000}, "t")
    assert a == b
