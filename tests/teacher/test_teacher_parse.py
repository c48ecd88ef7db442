"""Reasoning / answer / usage extraction on recorded response bodies of every server we support."""

from __future__ import annotations

import json

import pytest
from openai.types.chat import ChatCompletion
from repo import FIXTURES as TEST_FIXTURES

from tracesynth.teacher.parse import (
    MalformedResponse,
    normalise_message,
    parse_chat,
    parse_completion,
    parse_usage,
    split_reasoning,
)
from tracesynth.thinking import reply_parts, split_reasoning_text, split_think, split_undelimited

FIXTURES = TEST_FIXTURES / "responses"
CASES = json.loads((FIXTURES / "cases.json").read_text())


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_extraction(name: str) -> None:
    body = json.loads((FIXTURES / name).read_text())
    exp = CASES[name]
    choices, usage, model = parse_chat(body)
    assert model == body["model"]
    (c,) = choices
    assert c.reasoning == exp["reasoning"]
    assert c.content == exp["content"]
    assert c.finish_reason == exp["finish_reason"]
    assert c.flags == exp["flags"]
    assert [usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens, usage.cached_tokens] == exp["usage"]


@pytest.mark.parametrize("name", ["vllm_reasoning_content.json", "deepseek_api.json", "openrouter.json"])
def test_sdk_objects_keep_reasoning_as_extra_field(name: str) -> None:
    """The openai SDK keeps reasoning_content / reasoning as extra fields (model_extra); we read them."""
    body = json.loads((FIXTURES / name).read_text())
    completion = ChatCompletion.model_validate(body)
    message = completion.choices[0].message
    extra_key = "reasoning_content" if "reasoning_content" in body["choices"][0]["message"] else "reasoning"
    assert extra_key in (message.model_extra or {})
    assert split_reasoning(message) == (CASES[name]["reasoning"], CASES[name]["content"])


def test_completions_body_keeps_raw_text() -> None:
    body = json.loads((FIXTURES / "vllm_completions.json").read_text())
    (c,), usage, _ = parse_completion(body)
    assert c.content == " Wait, let me check: 2+2 is 4."  # leading space kept: it is a continuation
    assert c.reasoning is None and c.finish_reason == "length" and usage.completion_tokens == 16


@pytest.mark.parametrize(
    "text, reasoning, answer, flags",
    [
        ("plain answer", None, "plain answer", []),
        ("<think>a</think>b", "a", "b", []),
        ("  \n<think>\nsteps\n</think>\n\nfinal", "steps", "final", []),
        ("<think>never closed", "never closed", "", ["unclosed_think"]),
        ("<think></think>x", "", "x", ["empty_think"]),
        ("inside reasoning</think>answer", "inside reasoning", "answer", ["closing_think_only"]),
        ("</think>answer", "", "answer", ["closing_think_only", "empty_think"]),
        ("Sure.<think>r</think>done", "r", "Sure.\n\ndone", []),
        ("a <think> b", "b", "a", ["unclosed_think"]),
    ],
)
def test_split_think_cases(text: str, reasoning: str | None, answer: str, flags: list[str]) -> None:
    assert split_think(text) == (reasoning, answer, flags)


def test_reasoning_field_wins_over_tags_and_empty_field_is_flagged() -> None:
    c = normalise_message({"content": "<think>x</think>y", "reasoning_content": "field"})
    assert (c.reasoning, c.content) == ("field", "<think>x</think>y")
    c = normalise_message({"content": "ok", "reasoning_content": "  ", "reasoning": None})
    assert (c.reasoning, c.content, c.flags) == ("", "ok", ["empty_think"])  # a parser ran; no thinking
    c = normalise_message({"content": "<think>t</think>a", "reasoning_content": ""})
    assert (c.reasoning, c.content, c.flags) == ("t", "a", [])  # blank field: the tags are read instead
    c = normalise_message({"content": "no thinking", "reasoning_content": None})
    assert (c.reasoning, c.content, c.flags) == (None, "no thinking", [])


def test_content_parts_and_null_content() -> None:
    c = normalise_message({"content": [{"type": "text", "text": "<think>r</think>"}, {"type": "text", "text": "A"}]})
    assert (c.reasoning, c.content) == ("r", "A")
    c = normalise_message({"content": None, "reasoning": "only thinking"})
    assert (c.reasoning, c.content) == ("only thinking", "")


