"""Does the student's chat template keep the reasoning in what is trained? Checked on one rendered row.

A chat template can silently drop the teacher's reasoning from training: Qwen2.5's template never
renders an assistant message's ``reasoning_content`` (so ``dataset.reasoning: reasoning_content`` trains
answers only), and R1-Distill's template cuts everything before ``</think>`` out of assistant turns (so
``<think>`` traces in a ``prompt_completion`` dataset lose their reasoning). :func:`reasoning_problem`
renders one row the way export writes it and tokenizes it as TRL's SFTTrainer does (the tokenizer's
``apply_chat_template`` as TRL calls it, TRL's training-template patch for ``assistant_only_loss``, the
completion mask of prompt-completion data: loss from the first token where prompt and full text differ),
then checks that the reasoning's text is in the tokens that carry loss.
``tracesynth recipe check`` and ``tracesynth sft`` refuse a recipe for which it is not.

This module imports transformers and TRL when called; it trains nothing.
"""

from __future__ import annotations

import re
from typing import Any

from tracesynth.config import Recipe
from tracesynth.thinking import THINK

PROBE_REASONING = "First I add the units digits and carry one. Then I add the tens digits with the carry."
PROBE_ANSWER = "The answer is \\boxed{42}."
_WS = re.compile(r"\s+")


def probe_row(recipe: Recipe) -> dict[str, Any]:
    """One dataset row as export writes it for ``recipe``, with a recognisable reasoning."""
    from tracesynth.records import Trace
    from tracesynth.stages.export.dataset import row

    trace = Trace(
        sample_id="s-probe",
        problem_id="p-probe",
        prompt="What is 17 + 25?",
        messages=[{"role": "user", "content": "What is 17 + 25?"}],
        reasoning=PROBE_REASONING,
        content=PROBE_ANSWER,
    )
    return row(trace, recipe)


def trained_text(
    tokenizer: Any, example: dict[str, Any], *, assistant_only_loss: bool, completion_only_loss: bool
) -> tuple[str, str]:
    """(the whole training text, the part of it that carries loss), tokenized as TRL's SFTTrainer does."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    chat_template = None
    if assistant_only_loss and not has_generation_markers(tokenizer.chat_template):
        chat_template = get_training_chat_template(tokenizer)
    kwargs: dict[str, Any] = {"chat_template": chat_template}
    if "prompt" in example:
        prompt_ids = _chat_ids(tokenizer, example["prompt"], add_generation_prompt=True, **kwargs)["input_ids"]
        full = _chat_ids(
            tokenizer,
            example["prompt"] + example["completion"],
            return_assistant_tokens_mask=assistant_only_loss,
            **kwargs,
        )
        ids = full["input_ids"]
        start = _common_prefix(prompt_ids, ids)
        mask = [int(i >= start) for i in range(len(ids))] if completion_only_loss else [1] * len(ids)
        if assistant_only_loss and "assistant_masks" in full:
            mask = [a and b for a, b in zip(mask, full["assistant_masks"], strict=True)]
    else:
        full = _chat_ids(tokenizer, example["messages"], return_assistant_tokens_mask=assistant_only_loss, **kwargs)
        ids = full["input_ids"]
        mask = list(full["assistant_masks"]) if assistant_only_loss else [1] * len(ids)
    text = tokenizer.decode(ids)
    trained = tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])
    return text, trained


def _chat_ids(tokenizer: Any, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
    # TRL's dataset preparation tokenizes conversational rows with exactly this call (trl.data_utils)
    return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _norm(text: str) -> str:
    return _WS.sub(" ", text).strip()


def reasoning_problem(
    tokenizer: Any, recipe: Recipe, sft_args: dict[str, Any], example: dict[str, Any] | None = None
) -> str | None:
    """Why the student's template would not train the reasoning (one line), or None when it does."""
    if recipe.dataset.reasoning == "none":
        return None  # an answers-only dataset has no reasoning to keep
    probe = example is None
    example = probe_row(recipe) if example is None else example
    reasoning = PROBE_REASONING if probe else _reasoning_of(example)
    if not reasoning:
        return None
    aol = bool(sft_args.get("assistant_only_loss"))
    col = bool(sft_args.get("completion_only_loss", "prompt" in example))
    needle = _norm(reasoning)[:60]
    fmt, mode = recipe.dataset.format, recipe.dataset.reasoning
    msgs = example["prompt"] + example["completion"] if "prompt" in example else example["messages"]
    if needle not in _norm(tokenizer.apply_chat_template(msgs, tokenize=False)):
        return (
            f"dataset: the student's chat template drops the reasoning from the training text "
            f"(dataset.format {fmt}, dataset.reasoning {mode}); choose another dataset.reasoning "
            f"(think_tags puts it in the content) or a template that renders it"
        )
    try:
        text, trained = trained_text(tokenizer, example, assistant_only_loss=aol, completion_only_loss=col)
    except ValueError as exc:  # TRL cannot mark the assistant turn of this template for assistant_only_loss
        return f"sft.assistant_only_loss: {str(exc).splitlines()[0]}"
    if needle not in _norm(text):
        return (
            f"dataset: the student's chat template drops the reasoning from the training text "
            f"(dataset.format {fmt}, dataset.reasoning {mode}); choose another dataset.reasoning "
            f"(think_tags puts it in the content) or a template that renders it"
        )
    if needle not in _norm(trained):
        return (
            f"dataset: the reasoning is in the training text but carries no loss with the student's chat "
            f"template (dataset.format {fmt}, dataset.reasoning {mode}, assistant_only_loss {aol})"
        )
    return None


def _reasoning_of(example: dict[str, Any]) -> str | None:
    msgs = example.get("completion") or (example.get("messages") or [])[-1:]
    for m in msgs:
        if m.get("role") == "assistant":
            if m.get("reasoning_content"):
                return str(m["reasoning_content"])
            content = str(m.get("content") or "")
            if THINK.end in content:
                return content.split(THINK.end, 1)[0].replace(THINK.start, "")
    return None


__all__ = ["PROBE_ANSWER", "PROBE_REASONING", "probe_row", "reasoning_problem", "trained_text"]
