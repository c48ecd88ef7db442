"""`tracesynth recipe check`: validation beyond the schema (files exist, sft keys are TRL's).

The schema itself (keys, types) is checked by :func:`tracesynth.config.load_recipe`. Here we check
what needs the file system or TRL. Hard errors raise :class:`ConfigError`; soft findings are
returned as warning strings. This module does not run any stage.
"""

from __future__ import annotations

from pathlib import Path

from tracesynth.config import Recipe
from tracesynth.errors import ConfigError


def check_recipe(recipe: Recipe) -> list[str]:
    """Raise ConfigError for what cannot work; return warnings for what looks odd."""
    warnings: list[str] = []
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
    if recipe.sft:
        from tracesynth.stages.train.sft import check_sft_keys

        check_sft_keys(recipe.sft)
    if recipe.teacher.budget_usd is None and not recipe.teacher.sim.enabled:
        warnings.append("teacher.budget_usd is not set: harvesting has no cost cap")
    return warnings
