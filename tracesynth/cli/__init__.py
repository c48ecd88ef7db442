"""The ``tracesynth`` command line (typer): one module per command group, each command a thin client.

    recipe.py   recipe show / recipe check, cost
    harvest.py  harvest, merge, batches
    stages.py   verify, classify, rewrite, curate, export, sft, eval, report, run
    data.py     data list
    serve.py    serve (vLLM on a checkpoint)
    (sim-teacher is built from the simulator's options in tracesynth/sim/command.py)

This package is the only place that turns exceptions into exit codes:

* :class:`~tracesynth.errors.UserError` (and other errors with ``exit_code == 2``): one line on
  stderr, ``error: <message>``, exit 2, no traceback (``--debug`` shows it);
* any other :class:`~tracesynth.errors.TracesynthError`: one line, exit 1;
* Ctrl-C: exit 130; SIGTERM: exit 143 (stages stop cleanly before that, see harvest).

Heavy imports (torch, transformers, trl, datasets) happen inside the commands that need them,
so ``tracesynth --help`` and ``tracesynth harvest`` never import torch.
"""

from __future__ import annotations

import sys
import traceback

import typer

from tracesynth.cli import data, harvest, recipe, serve, stages
from tracesynth.cli.common import STATE, app
from tracesynth.errors import TracesynthError


def _register() -> None:
    from tracesynth.sim.command import register

    for group in (recipe, harvest, stages, data, serve):
        group.register(app)
    register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and map errors to exit codes."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        rv = app(args=args, standalone_mode=False, prog_name="tracesynth")
    except typer.Exit as exc:  # typer vendors click: these are its classes, not click's
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: click's own message, exit 2
        show = getattr(exc, "show", None)
        show() if show else typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except TracesynthError as exc:
        if STATE["debug"]:
            traceback.print_exc()
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


__all__ = ["app", "main"]
