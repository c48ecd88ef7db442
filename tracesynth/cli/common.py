"""What every command group shares: the typer app, the recipe / --set / --quiet / --force options, loading."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from tracesynth._version import __version__

if TYPE_CHECKING:
    from tracesynth.config import Recipe

app = typer.Typer(
    name="tracesynth",
    help="Harvest verified reasoning traces from a teacher, curate them, and distil a student.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
STATE = {"debug": False}

RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file.", show_default=False)]
SetOpt = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional here on 3.10
    typer.Option("--set", help="Override a recipe key: a.b.c=value (YAML value). Repeatable."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Plain log lines instead of live progress.")]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Use run_dir even if it is an existing folder that is not a run folder.")
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tracesynth {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    STATE["debug"] = debug


def load(recipe: Path | None, overrides: list[str] | None) -> Recipe:
    from tracesynth.config import load_recipe

    return load_recipe(recipe, overrides or [])
