"""Recipes: the schema of every section (:mod:`.schema`) and how recipes are read (:mod:`.loader`).

    from tracesynth.config import Recipe, load_recipe

This package is part of the foundation: it imports no stage.
"""

from __future__ import annotations

from tracesynth.config.loader import apply_overrides, load_recipe, parse_override, recipe_yaml, yaml_load
from tracesynth.config.schema import (
    BatchConfig,
    ComputeConfig,
    CostConfig,
    CurateConfig,
    DatasetConfig,
    DecontamConfig,
    EvalConfig,
    HygieneConfig,
    PricesConfig,
    PromptConfig,
    Recipe,
    ReportConfig,
    SamplingConfig,
    Section,
    SelectConfig,
    SimConfig,
    SourceConfig,
    StudentConfig,
    TeacherConfig,
    VerifyConfig,
)

__all__ = [
    "BatchConfig",
    "ComputeConfig",
    "CostConfig",
    "CurateConfig",
    "DatasetConfig",
    "DecontamConfig",
    "EvalConfig",
    "HygieneConfig",
    "PricesConfig",
    "PromptConfig",
    "Recipe",
    "ReportConfig",
    "SamplingConfig",
    "Section",
    "SelectConfig",
    "SimConfig",
    "SourceConfig",
    "StudentConfig",
    "TeacherConfig",
    "VerifyConfig",
    "apply_overrides",
    "load_recipe",
    "parse_override",
    "recipe_yaml",
    "yaml_load",
]
