"""Tiny distillation fixtures: arithmetic problems with the simulated teacher's step-by-step traces.

The tests of sft and eval cannot wait for harvest → verify → curate → export, so they build the
exported dataset directly: the same rows :func:`tracesynth.stages.export.dataset.row` writes (messages with the
reasoning in ``<think>`` tags, or answers only) and the same ``template.json``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tracesynth.config import Recipe, load_recipe
from tracesynth.records import Problem
from tracesynth.sim.solver import Solver
from tracesynth.sources.prompts import render_messages
from tracesynth.stages.export.dataset import template_info


def problems(
    n: int, *, digits: int, seed: int, op: str = "+", prefix: str = "q", digits_b: int | None = None
) -> list[Problem]:
    rng = random.Random(seed)
    digits_b = digits if digits_b is None else digits_b
    out = []
    for i in range(n):
        a = rng.randint(10 ** (digits - 1), 10**digits - 1)
        b = rng.randint(10 ** (digits_b - 1), 10**digits_b - 1)
        value = a + b if op == "+" else a * b
        out.append(
            Problem(
                id=f"{prefix}{seed}-{i}",
                prompt=f"What is {a} {op} {b}?",
                answer=str(value),
                source="arith",
                domain="math",
                metadata={"level": f"{digits}+{digits_b} digits"},
            )
        )
    return out


def write_problems(path: Path, probs: list[Problem]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for p in probs:
            fh.write(json.dumps({"id": p.id, "problem": p.prompt, "answer": p.answer, **p.metadata}) + "\n")
    return path


def recipe_for(run_dir: Path, *sets: str) -> Recipe:
    """A recipe with the default tiny student and quiet SFT that saves no intermediate checkpoints."""
    base = [
        f"run_dir={run_dir}",
        "sft.disable_tqdm=true",
        # one thread whatever the load: the default picks by load, and another thread count trains another
        # student. This one ends its turn inside its thinking after a "Wait", which s1's Wait-extension answers
        # with another "Wait" (tests/evaluate: the budget-forcing test fails without it)
        "compute.cpu_threads=1",
        "sft.logging_steps=5",
        "sft.save_strategy=no",
        "eval.baseline=false",
    ]
    return load_recipe(None, [*base, *sets])


def make_dataset(recipe: Recipe, probs: list[Problem], *, reasoning: str = "think_tags") -> Path:
    """Write ``run_dir/dataset`` (data/train-*.parquet) + template.json + problems.jsonl, as harvest..export would."""
    import datasets

    solver = Solver()
    run_dir = Path(recipe.run_dir)
    rows = []
    for p in probs:
        sol = solver.solve(p.prompt, (0, 0))
        msgs = render_messages(p, recipe.prompt)
        if reasoning == "think_tags":
            reply = {"role": "assistant", "content": f"<think>\n{sol.reasoning.strip()}\n</think>\n\n{sol.content}"}
        else:
            reply = {"role": "assistant", "content": sol.content}
        rows.append({"messages": [*msgs, reply], "problem_id": p.id, "sample_id": f"s-{p.id}"})
    out = run_dir / "dataset"
    (out / "data").mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows).to_parquet(str(out / "data" / "train-00000-of-00001.parquet"))
    data = recipe.model_copy(deep=True)
    data.dataset.reasoning = reasoning  # type: ignore[assignment]
    (out / "template.json").write_text(json.dumps(template_info(data), indent=2))
    with (run_dir / "problems.jsonl").open("w") as fh:  # what harvest records: the problems it asked
        fh.writelines(p.model_dump_json() + "\n" for p in probs)
    return out
