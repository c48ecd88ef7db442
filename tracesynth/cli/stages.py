"""``tracesynth verify | classify | rewrite | curate | export | sft | eval | report | run``: one stage function each,
and the chain."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from tracesynth.cli.common import ForceOpt, QuietOpt, RecipeArg, SetOpt, load


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

    print_summary(verify(load(recipe, set_), workers=workers, progress=not quiet))


def rewrite_cmd(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Rewrite the traces that passed verify into Sky-T1's thought / solution blocks (rewrites.jsonl)."""
    from tracesynth.stages.rewrite import rewrite

    typer.echo(rewrite(load(recipe, set_)).summary())


def classify_cmd(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Label every problem with a two-digit MSC domain as s1 did (domains.jsonl; the `classify:` section)."""
    from tracesynth.stages.classify import classify

    typer.echo(classify(load(recipe, set_)).summary())


def curate_cmd(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Verified samples -> traces.jsonl + curate.json (keep policy, dedup, decontamination, selection)."""
    from tracesynth.stages.curate import curate

    typer.echo(curate(load(recipe, set_)).summary())


def export_cmd(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """traces.jsonl -> a Hugging Face dataset (Parquet) with a dataset card and template.json."""
    from tracesynth.stages.export import export

    typer.echo(export(load(recipe, set_)).summary())


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
    from tracesynth.stages.train.trainer import sft

    result = sft(load(recipe, set_), dataset_dir=dataset, output_dir=output, force=force)
    if os.environ.get("RANK", "0") == "0":  # under `accelerate launch` every rank returns: the main one reports
        typer.echo(result.summary(), err=True)


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
    """Score the student on the held-out set (pass@1 with CI, thinking caps); writes eval.json."""
    from tracesynth.stages.evaluate import evaluate

    result = evaluate(load(recipe, set_), model=model, label=label, baseline=baseline)
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(result.summary())


def report_cmd(run_dir: Annotated[Path, typer.Argument(help="The run folder.")]) -> None:
    """Write report.md and plots/*.png for a run folder from what its stages recorded."""
    from tracesynth.stages.report import build_report

    if not run_dir.is_dir():
        raise typer.BadParameter(f"{run_dir}: no such run folder", param_hint="RUN_DIR")
    typer.echo(build_report(run_dir))


def run_cmd(
    recipe: RecipeArg,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    only: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            "--only",
            help="Run only these stages (repeatable): harvest verify classify rewrite curate export sft eval report",
        ),
    ] = None,
    force: ForceOpt = False,
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
    result = run(load(recipe, set_), quiet=quiet, stages=stages, force=force)
    table = Table(title=f"tracesynth run: {result.run_dir}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for stage, wall in result.wall_s.items():
        table.add_row(f"wall {stage}", f"{wall:,.1f} s")
    for what, value in summary_rows(result.run_dir):
        table.add_row(what, value)
    Console().print(table)


def register(app: typer.Typer) -> None:
    for name, fn in (
        ("verify", verify_cmd),
        ("classify", classify_cmd),
        ("rewrite", rewrite_cmd),
        ("curate", curate_cmd),
        ("export", export_cmd),
        ("sft", sft_cmd),
        ("eval", eval_cmd),
        ("report", report_cmd),
        ("run", run_cmd),
    ):
        app.command(name)(fn)
