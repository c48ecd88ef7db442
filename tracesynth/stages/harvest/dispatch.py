"""What the CLI's ``harvest --batch / --export-batch / --ingest / --retry-truncated`` and ``batches`` do.

Kept out of cli.py so the command functions there stay a few lines: option checks (one-line
:class:`~tracesynth.errors.UserError` for combinations that make no sense), dispatch to the stage
functions, and the text of ``tracesynth batches``. Imports nothing heavy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tracesynth.config import Recipe
from tracesynth.errors import UserError


def harvest_variant(recipe: Recipe, *, batch: bool = False, export_dir: Path | None = None,
                    ingest: Path | None = None, retry_truncated: bool = False, wait: bool | None = None,
                    quiet: bool = False, shard: str | None = None) -> Any:
    """Run the harvest variant the flags ask for (see tracesynth.batch)."""
    batch = batch or recipe.teacher.mode == "batch"
    if shard and (batch or export_dir or ingest or retry_truncated):
        raise UserError("--shard: only for online harvesting (not with batch mode, --export-batch, --ingest or "
                        "--retry-truncated)")
    if export_dir is not None and ingest is not None:
        raise UserError("--export-batch and --ingest: one at a time (export, run vllm run-batch, then ingest)")
    if ingest is not None:
        if retry_truncated:
            raise UserError("--ingest takes in any exported results; drop --retry-truncated")
        from tracesynth.stages.harvest.batch.run import ingest_results

        return ingest_results(recipe, ingest)
    if export_dir is not None:
        from tracesynth.stages.harvest.batch.run import export_batch

        return export_batch(recipe, export_dir, retry_truncated=retry_truncated)
    if batch:
        from tracesynth.stages.harvest.batch.run import harvest_batch

        return harvest_batch(recipe, retry_truncated=retry_truncated, wait=wait, quiet=quiet)
    if wait is not None:
        raise UserError("--wait/--no-wait: only with batch mode (--batch or teacher.mode: batch)")
    from tracesynth.stages.harvest.retry import retry_truncated as retry

    return retry(recipe, quiet=quiet)


def batches_text(rows: list[dict[str, Any]]) -> str:
    """The table ``tracesynth batches`` prints."""
    if not rows:
        return "no batches in this run folder"
    head = ("local", "kind", "batch id", "status", "requests", "done", "failed", "ingested")
    table = [head]
    for r in rows:
        c, ing = r.get("counts") or {}, r.get("ingested")
        ingested = f"{ing.get('new', 0)} new, {ing.get('failed', 0)} failed" if ing else "-"
        table.append((r["local"], r["kind"], r.get("batch_id") or "-", str(r["status"]), str(r["requests"]),
                      str(c.get("completed", "-")), str(c.get("failed", "-")), ingested))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in table)


__all__ = ["batches_text", "harvest_variant"]
