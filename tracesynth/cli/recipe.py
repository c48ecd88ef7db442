"""``tracesynth recipe show | check`` and ``tracesynth cost``: look at a recipe before running it."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from tracesynth.cli.common import RecipeArg, SetOpt, load

recipe_app = typer.Typer(help="Inspect and validate recipes.", no_args_is_help=True)


@recipe_app.command("show")
def recipe_show(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Print the resolved recipe (defaults < file < --set)."""
    from tracesynth.config import recipe_yaml

    typer.echo(recipe_yaml(load(recipe, set_)), nl=False)


@recipe_app.command("check")
def recipe_check(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Check everything the stages would refuse later: keys, files, templates, verifiers, money, eval, TRL."""
    from tracesynth.preflight import check_recipe

    r = load(recipe, set_)
    for p in check_recipe(r):
        typer.echo(f"warning: {p}", err=True)
    typer.echo(f"{recipe}: ok ({r.name}, run_dir {r.run_dir})")


def cost_cmd(
    recipe: RecipeArg,
    set_: SetOpt = None,
    problems: Annotated[
        Optional[int], typer.Option(help="Problem count (skip counting the sources).")  # noqa: UP045
    ] = None,
    pilot: Annotated[bool, typer.Option(help="Use token counts measured in the run folder's samples.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Estimate harvest and training cost of a recipe before running it."""
    from tracesynth.accounting.estimate import estimate

    est = estimate(load(recipe, set_), problems=problems, pilot=pilot)
    if as_json:
        typer.echo(json.dumps(est.to_dict(), indent=2))
        return
    typer.echo(est.text())


def register(app: typer.Typer) -> None:
    app.add_typer(recipe_app, name="recipe")
    app.command("cost")(cost_cmd)