@pytest.mark.parametrize(
    "body, kind",
    [
        ([], "malformed"),
        ({"choices": []}, "empty_choices"),
        ({"object": "chat.completion"}, "empty_choices"),
        ({"choices": [{"index": 0, "message": "text"}]}, "malformed"),
        ({"error": {"message": "overloaded"}}, "error_body"),
    ],
)
def test_malformed_bodies_raise_with_kind(body: object, kind: str) -> None:
    with pytest.raises(MalformedResponse) as info:
        parse_chat(body)  # type: ignore[arg-type]
    assert info.value.kind == kind


def test_choices_sorted_by_index_and_cached_tokens() -> None:
    body = {
        "choices": [
            {"index": 1, "message": {"content": "b"}, "finish_reason": "stop"},
            {"index": 0, "message": {"content": "a"}, "finish_reason": "length"},
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 6}},
    }
    choices, usage, _ = parse_chat(body)
    assert [c.content for c in choices] == ["a", "b"]
    assert usage.cached_tokens == 6
    assert parse_usage({"prompt_tokens": 5, "prompt_cache_hit_tokens": 3}).cached_tokens == 3
    assert parse_usage(None) is None  # missing usage is not "zero tokens": the ledger estimates it


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": "abc", "completion_tokens": 3},
        {"completion_tokens": [1]},
        {"total_tokens": 5},
        "12",
        {"prompt_tokens": True},
    ],
)
def test_usage_that_is_not_numbers_is_no_usage(usage: object) -> None:
    assert parse_usage(usage) is None


@pytest.mark.parametrize(
    "choice", [{"message": {"content": "a"}, "finish_reason": 7}, {"message": {"content": 5}, "finish_reason": "stop"}]
)
def test_a_field_of_the_wrong_type_is_a_malformed_reply(choice: dict) -> None:
    with pytest.raises(MalformedResponse) as info:
        parse_chat({"choices": [choice]})
    assert info.value.kind == "malformed"


def test_sky_t1_blocks_are_reasoning_and_solution() -> None:
    text = (
        "<|begin_of_thought|>\n\n2 + 3 is 5.\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n"
        "The answer is \\boxed{5}.\n\n<|end_of_solution|>"
    )
    assert split_reasoning_text(text) == ("2 + 3 is 5.", "The answer is \\boxed{5}.", ["sky_t1_blocks"])
    choice = normalise_message({"content": text})
    assert (choice.reasoning, choice.content) == ("2 + 3 is 5.", "The answer is \\boxed{5}.")


def test_a_reply_without_any_delimiter_is_all_answer_for_the_parser() -> None:
    text = "Let me think. 2 + 3 ... so 5.\n\nThe final answer is \\boxed{5}."
    assert split_reasoning_text(text) == (None, text, [])


@pytest.mark.parametrize(
    "text, reasoning, answer",
    [
        # QwQ-32B-Preview: thinking, then a "Final Answer" heading and the boxed answer
        (
            "Try 2: \\boxed{4}? No.\n\nSo 5.\n\n**Final Answer**\n\n\\[ \\boxed{5} \\]",
            "Try 2: \\boxed{4}? No.\n\nSo 5.",
            "**Final Answer**\n\n\\[ \\boxed{5} \\]",
        ),
        ("Let me think.\n\nThe final answer is 5.", "Let me think.", "The final answer is 5."),
        # code: the last block and what follows it; a mark just after the block goes with it
        ("Plan.\n\n```python\nx = 1\n```\n\nThat prints 1.", "Plan.", "```python\nx = 1\n```\n\nThat prints 1."),
        (
            "Plan.\n\n```python\nprint(1)\n```\n\nFinal answer above.",
            "Plan.",
            "```python\nprint(1)\n```\n\nFinal answer above.",
        ),
        ("\\boxed{5}", "", "\\boxed{5}"),
    ],
)
def test_a_reply_without_delimiters_splits_at_its_final_answer(text: str, reasoning: str, answer: str) -> None:
    assert split_undelimited(text) == (reasoning, answer)
    assert reply_parts(None, text) == (reasoning, answer, True)


def test_reply_parts_keep_what_the_teacher_separated_and_every_word_of_what_it_did_not() -> None:
    assert reply_parts("thought", "\\boxed{1}") == ("thought", "\\boxed{1}", False)
    assert reply_parts("", "\\boxed{1}") == ("", "\\boxed{1}", False)  # a parser ran: nothing to split
    assert split_undelimited("just words, no answer") is None
    assert reply_parts(None, "just words, no answer") == ("", "just words, no answer", True)
