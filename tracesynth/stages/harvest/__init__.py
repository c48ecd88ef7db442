"""The harvest stage: ask the teacher for every pending sample of a recipe — one entry point, five modes.

    tracesynth.harvest(recipe)                          # online (the default)
    tracesynth.harvest(recipe, batch=True)              # a provider's batch API   (teacher.mode: batch)
    tracesynth.harvest(recipe, export_dir="out/")       # files for `vllm run-batch` elsewhere
    tracesynth.harvest(recipe, ingest="results.jsonl")  # take such results in
    tracesynth.harvest(recipe, retry_truncated=True)    # re-ask what was cut at max_tokens (online or batch)

:func:`harvest` decides the mode once (refusing flag combinations that make no sense), starts the
simulated teacher when the recipe asks for it (the only place that does), takes the run folder's
lock, marks the stage, builds the :class:`~tracesynth.stages.harvest.run.HarvestRun` every mode
shares — the planner (:mod:`.plan`), the writer (:mod:`.writer`), the ledger, the result
(:mod:`.result`) — and hands it to the mode: :mod:`.online` or :mod:`.batch`. ``--shard I/N``
(:mod:`.shards`) splits an online harvest across machines.

Resume is the same everywhere: a sample id in ``samples.jsonl`` is never asked again; an id with
more failure rows than ``teacher.item_retries`` is given up; spend and possibly billed money of
earlier runs count against the same budget. A run that asked and got nothing back, or stopped on an
error, ends ``failed`` (exit 1); a killed one leaves ``running`` in ``harvest.json``, never ``complete``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracesynth.config import Recipe, load_recipe
from tracesynth.errors import UserError

if TYPE_CHECKING:
    from tracesynth.stages.harvest.result import HarvestResult, Mode


def _mode(
    recipe: Recipe, *, batch: bool, export_dir: Any, ingest: Any, retry_truncated: bool, wait: bool | None, shard: Any
) -> Mode:
    """The one place the mode is decided and flag combinations are checked."""
    batch = batch or recipe.teacher.mode == "batch"
    if export_dir is not None and ingest is not None:
        raise UserError("--export-batch and --ingest: one at a time (export, run vllm run-batch, then ingest)")
    if ingest is not None and retry_truncated:
        raise UserError("--ingest takes in any exported results; drop --retry-truncated")
    mode: Mode = (
        "ingest"
        if ingest is not None
        else "export"
        if export_dir is not None
        else "batch"
        if batch
        else "retry"
        if retry_truncated
        else "online"
    )
    if shard and mode != "online":
        raise UserError(
            "--shard: only for online harvesting (not with batch mode, --export-batch, --ingest or --retry-truncated)"
        )
    if recipe.teacher.until_verified is not None and mode in ("export", "ingest"):
        raise UserError(
            "teacher.until_verified: each round needs the verdicts of the last; harvest online or with --batch, "
            "not with --export-batch / --ingest"
        )
    if wait is not None and mode != "batch":
        raise UserError("--wait/--no-wait: only with batch mode (--batch or teacher.mode: batch)")
    return mode


@contextlib.contextmanager
def teacher_endpoint(recipe: Recipe, base_url: str | None = None) -> Iterator[list[str] | None]:
    """The base URLs to ask: ``base_url``, else a simulated teacher started for this harvest when the
    recipe enables it (stopped after), else None (the recipe's own ``teacher.base_urls``)."""
    if base_url is not None:
        yield [base_url]
        return
    if not recipe.teacher.sim.enabled:
        yield None
        return
    from tracesynth.sim import SimTeacher

    with SimTeacher(**recipe.teacher.sim.options) as sim:
        yield [sim.base_url]


def harvest(
    recipe: Recipe | str | Path,
    *,
    overrides: list[str] | None = None,
    quiet: bool = False,
    shard: str | tuple[int, int] | None = None,
    progress: bool | None = None,
    batch: bool = False,
    export_dir: str | Path | None = None,
    ingest: str | Path | None = None,
    retry_truncated: bool = False,
    wait: bool | None = None,
    base_url: str | None = None,
    force: bool = False,
) -> HarvestResult:
    """Run (or resume) the harvest of ``recipe`` in the mode the arguments ask for (see the module docstring)."""
    from tracesynth.rundir.store import RunStore
    from tracesynth.stages.harvest.run import HarvestRun
    from tracesynth.stages.harvest.shards import parse_shard, shard_dir
    from tracesynth.ui.progress import Progress

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides or [])
    mode = _mode(
        recipe,
        batch=batch,
        export_dir=export_dir,
        ingest=ingest,
        retry_truncated=retry_truncated,
        wait=wait,
        shard=shard,
    )
    sh = parse_shard(shard) if isinstance(shard, str) or shard is None else shard
    run_dir = shard_dir(recipe.run_dir, sh) if sh else Path(recipe.run_dir)
    view = Progress("harvest", quiet=quiet, live=progress, every_s=10.0 if mode == "online" else 2.0)
    asks = mode in ("online", "retry", "batch")
    with teacher_endpoint(recipe, base_url if asks else None) as urls, RunStore(run_dir, force=force) as store:
        for msg in [*store.recovered, *store.notes]:
            view.say(f"recovered: {msg}")
        endpoint = (urls or recipe.teacher.base_urls)[0] if asks else f"file:{Path(str(ingest or export_dir)).name}"
        with store.stage_run("harvest", mode=mode, retry_truncated=retry_truncated, recipe_hash=recipe.hash()) as mark:
            run = HarvestRun(
                recipe, store, mode=mode, retry_truncated=retry_truncated, view=view, endpoint=endpoint, shard=sh
            )
            if asks:
                run.write_summary(run.result("running"))
            result = _run_mode(run, mode, urls, export_dir=export_dir, ingest=ingest, wait=wait)
            mark.update(status=result.status, new=result.new, failed=result.failed, spent_usd=result.spent_usd)
    return result


