"""``tracesynth harvest``, ``merge`` and ``batches``: asking the teacher, in every mode."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from tracesynth.cli.common import ForceOpt, QuietOpt, RecipeArg, SetOpt, load


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
    until_verified: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            "--until-verified",
            min=1,
            help="Verify each reply as it arrives; ask again only where none passed, up to K per problem "
            "(teacher.until_verified; teacher.keep_per_problem passes stop it).",
        ),
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Ask the teacher for every (problem, sample) not yet done; resumable, rate-limited, cost-capped."""
    from tracesynth.stages.harvest import harvest

    sets = list(set_ or []) + ([f"teacher.until_verified={until_verified}"] if until_verified else [])
    result = harvest(
        load(recipe, sets),
        quiet=quiet,
        shard=shard,
        batch=batch,
        export_dir=export_batch,
        ingest=ingest,
        retry_truncated=retry_truncated,
        wait=wait,
        force=force,
    )
    typer.echo(result.summary_line(), err=True)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def merge_cmd(run_dir: Annotated[Path, typer.Argument(help="The run folder whose shards/ to join.")]) -> None:
    """Join the shard folders written by `harvest --shard I/N` into the run folder (idempotent)."""
    from tracesynth.stages.harvest.shards import merge

    res = merge(run_dir)
    added = ", ".join(f"{v} {k}" for k, v in res.added.items())
    typer.echo(f"merged {len(res.shards)} shards into {res.run_dir}: added {added}")


def batches_text(rows: list[dict[str, Any]]) -> str:
    """The table ``tracesynth batches`` prints."""
    if not rows:
        return "no batches in this run folder"
    head = ("local", "kind", "batch id", "status", "requests", "done", "failed", "ingested")
    table = [head]
    for r in rows:
        c, ing = r.get("counts") or {}, r.get("ingested")
        ingested = f"{ing.get('new', 0)} new, {ing.get('failed', 0)} failed" if ing else "-"
        table.append(
            (
                r["local"],
                r["kind"],
                r.get("batch_id") or "-",
                str(r["status"]),
                str(r["requests"]),
                str(c.get("completed", "-")),
                str(c.get("failed", "-")),
                ingested,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in table)


def batches_cmd(
    recipe: RecipeArg,
    set_: SetOpt = None,
    cancel: Annotated[bool, typer.Option("--cancel", help="Cancel every batch still running.")] = False,
) -> None:
    """Show the run's batches (live status); --cancel cancels the running ones (results so far are kept)."""
    from tracesynth.stages.harvest import batch_status

    typer.echo(batches_text(batch_status(load(recipe, set_), cancel=cancel)))


def register(app: typer.Typer) -> None:
    app.command("harvest")(harvest_cmd)
    app.command("merge")(merge_cmd)
    app.command("batches")(batches_cmd)
