"""`tracesynth cost RECIPE`: estimate what a recipe will cost before running it.

Harvest: problems × n requests × (prompt tokens × input price + completion tokens × output
price), online and — for providers with a batch API — at the batch discount. Problems are counted
by streaming the recipe's sources (or given); prompt tokens are measured on the rendered prompts
(:data:`~tracesynth.accounting.tokens.CHARS_PER_TOKEN`) unless the recipe's ``cost.prompt_tokens``
says otherwise. With ``pilot=True`` and a run folder that already holds samples, the measured mean
prompt and completion tokens and the measured keep rate replace the recipe's expectations.

Training: GPU-hours = 6 × parameters × trained tokens / (peak FLOP/s × MFU) / 3600 — the
standard dense-transformer estimate (forward + backward; attention FLOPs are folded into MFU,
which is why long-sequence recipes state a lower MFU). Cost = GPU-hours × ``compute.gpu_hour_usd``.

The estimate says whether the harvest fits ``teacher.budget_usd`` (a recipe whose own estimate
passes its cap would stop part-way). This module estimates; the receipt of a finished run
(:mod:`tracesynth.accounting.receipt`) uses records.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tracesynth.accounting.prices import batch_discount, prices_for
from tracesynth.accounting.spend import scan_spend
from tracesynth.accounting.tokens import CHARS_PER_TOKEN
from tracesynth.config import Recipe
from tracesynth.errors import ConfigError
from tracesynth.rundir.jsonio import read_json
from tracesynth.rundir.layout import RunLayout

PROMPT_SAMPLE = 200  # problems rendered to measure the prompt length


@dataclass
class PassEstimate:
    """A model pass (classify, rewrite): its requests at its own prices, against its own cap."""

    name: str
    requests: int
    prompt_tokens: float
    completion_tokens: float
    usd: float
    budget_usd: float | None

    @property
    def within_budget(self) -> bool:
        return self.budget_usd is None or self.usd <= self.budget_usd

    def text(self) -> str:
        cap = (
            ""
            if self.budget_usd is None
            else f"; {self.name}.budget_usd ${self.budget_usd:,.2f}"
            + (" fits" if self.within_budget else " is too small")
        )
        return (
            f"{self.name}: {self.requests:,} requests × ({self.prompt_tokens:,.0f} prompt + "
            f"{self.completion_tokens:,.0f} completion tokens) = ${self.usd:,.2f}{cap}"
        )


def pass_estimates(recipe: Recipe, problems: int, traces: int, question_tokens: float) -> list[PassEstimate]:
    """classify asks once per problem (its prompt holds s1's rubrics); rewrite once per kept trace, the trace
    in, a trace as long out."""
    from tracesynth.accounting.tokens import text_tokens

    out: list[PassEstimate] = []
    c = recipe.cost
    for name, count, fields, completion in (
        ("classify", problems, ("question", "rubrics"), c.classify_completion_tokens),
        ("rewrite", traces, ("content",), c.completion_tokens),
    ):
        cfg = getattr(recipe, name)
        if not cfg.enabled:
            continue
        from tracesynth.stages.ask import load_prompt

        prompt = load_prompt(name, cfg.prompt, fields)
        fixed = float(text_tokens((prompt.system or "") + prompt.user))
        if name == "classify":
            from tracesynth.stages.classify.stage import rubrics

            fixed += text_tokens(rubrics()) + question_tokens
        else:
            fixed += question_tokens + c.completion_tokens  # the question and the trace to rewrite
        completion = min(completion, cfg.sampling.max_tokens or completion)
        prices = prices_for(cfg.model, cfg.prices, cfg.base_urls)
        if prices is None:
            raise ConfigError(f"{name}.prices: no price known for model {cfg.model!r}; set {name}.prices")
        per = (fixed * prices.input + completion * max(prices.output, prices.reasoning or 0)) / 1e6
        out.append(PassEstimate(name, count, fixed, completion, round(count * per, 4), cfg.budget_usd))
    return out


@dataclass
class CostEstimate:
    problems: int
    requests: int
    prompt_tokens: float
    completion_tokens: float
    harvest_usd: float
    harvest_batch_usd: float | None  # None: the provider has no batch API
    budget_usd: float | None
    train_examples: int
    train_tokens: float
    student_params_b: float
    gpu_hours: float
    wall_hours: float
    train_usd: float
    basis: str
    prices_source: str = ""
    passes: list[PassEstimate] = field(default_factory=list)  # the model passes the recipe enables

    @property
    def total_usd(self) -> float:
        return self.harvest_usd + self.train_usd + sum(x.usd for x in self.passes)

    @property
    def within_budget(self) -> bool:
        return self.budget_usd is None or self.harvest_usd <= self.budget_usd

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_usd": self.total_usd, "within_budget": self.within_budget}

    def text(self) -> str:
        batch = "no batch API" if self.harvest_batch_usd is None else f"${self.harvest_batch_usd:,.2f} batch"
        cap = ""
        if self.budget_usd is not None:
            cap = f"\nbudget: teacher.budget_usd ${self.budget_usd:,.2f} — " + (
                "the harvest fits"
                if self.within_budget
                else f"the online harvest needs ${self.harvest_usd:,.2f}: it would stop at about "
                f"{100 * self.budget_usd / max(self.harvest_usd, 1e-9):.0f}% of the problems"
            )
        return (
            f"harvest: {self.requests:,} requests × ({self.prompt_tokens:,.0f} prompt + {self.completion_tokens:,.0f} "
            f"completion tokens) = ${self.harvest_usd:,.2f} online, {batch} (prices: {self.prices_source})\n"
            f"training: {self.train_examples:,} examples, {self.train_tokens:,.0f} tokens, "
            f"{self.student_params_b:g}B params → {self.gpu_hours:,.1f} GPU-h ({self.wall_hours:,.2f} h wall) "
            f"= ${self.train_usd:,.2f}\n"
            + "".join(x.text() + "\n" for x in self.passes)
            + f"total: ${self.total_usd:,.2f} (basis: {self.basis}){cap}"
        )


def expected_samples(t: Any, pass_rate: float) -> float:
    """Samples one problem costs: ``n``; sampling until verified, the expected number of asks to get
    ``keep_per_problem`` passes at ``pass_rate`` per sample, capped at ``until_verified`` (for one pass:
    (1 - (1 - p)^K) / p, a truncated geometric series)."""
    k = t.until_verified
    if k is None:
        return float(t.n)
    p = min(max(pass_rate, 1e-6), 1.0)
    if t.keep_per_problem == 1:
        return (1 - (1 - p) ** k) / p
    return float(min(k, t.keep_per_problem / p))


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
    layout = RunLayout(run_dir)
    spend = scan_spend(layout)
    n = spend.samples
    if not n:
        return None
    kept = n
    verify = read_json(layout.verify_json, bad_ok=True)
    if isinstance(verify, dict):
        kept = int(verify.get("kept", n))
    return spend.tokens.prompt / n, spend.tokens.completion / n, max(kept, 1) / n


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
    c, t = recipe.cost, recipe.teacher
    prices = prices_for(t.model, t.prices, t.base_urls)
    if prices is None:
        raise ConfigError(f"teacher.prices: no price known for model {t.model!r}; set teacher.prices")
    basis = "recipe expectations"
    problems = problems if problems is not None else c.problems
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
    requests = round(count * expected_samples(t, keep_rate))
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
    batch = harvest * (1 - batch_discount(t.prices)) if prices.batch else None
    return CostEstimate(
        problems=count,
        requests=requests,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion,
        harvest_usd=harvest,
        harvest_batch_usd=batch,
        budget_usd=t.budget_usd,
        train_examples=examples,
        train_tokens=train_tokens,
        student_params_b=params_b,
        gpu_hours=gpu_hours,
        wall_hours=gpu_hours / gpus,
        train_usd=gpu_hours * recipe.compute.gpu_hour_usd,
        basis=basis,
        prices_source=f"{prices.source}{f', as of {prices.as_of}' if prices.as_of else ''}",
        passes=pass_estimates(recipe, count, examples, prompt_tokens),
    )


__all__ = ["CostEstimate", "PassEstimate", "estimate", "pass_estimates"]