def _run_mode(
    run: Any, mode: Mode, urls: list[str] | None, *, export_dir: Any, ingest: Any, wait: bool | None
) -> HarvestResult:
    if mode in ("online", "retry"):
        from tracesynth.stages.harvest.online import harvest_online

        return harvest_online(run, urls)
    from tracesynth.stages.harvest.batch import run as batch

    if mode == "batch":
        return batch.harvest_batch(run, base_url=urls[0] if urls else None, wait=wait)
    if mode == "export":
        return batch.export_batch(run, export_dir)
    return batch.ingest_results(run, ingest)


# -- the public API's names for the other modes --------------------------------------------------
def harvest_batch(
    recipe: Recipe,
    *,
    retry_truncated: bool = False,
    wait: bool | None = None,
    quiet: bool = False,
    base_url: str | None = None,
) -> HarvestResult:
    """``harvest(recipe, batch=True, ...)``: the provider's batch API."""
    return harvest(recipe, batch=True, retry_truncated=retry_truncated, wait=wait, quiet=quiet, base_url=base_url)


def export_batch(recipe: Recipe, out_dir: str | Path, *, retry_truncated: bool = False) -> HarvestResult:
    """``harvest(recipe, export_dir=out_dir)``: batch input files for ``vllm run-batch``."""
    return harvest(recipe, export_dir=out_dir, retry_truncated=retry_truncated, quiet=True)


def ingest_results(recipe: Recipe, path: str | Path) -> HarvestResult:
    """``harvest(recipe, ingest=path)``: take in a batch results file."""
    return harvest(recipe, ingest=path, quiet=True)


def retry_truncated(
    recipe: Recipe, *, batch: bool = False, quiet: bool = False, base_url: str | None = None
) -> HarvestResult:
    """``harvest(recipe, retry_truncated=True)``: re-ask the samples cut at max_tokens, with the current one."""
    return harvest(recipe, retry_truncated=True, batch=batch, quiet=quiet, base_url=base_url)


def batch_status(recipe: Recipe, *, cancel: bool = False, refresh: bool = True) -> list[dict[str, Any]]:
    """The run's provider batches (see :func:`tracesynth.stages.harvest.batch.run.batch_status`)."""
    from tracesynth.stages.harvest.batch.run import batch_status as status

    return status(recipe, cancel=cancel, refresh=refresh)


def __getattr__(name: str) -> Any:
    if name in ("HarvestResult", "BatchHarvestResult"):
        from tracesynth.stages.harvest.result import HarvestResult

        return HarvestResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["batch_status", "export_batch", "harvest", "harvest_batch", "ingest_results", "retry_truncated"]
