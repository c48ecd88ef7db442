"""Prompt templates: builtin and file templates, fields, system prompts, hashes and errors."""

from __future__ import annotations

import pytest

from tracesynth.config import PromptConfig
from tracesynth.errors import TemplateError
from tracesynth.records import Problem
from tracesynth.sources.prompts import builtin_templates, render_messages, system_prompt, template_hash

P = Problem(id="p1", prompt="What is 2+3?", answer="5", source="t")


def test_builtin_templates_shipped():
    assert {"boxed_math", "multiple_choice", "code_stdio", "code_function", "sky_t1"} <= set(builtin_templates())


def test_boxed_math_renders_question_and_keeps_latex_braces():
    msgs = render_messages(P, PromptConfig(template="boxed_math"))
    assert [m["role"] for m in msgs] == ["user"]
    assert msgs[0]["content"].startswith("What is 2+3?\n\n")
    assert "\\boxed{}" in msgs[0]["content"]


def test_sky_t1_has_the_published_system_prompt():
    msgs = render_messages(P, PromptConfig(template="sky_t1"))
    assert msgs[0]["role"] == "system"
    assert msgs[0]["content"].startswith("Your role as an assistant involves thoroughly exploring questions")
    assert "<|begin_of_thought|>" in msgs[0]["content"] and "<|end_of_solution|>" in msgs[0]["content"]
    assert "  " not in msgs[0]["content"]  # whitespace of the Python line continuations collapsed
    assert msgs[1] == {"role": "user", "content": "Return your final response within \\boxed{}. What is 2+3?"}
    assert system_prompt(PromptConfig(template="sky_t1")) == msgs[0]["content"]


def test_multiple_choice_letters_options():
    p = Problem(id="mc", prompt="Pick one.", answer="B", metadata={"choices": ["red", "blue"]})
    text = render_messages(p, PromptConfig(template="multiple_choice"))[0]["content"]
    assert "A. red\nB. blue" in text


def test_code_templates_embed_question():
    p = Problem(id="c", prompt="def f(x):\n    '''double x'''\n", tests="assert f(2)==4", domain="code")
    fn = render_messages(p, PromptConfig(template="code_function"))[0]["content"]
    assert "```python\ndef f(x):" in fn
    io = render_messages(p, PromptConfig(template="code_stdio"))[0]["content"]
    assert "standard input" in io


def test_file_template_with_system_and_metadata_fields(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("[system]\nYou are terse.\n[user]\nQ: {{ question }} (level {{metadata.level}}) {{id}}\n")
    p = Problem(id="x1", prompt="hi", answer="1", metadata={"level": 3})
    msgs = render_messages(p, PromptConfig(template=str(f)))
    assert msgs == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Q: hi (level 3) x1"},
    ]


def test_system_override_and_removal(tmp_path):
    assert render_messages(P, PromptConfig(template="boxed_math", system="Be brief."))[0] == {
        "role": "system",
        "content": "Be brief.",
    }
    assert [m["role"] for m in render_messages(P, PromptConfig(template="sky_t1", system=""))] == ["user"]


def test_messages_problem_passes_through_with_system():
    p = Problem(id="m", messages=[{"role": "user", "content": "hey"}], answer="x")
    msgs = render_messages(p, PromptConfig(template="sky_t1"))
    assert msgs[0]["role"] == "system" and msgs[1] == {"role": "user", "content": "hey"}


def test_template_hash_changes_with_text_and_system(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("{{question}}\n")
    h1 = template_hash(PromptConfig(template=str(f)))
    assert h1 == template_hash(PromptConfig(template=str(f)))
    assert h1 != template_hash(PromptConfig(template=str(f), system="sys"))
    f.write_text("{{question}} please\n")
    assert template_hash(PromptConfig(template=str(f))) != h1
    assert template_hash(PromptConfig(template="boxed_math")) != template_hash(PromptConfig(template="sky_t1"))


def test_missing_field_names_template_problem_and_field(tmp_path):
    f = tmp_path / "needs_answer.txt"
    f.write_text("{{question}} {{ answer }}\n")
    p = Problem(id="no-answer-7", prompt="q")
    with pytest.raises(TemplateError) as exc:
        render_messages(p, PromptConfig(template=str(f)))
    msg = str(exc.value)
    assert "needs_answer.txt" in msg and "no-answer-7" in msg and "'answer'" in msg


def test_missing_choices_is_an_error():
    with pytest.raises(TemplateError, match=r"multiple_choice: problem p1: field 'choices' is missing"):
        render_messages(P, PromptConfig(template="multiple_choice"))


def test_unknown_field_is_an_error(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("{{ question }} {{ questoin }}")
    with pytest.raises(TemplateError, match=r"problem p1: unknown field 'questoin'"):
        render_messages(P, PromptConfig(template=str(f)))


def test_unknown_builtin_and_missing_file():
    with pytest.raises(TemplateError, match=r"'boxed' is not a builtin template \(.*boxed_math"):
        template_hash(PromptConfig(template="boxed"))
    with pytest.raises(TemplateError, match=r"nope/t.txt: no such file"):
        template_hash(PromptConfig(template="nope/t.txt"))


def test_system_without_user_section_is_an_error(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("[system]\nonly a system prompt\n")
    with pytest.raises(TemplateError, match=r"no \[user\] section"):
        template_hash(PromptConfig(template=str(f)))
