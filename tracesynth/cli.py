"""The ``tracesynth`` command line (typer). Each stage command calls exactly one stage function.

This is the only place that turns exceptions into exit codes:

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
from pathlib import Path
from typing import Annotated, Optional

import typer

from tracesynth._version import __version__
from tracesynth.errors import TracesynthError

app = typer.Typer(
    name="tracesynth",
    help="Harvest verified reasoning traces from a teacher, curate them, and distil a student.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
recipe_app = typer.Typer(help="Inspect and validate recipes.", no_args_is_help=True)
app.add_typer(recipe_app, name="recipe")

_STATE = {"debug": False}

RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file.", show_default=False)]
SetOpt = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional here on 3.10
    typer.Option("--set", help="Override a recipe key: a.b.c=value (YAML value). Repeatable."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Plain log lines instead of live progress.")]


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
    _STATE["debug"] = debug


def _load(recipe: Path | None, overrides: list[str] | None):
    from tracesynth.config import load_recipe

    return load_recipe(recipe, overrides or [])


# -- recipes ---------------------------------------------------------------------------------
@recipe_app.command("show")
def recipe_show(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Print the resolved recipe (defaults < file < --set)."""
    from tracesynth.config import recipe_yaml

    typer.echo(recipe_yaml(_load(recipe, set_)), nl=False)


@recipe_app.command("check")
def recipe_check(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Validate a recipe: keys, types, referenced files and the sft block against TRL."""
    from tracesynth.preflight import check_recipe

    r = _load(recipe, set_)
    problems = check_recipe(r)
    for p in problems:
        typer.echo(f"warning: {p}", err=True)
    typer.echo(f"{recipe}: ok ({r.name}, run_dir {r.run_dir})")


# -- simulated teacher: flags generated from SimOptions (imports pydantic/typer only; server lazily)
def _register_sim_teacher() -> None:
    from tracesynth.sim.command import register

    register(app)


_register_sim_teacher()


# -- shipped data sets (tracesynth/data.py) ---------------------------------------------------
data_app = typer.Typer(help="The problem sets shipped with tracesynth.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("list")
def data_list() -> None:
    """Print every shipped set: name, split, rows, role, licence and sha256 (verified now)."""
    from tracesynth.errors import DataError
    from tracesynth.sources.builtin import registry, verified_path

    rows = [("name", "split", "rows", "role", "licence", "sha256", "check")]
    bad: list[str] = []
    for d in registry():
        try:
            verified_path(d)
            check = "ok"
        except DataError as exc:
            check = "MISMATCH"
            bad.append(str(exc))
        rows.append((d.name, d.split, str(d.rows), d.role, d.licence, d.sha256, check))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if bad:
        raise DataError(bad[0] + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))


# -- harvest (tracesynth/harvest.py, tracesynth/shards.py) ------------------------------------
@app.command("harvest")
def harvest_cmd(
    recipe: RecipeArg,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    shard: Annotated[
        Optional[str],  # noqa: UP045 - typer needs Optional here on 3.10
        typer.Option("--shard", help="Harvest a deterministic 1/N of the problems: I/N (own files; see merge)."),
    ] = None,
    batch: Annotated[bool, typer.Option("--batch", help="Use the provider's batch API (teacher.mode: batch).")] = False,
    export_batch: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--export-batch", help="Write batch input files into DIR (for `vllm run-batch`)."),
    ] = None,
    ingest: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--ingest", help="Take in a batch results file (`vllm run-batch` output)."),
    ] = None,
    retry_truncated: Annotated[
        bool, typer.Option("--retry-truncated", help="Re-ask only samples cut at max_tokens (raise it with --set).")
    ] = False,
    wait: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option("--wait/--no-wait", help="Batch mode: poll until every batch ends (teacher.batch.wait)."),
    ] = None,
) -> None:
    """Ask the teacher for every (problem, sample) not yet done; resumable, rate-limited, cost-capped."""
    r = _load(recipe, set_)
    if batch or export_batch or ingest or retry_truncated or wait is not None or r.teacher.mode == "batch":
        from tracesynth.stages.harvest.dispatch import harvest_variant

        result = harvest_variant(r, batch=batch, export_dir=export_batch, ingest=ingest,
                                 retry_truncated=retry_truncated, wait=wait, quiet=quiet, shard=shard)
    else:
        from tracesynth.stages.harvest.online import harvest

        result = harvest(r, quiet=quiet, shard=shard)
    typer.echo(result.summary_line(), err=True)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@app.command("merge")
def merge_cmd(run_dir: Annotated[Path, typer.Argument(help="The run folder whose shards/ to join.")]) -> None:
    """Join the shard folders written by `harvest --shard I/N` into the run folder (idempotent)."""
    from tracesynth.stages.harvest.shards import merge

    res = merge(run_dir)
    added = ", ".join(f"{v} {k}" for k, v in res.added.items())
    typer.echo(f"merged {len(res.shards)} shards into {res.run_dir}: added {added}")


# -- sft and eval (tracesynth/train/sft.py, tracesynth/evaluate.py) --------------------------------
@app.command("sft")
def sft_cmd(
    recipe: RecipeArg,
    set_: SetOpt = None,
    dataset: Annotated[
        Optional[Path],  # noqa: UP045 - typer needs Optional here on 3.10
        typer.Option("--dataset", help="Dataset folder (default: RUN_DIR/dataset)."),
    ] = None,
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output", help="Where to write the student (default: RUN_DIR/student)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Train again even if the student is up to date.")] = False,
) -> None:
    """Distil the exported dataset into the student with TRL's SFTTrainer (resumes from the last checkpoint)."""
    from tracesynth.stages.train.sft import sft

    result = sft(_load(recipe, set_), dataset_dir=dataset, output_dir=output, force=force)
    typer.echo(result.summary(), err=True)


@app.command("eval")
def eval_cmd(
    recipe: RecipeArg,
    set_: SetOpt = None,
    model: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--model", help="Checkpoint folder or served model name (default: RUN_DIR/student)."),
    ] = None,
    label: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--label", help="Name of this model in eval.json (default: after)."),
    ] = None,
    baseline: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option("--baseline/--no-baseline", help="Also evaluate the untrained/base student (eval.baseline)."),
    ] = None,
) -> None:
    """Score the student on the held-out set (pass@1 with CI, budget forcing); writes eval.json."""
    from tracesynth.stages.evaluate.stage import evaluate

    result = evaluate(_load(recipe, set_), model=model, label=label, baseline=baseline)
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(result.summary())


