"""The student's chat template must keep the reasoning in the trained tokens: checked on one rendered row."""

from __future__ import annotations

import pytest
from repo import FIXTURES

from tracesynth.config import load_recipe
from tracesynth.stages.train.args import default_sft_args
from tracesynth.stages.train.student import message_texts, train_tokenizer
from tracesynth.stages.train.template_check import probe_row, reasoning_problem

TEMPLATES = FIXTURES / "templates"


def tokenizer(template: str | None = None):
    from tracesynth.stages.train.template_check import PROBE_ANSWER, PROBE_REASONING

    texts = [PROBE_REASONING, PROBE_ANSWER, "What is 17 + 25?", "<｜User｜><｜Assistant｜>"] * 3
    tok = train_tokenizer(texts, vocab_size=400)
    if template:
        tok.chat_template = (TEMPLATES / template).read_text().strip()
    return tok


def check(template: str | None, fmt: str, reasoning: str) -> str | None:
    recipe = load_recipe(None, [f"dataset.format={fmt}", f"dataset.reasoning={reasoning}"])
    args = default_sft_args(on_gpu=False, fmt=fmt, tiny=True)
    return reasoning_problem(tokenizer(template), recipe, args)


@pytest.mark.parametrize(
    ("fmt", "reasoning"),
    [("messages", "think_tags"), ("messages", "reasoning_content"), ("prompt_completion", "think_tags")],
)
def test_the_tiny_students_template_trains_the_reasoning_in_every_layout(fmt, reasoning) -> None:
    assert check(None, fmt, reasoning) is None


def test_a_qwen25_template_drops_reasoning_content_and_is_refused() -> None:
    problem = check("qwen25_like.jinja", "messages", "reasoning_content")
    assert problem is not None and "drops the reasoning" in problem
    assert check("qwen25_like.jinja", "messages", "think_tags") is None  # in the content it is trained


def test_an_r1_distill_template_drops_think_tags_of_prompt_completion_data_and_is_refused() -> None:
    problem = check("r1_distill_like.jinja", "prompt_completion", "think_tags")
    assert problem is not None and "dataset.format prompt_completion" in problem


def test_the_probe_row_is_what_export_writes() -> None:
    row = probe_row(load_recipe(None, ["dataset.reasoning=think_tags"]))
    assert row["messages"][-1]["content"].startswith("<think>\n")
    assert list(message_texts([row]))


def test_recipe_check_refuses_a_student_whose_template_would_not_train_the_reasoning(tmp_path) -> None:
    import subprocess
    import sys

    folder = tmp_path / "student"
    tokenizer("qwen25_like.jinja").save_pretrained(str(folder))  # a local checkpoint's tokenizer, no weights needed
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"name: t\nrun_dir: {tmp_path / 'run'}\nsource: {{kind: builtin, name: gsm8k, split: test}}\n"
        f"teacher: {{api_key_env: null}}\nstudent: {{init: null, model: {folder}}}\n"
    )
    base = [sys.executable, "-m", "tracesynth", "recipe", "check", str(recipe), "--set"]
    ok = subprocess.run([*base, "dataset.reasoning=think_tags"], capture_output=True, text=True, timeout=120)
    bad = subprocess.run([*base, "dataset.reasoning=reasoning_content"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert bad.returncode == 2 and "drops the reasoning" in bad.stderr and bad.stderr.count("\n") == 1
