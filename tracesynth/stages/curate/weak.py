"""s1's difficulty filter run by the pipeline: the pool asked of each weak model, verified, in its own folder.

s1 dropped every question Qwen2.5-7B-Instruct or Qwen2.5-32B-Instruct already answered right (data/bulk_inference.py:
the bare question, temperature 0.05). ``curate.select.weak_models`` names such models; for each,
:func:`weak_recipe` is the run's recipe pointed at that model — same problems, the ``bare`` prompt, one
sample at its temperature, its own budget, run folder ``<run>/weak/<name>`` — and :func:`harvest_weak` /
:func:`verify_weak` are what ``tracesynth run`` does with it after the teacher's harvest and verify. Curation
then reads those folders like ``curate.select.weak_runs`` (:func:`weak_dirs`).

This module builds recipes and calls the harvest and verify stages; it decides nothing about problems.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tracesynth.config import Recipe
from tracesynth.config.schema import WeakModel


def weak_dir(recipe: Recipe, wm: WeakModel) -> Path:
    return Path(recipe.run_dir) / "weak" / wm.name


def weak_dirs(recipe: Recipe) -> list[str]:
    """The run folders of ``curate.select.weak_models`` (read by curation as weak runs)."""
    return [str(weak_dir(recipe, wm)) for wm in recipe.curate.select.weak_models]


def weak_recipe(recipe: Recipe, wm: WeakModel) -> Recipe:
    """The run's recipe asking ``wm`` instead of the teacher (see the module docstring)."""
    data: dict[str, Any] = recipe.model_dump(mode="json")
    t = data["teacher"]
    t.update(
        model=wm.model,
        api_key_env=wm.api_key_env,
        prices=wm.prices.model_dump(mode="json") if wm.prices else None,
        budget_usd=wm.budget_usd,
        n=1,
        api_n=False,
        until_verified=None,
        keep_per_problem=1,
        mode="online",
    )
    if wm.base_urls:
        t["base_urls"] = list(wm.base_urls)
    t["sampling"] = {**t["sampling"], "temperature": wm.temperature, "max_tokens": wm.max_tokens}
    data["prompt"] = {"template": wm.template, "system": None}
    # a weak model's answer is right or wrong: the format of its reasoning does not matter here
    verify = data["verify"]
    verify["verifiers"] = [v for v in verify["verifiers"] if v != "format"] or verify["verifiers"]
    verify["by_domain"] = {d: [v for v in vs if v != "format"] or vs for d, vs in verify["by_domain"].items()}
    data.update(run_dir=str(weak_dir(recipe, wm)), name=f"{recipe.name}/weak/{wm.name}", variants={})
    return Recipe.model_validate(data)


def harvest_weak(recipe: Recipe, *, quiet: bool = False) -> None:
    from tracesynth.stages.harvest import harvest

    for wm in recipe.curate.select.weak_models:
        harvest(weak_recipe(recipe, wm), quiet=quiet)


def verify_weak(recipe: Recipe) -> None:
    from tracesynth.stages.verify import verify

    for wm in recipe.curate.select.weak_models:
        verify(weak_recipe(recipe, wm))


__all__ = ["harvest_weak", "verify_weak", "weak_dir", "weak_dirs", "weak_recipe"]