# -- curate and export (tracesynth/curate/, tracesynth/dataset.py) ----------------------------------
@app.command("curate")
def curate_cmd(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Verified samples -> traces.jsonl + curate.json (keep policy, dedup, decontamination, selection)."""
    from tracesynth.stages.curate import curate

    typer.echo(curate(_load(recipe, set_)).summary())


@app.command("export")
def export_cmd(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """traces.jsonl -> a Hugging Face dataset (save_to_disk + Parquet) with a dataset card and template.json."""
    from tracesynth.stages.export.dataset import export

    typer.echo(export(_load(recipe, set_)).summary())


@app.command("run")
def run_cmd(
    recipe: RecipeArg,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    only: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--only", help="Run only these stages (repeatable): harvest verify curate export sft eval report"),
    ] = None,
) -> None:
    """Run every stage end to end (resuming what is done), then print the summary."""
    from rich.console import Console
    from rich.table import Table

    from tracesynth.pipeline import STAGES, run
    from tracesynth.stages.report.report import summary_rows

    stages = tuple(only) if only else STAGES
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise typer.BadParameter(f"unknown stage {bad[0]!r}; stages are {', '.join(STAGES)}", param_hint="--only")
    result = run(_load(recipe, set_), quiet=quiet, stages=stages)
    table = Table(title=f"tracesynth run: {result.run_dir}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for stage, wall in result.wall_s.items():
        table.add_row(f"wall {stage}", f"{wall:,.1f} s")
    for what, value in summary_rows(result.run_dir):
        table.add_row(what, value)
    Console().print(table)


@app.command("report")
def report_cmd(run_dir: Annotated[Path, typer.Argument(help="The run folder.")]) -> None:
    """Write report.md and plots/*.png for a run folder from what its stages recorded."""
    from tracesynth.stages.report.report import build_report

    if not run_dir.is_dir():
        raise typer.BadParameter(f"{run_dir}: no such run folder", param_hint="RUN_DIR")
    typer.echo(build_report(run_dir))


@app.command("cost")
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
    import json

    from tracesynth.accounting.estimate import estimate

    est = estimate(_load(recipe, set_), problems=problems, pilot=pilot)
    if as_json:
        typer.echo(json.dumps(est.to_dict(), indent=2))
        return
    typer.echo(
        f"harvest: {est.requests:,} requests × ({est.prompt_tokens:,.0f} prompt + {est.completion_tokens:,.0f} "
        f"completion tokens) = ${est.harvest_usd:,.2f} online, ${est.harvest_batch_usd:,.2f} batch\n"
        f"training: {est.train_examples:,} examples, {est.train_tokens:,.0f} tokens, "
        f"{est.student_params_b:g}B params → {est.gpu_hours:,.1f} GPU-h ({est.wall_hours:,.2f} h wall) "
        f"= ${est.train_usd:,.2f}\n"
        f"total: ${est.total_usd:,.2f} (basis: {est.basis})"
    )


# -- verify (tracesynth/verify/) ---------------------------------------------------------------
@app.command("verify")
def verify_cmd(
    recipe: RecipeArg,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    workers: Annotated[
        Optional[int],  # noqa: UP045 - typer needs Optional here on 3.10
        typer.Option("--workers", help="Worker processes (default verify.workers)."),
    ] = None,
) -> None:
    """Verify harvested samples: one verdict per (sample, verifier) in verdicts.jsonl, counts in verify.json."""
    from tracesynth.stages.verify.stage import print_summary, verify

    print_summary(verify(_load(recipe, set_), workers=workers, progress=not quiet))


# -- batches (tracesynth/batch/) -----------------------------------------------------------------
@app.command("batches")
def batches_cmd(
    recipe: RecipeArg,
    set_: SetOpt = None,
    cancel: Annotated[bool, typer.Option("--cancel", help="Cancel every batch still running.")] = False,
) -> None:
    """Show the run's batches (live status); --cancel cancels the running ones (results so far are kept)."""
    from tracesynth.stages.harvest.batch.run import batch_status
    from tracesynth.stages.harvest.dispatch import batches_text

    typer.echo(batches_text(batch_status(_load(recipe, set_), cancel=cancel)))


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
        if _STATE["debug"]:
            traceback.print_exc()
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
