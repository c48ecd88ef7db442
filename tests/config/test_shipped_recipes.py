"""Every shipped recipe's own cost estimate stays within its own budget cap, offline.

A recipe whose harvest would stop part-way at its own cap does not do what its header says (issue 19:
s1k.yaml's full-pool harvest at R1's price once needed ~$890 under a $500 cap). Hub sources are not
read here: a recipe over the Hub states its problem count in ``cost.problems``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tracesynth.accounting.estimate import estimate
from tracesynth.config import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


def test_every_recipe_is_here() -> None:
    assert {p.stem for p in RECIPES} >= {"demo", "gsm8k", "s1k", "s1k_1.1", "sky_t1"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_the_recipes_estimate_fits_its_budget(path: Path) -> None:
    recipe = load_recipe(path, [])
    if any(s.kind == "hub" for s in recipe.sources):
        assert recipe.cost.problems, f"{path.name}: a Hub source needs cost.problems for an offline estimate"
    est = estimate(recipe)
    cap = recipe.teacher.budget_usd
    assert cap is not None, f"{path.name}: no teacher.budget_usd"
    assert 0 < est.harvest_usd <= cap, (path.name, est.harvest_usd, cap)
    for x in est.passes:  # classify / rewrite: each within its own cap
        assert x.budget_usd is not None and 0 < x.usd <= x.budget_usd, (path.name, x)
    enabled = {name for name in ("classify", "rewrite") if getattr(recipe, name).enabled}
    assert {x.name for x in est.passes} == enabled
