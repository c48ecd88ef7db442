"""`tracesynth cost RECIPE`: estimate what a recipe will cost before running it.

Harvest: problems × n requests × (prompt tokens × input price + completion tokens × output
price), online and at the batch discount. Problems are counted by streaming the recipe's sources
(or given); prompt tokens are measured on the rendered prompts (characters / 4, the usual
English approximation) unless the recipe's ``cost.prompt_tokens`` says otherwise. With
``pilot=True`` and a run folder that already holds samples, the measured mean prompt and
completion tokens and the measured keep rate replace the recipe's expectations.

Training: GPU-hours = 6 × parameters × trained tokens / (peak FLOP/s × MFU) / 3600 — the
standard dense-transformer estimate (forward + backward; attention FLOPs are folded into MFU,
which is why long-sequence recipes state a lower MFU). Cost = GPU-hours × ``compute.gpu_hour_usd``.

This module estimates; the receipt of a finished run (:mod:`tracesynth.receipt`) uses records.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tracesynth.accounting.prices import prices_for
from tracesynth.config import Recipe
from tracesynth.errors import ConfigError

CHARS_PER_TOKEN = 4.0
PROMPT_SAMPLE = 200  # problems rendered to measure the prompt length


@dataclass
class CostEstimate:
    problems: int
    requests: int
    prompt_tokens: float
    completion_tokens: float
    harvest_usd: float
    harvest_batch_usd: float
    train_examples: int
    train_tokens: float
    student_params_b: float
    gpu_hours: float
    wall_hours: float
    train_usd: float
    basis: str

    @property
    def total_usd(self) -> float:
        return self.harvest_usd + self.train_usd

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_usd": self.total_usd}


def _measure_prompts(recipe: Recipe, problems: int | None) -> tuple[int, float]:
    """(problem count, mean rendered prompt tokens) by streaming the sources once."""
    from tracesynth.sources.problems import iter_problems
    from tracesynth.sources.prompts import load_template, render_messages

    count, chars = 0, 0
    template = load_template(recipe.prompt)
    for problem in iter_problems(recipe, stats=Counter()):
        if count < PROMPT_SAMPLE:
            chars += sum(len(str(m.get("content", ""))) for m in render_messages(problem, recipe.prompt, template))
        count += 1
        if problems is not None and count >= PROMPT_SAMPLE:
            break
    mean = chars / CHARS_PER_TOKEN / max(1, min(count, PROMPT_SAMPLE))
    return (problems if problems is not None else count), mean


def _pilot(run_dir: Path) -> tuple[float, float, float] | None:
    """Measured (prompt tokens, completion tokens, keep rate) of the samples in a run folder."""
    samples = run_dir / "samples.jsonl"
    if not samples.exists():
        return None
    n = prompt = completion = 0
    with samples.open() as fh:
        for line in fh:
            usage = json.loads(line).get("usage") or {}
            n += 1
            prompt += usage.get("prompt_tokens", 0)
            completion += usage.get("completion_tokens", 0)
    if not n:
        return None
    kept = n
    verdicts = run_dir / "verify.json"
    if verdicts.exists():
        kept = json.loads(verdicts.read_text()).get("kept", n)
    return prompt / n, completion / n, max(kept, 1) / n


def _student_params_b(recipe: Recipe) -> float:
    if recipe.cost.student_params_b is not None:
        return recipe.cost.student_params_b
    if recipe.student.init != "tiny":
        raise ConfigError("cost.student_params_b: required for a non-tiny student (billions of parameters)")
    from tracesynth.stages.train.student import TINY_DEFAULTS

    cfg = {**TINY_DEFAULTS, **recipe.student.tiny}
    h, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    inter = cfg.get("intermediate_size", 4 * h)
    per_layer = 4 * h * h + 3 * h * inter  # attention (q,k,v,o) + SwiGLU MLP, GQA ignored (an upper bound)
    return (layers * per_layer + recipe.student.vocab_size * h) / 1e9


def estimate(recipe: Recipe, *, problems: int | None = None, pilot: bool = False) -> CostEstimate:
    """Estimate the harvest and training cost of ``recipe`` (see the module docstring)."""
    c = recipe.cost
    prices = prices_for(recipe.teacher.model, recipe.teacher.prices)
    if prices is None:
        raise ConfigError(f"teacher.prices: no price known for model {recipe.teacher.model!r}; set teacher.prices")
    basis = "recipe expectations"
    if problems is not None and c.prompt_tokens is not None:
        count, prompt_tokens = problems, c.prompt_tokens  # nothing to read: the sources may be remote
    else:
        count, prompt_tokens = _measure_prompts(recipe, problems)
        prompt_tokens = c.prompt_tokens if c.prompt_tokens is not None else prompt_tokens
    completion, keep_rate = c.completion_tokens, c.keep_rate
    measured = _pilot(Path(recipe.run_dir)) if pilot else None
    if measured:
        prompt_tokens, completion, keep_rate = measured
        basis = f"pilot run in {recipe.run_dir}"
    requests = count * recipe.teacher.n
    per_request = (prompt_tokens * prices.input + completion * max(prices.output, prices.reasoning or 0)) / 1e6
    harvest = requests * per_request
    target = recipe.curate.select.size
    examples = c.train_examples or target or int(requests * keep_rate)
    tokens_per_example = c.train_tokens_per_example or (prompt_tokens + completion)
    epochs = c.epochs if c.epochs is not None else float(recipe.sft.get("num_train_epochs", 3.0))
    train_tokens = examples * tokens_per_example * epochs
    params_b = _student_params_b(recipe)
    gpu_hours = 6 * params_b * 1e9 * train_tokens / (c.peak_tflops * 1e12 * c.mfu) / 3600
    gpus = max(1, recipe.compute.gpus)
    return CostEstimate(
        problems=count, requests=requests, prompt_tokens=prompt_tokens, completion_tokens=completion,
        harvest_usd=harvest, harvest_batch_usd=harvest * (1 - (recipe.teacher.prices.batch_discount
                                                               if recipe.teacher.prices else 0.5)),
        train_examples=examples, train_tokens=train_tokens, student_params_b=params_b,
        gpu_hours=gpu_hours, wall_hours=gpu_hours / gpus, train_usd=gpu_hours * recipe.compute.gpu_hour_usd,
        basis=basis,
    )
