"""`tracesynth recipe check`: everything the stages would refuse later, checked before anything runs.

The schema (keys, types, bounds) is checked by :func:`tracesynth.config.load_recipe`. Here each
stage's own check runs, so that a check that passes means the run will start: source files and
shipped set names, the prompt template (it must carry the question), prices when there is a budget
(and a batch API in batch mode), verifier names, curation steps, the ``sft:`` block against TRL,
and what evaluation needs (its source; a URL and a model for the endpoint backend). Hard errors
raise :class:`~tracesynth.errors.ConfigError` (or another UserError) naming the field; soft findings
are returned as warning strings. This module runs no stage.
"""

from __future__ import annotations

import os
from pathlib import Path

from tracesynth.config import Recipe
from tracesynth.errors import ConfigError


def _sources(recipe: Recipe) -> None:
    for i, src in enumerate(recipe.sources):
        field = "source" if not isinstance(recipe.source, list) else f"source.{i}"
        if src.kind in ("jsonl", "parquet", "csv", "disk") and src.path is None:
            raise ConfigError(f"{field}.path: required for kind {src.kind}")
        if src.kind in ("jsonl", "parquet", "csv", "disk") and not Path(src.path or "").exists():
            raise ConfigError(f"{field}.path: {src.path}: no such file")
        if src.kind in ("hub", "gym", "builtin") and not src.name:
            raise ConfigError(f"{field}.name: required for kind {src.kind}")
        if src.kind == "builtin":
            from tracesynth.sources.builtin import get

            get(src.name or "", src.split)  # DataError naming the known sets
    for name in recipe.curate.decontam.eval_sets:
        from tracesynth.sources.builtin import is_builtin

        if not is_builtin(name) and not Path(name).exists():
            raise ConfigError(f"curate.decontam.eval_sets: {name}: neither a shipped set nor a file")


def _money(recipe: Recipe, warnings: list[str]) -> None:
    from tracesynth.accounting.estimate import estimate
    from tracesynth.accounting.prices import prices_for, require_prices

    t = recipe.teacher
    require_prices(t.model, t.prices, t.budget_usd, t.base_urls)
    prices = prices_for(t.model, t.prices, t.base_urls)
    if t.mode == "batch" and prices is not None and not prices.batch:
        raise ConfigError(f"teacher.mode: batch, but {t.model} ({prices.source}) has no batch API")
    if t.budget_usd is None and not t.sim.enabled:
        warnings.append("teacher.budget_usd is not set: harvesting has no cost cap")
    if prices is not None and prices.self_hosted:
        warnings.append(prices.source)
    if t.budget_usd is not None and prices is not None and recipe.cost.prompt_tokens is not None:
        est = estimate(recipe, problems=None) if all(s.kind != "hub" for s in recipe.sources) else None
        if est is not None and not est.within_budget:
            warnings.append(
                f"the harvest is estimated at ${est.harvest_usd:,.2f}, over teacher.budget_usd "
                f"${t.budget_usd:,.2f}: it would stop part-way (see `tracesynth cost`)"
            )


def _template(recipe: Recipe) -> list[str]:
    """The student's chat template keeps the reasoning in the trained tokens (ConfigError if not)."""
    from tracesynth.stages.train.args import default_sft_args, merge_sft_args
    from tracesynth.stages.train.student import load_tokenizer
    from tracesynth.stages.train.template_check import reasoning_problem

    tok = load_tokenizer(recipe)
    if tok is None:
        return [
            f"student.model: {recipe.student.model}: its tokenizer is not on this machine, so its chat template "
            "was not checked against the dataset layout"
        ]
    args = merge_sft_args(
        default_sft_args(on_gpu=False, fmt=recipe.dataset.format, tiny=recipe.student.model is None), recipe.sft
    )
    problem = reasoning_problem(tok, recipe, args)
    if problem:
        raise ConfigError(problem)
    return []


def check_recipe(recipe: Recipe) -> list[str]:
    """Raise a UserError for what cannot work; return warnings for what looks odd."""
    from tracesynth.sources.prompts import load_template
    from tracesynth.stages.curate.stage import check_steps
    from tracesynth.stages.evaluate.stage import check_eval
    from tracesynth.stages.verify.stage import check_config as check_verifiers

    warnings: list[str] = []
    _sources(recipe)
    load_template(recipe.prompt)
    _money(recipe, warnings)
    check_verifiers(recipe)
    check_steps(recipe)
    try:
        from tracesynth.stages.train.args import check_sft_keys

        check_sft_keys(recipe.sft)
        warnings += _template(recipe)
    except ImportError:
        warnings.append(
            "sft: TRL is not installed here, so the sft block and the student's chat template were not checked "
            "(pip install 'tracesynth[train]')"
        )
    warnings += check_eval(recipe)
    warnings += _passes(recipe)
    return warnings


def _passes(recipe: Recipe) -> list[str]:
    """The enabled model passes (classify, rewrite): prompt file, prices under a cap, the key's variable."""
    from tracesynth.stages.ask import load_prompt, pass_prices

    fields = {"classify": ("question", "rubrics"), "rewrite": ("content",)}
    out: list[str] = []
    for name, required in fields.items():
        cfg = getattr(recipe, name)
        if not cfg.enabled:
            continue
        load_prompt(name, cfg.prompt, required)
        prices = pass_prices(name, cfg)
        if cfg.budget_usd is None and prices is not None and not prices.self_hosted:
            out.append(f"{name}.budget_usd: not set, so the {name} pass has no spending cap")
        if cfg.api_key_env and not cfg.sim.enabled and not os.environ.get(cfg.api_key_env):
            out.append(f"{name}.api_key_env: ${cfg.api_key_env} is not set here")
    return out


__all__ = ["check_recipe"]
