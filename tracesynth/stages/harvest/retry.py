"""``tracesynth harvest RECIPE --retry-truncated``: re-ask only the samples cut at max_tokens, online.

Which samples and which ids: :meth:`tracesynth.batch.plan.Planner.truncated` — this recipe's live
rows with ``finish_reason == "length"`` that ran with fewer tokens than the current
``teacher.sampling.max_tokens``; each re-ask has the id :func:`~tracesynth.batch.plan.retry_id`
(old id, depth), ``supersedes`` the old row and records ``metadata.root`` / ``retry`` / ``max_tokens``.
Complete samples are never asked again.

Requests go through the same :class:`~tracesynth.teacher.client.TeacherClient` as the harvester
(same body, retries, rate limits, timeouts), results through the same writer as batch ingestion
(:class:`~tracesynth.batch.ingest.Ingestor`: same normalisation, ``samples.jsonl`` /
``failures.jsonl``), and money through the same :class:`~tracesynth.teacher.pricing.Ledger`:
each request reserves its worst case against ``teacher.budget_usd`` first; spend is counted as
``retried_usd`` (and ``truncated_usd`` again if the longer answer is still cut); a timed-out
request is counted as possibly billed. Each answer is written as it arrives, so a kill loses at most
the requests in flight; a re-run asks only what is still missing. With ``batch=True`` the same
re-asks go through the provider's batch API instead (:func:`tracesynth.batch.harvest_batch`).

This module schedules the re-asks; choosing them is plan.py, writing them ingest.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tracesynth.accounting.prices import require_prices
from tracesynth.config import Recipe
from tracesynth.rundir.store import RunStore
from tracesynth.stages.harvest.batch.context import BatchHarvestResult, ProgressLog, RunContext, start_sim
from tracesynth.stages.harvest.plan import PendingRequest
from tracesynth.stages.harvest.writer import Ingestor
from tracesynth.teacher.client import TeacherClient
from tracesynth.teacher.retry import ItemError


async def _ask_all(run: RunContext, client: TeacherClient, ingestor: Ingestor, log: ProgressLog) -> None:
    t = run.recipe.teacher
    tasks: set[asyncio.Task[None]] = set()
    counts = run.counts

    async def one(req: PendingRequest, worst: float) -> None:
        entry = req.map_entry()
        try:
            r = await client.chat(req.body["messages"], sampling=t.sampling, seed_offset=req.index)
        except ItemError as exc:
            billed = worst * exc.possibly_billed
            run.ledger.possibly_billed(billed)
            ingestor.write_failure(entry, exc.kind, str(exc), counts, endpoint=exc.endpoint, billed_usd=billed)
            return
        finally:
            run.ledger.release(worst)
        run.ledger.possibly_billed(worst * r.possibly_billed)
        meta: dict[str, Any] = {"attempts": r.attempts} if r.attempts > 1 else {}
        ingestor.write_sample(entry, r.choices[0], r.usage, counts, served=r.model, meta=meta, endpoint=r.endpoint,
                              latency_s=r.latency_s)

    try:
        for req in run.requests(retry_truncated=True):
            worst = run.planner.worst_usd(req, run.prices)
            while not run.ledger.try_reserve(worst):
                if not tasks:  # would not fit even alone: stop cleanly
                    counts["left_for_budget"] += 1
                    return
                _, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                _reap(tasks)
            while len(tasks) >= t.concurrency:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                _reap(tasks)
            task = asyncio.create_task(one(req, worst))
            tasks.add(task)
            counts["submitted"] += 1
        while tasks:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            _reap(tasks)
            log(f"retry-truncated: {counts['new']} re-asked, {len(tasks)} in flight")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _reap(tasks: set[asyncio.Task[None]]) -> None:
    """Drop finished tasks; re-raise the first error (AuthError stops everything)."""
    for task in [x for x in tasks if x.done()]:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def retry_truncated(recipe: Recipe, *, batch: bool = False, quiet: bool = False,
                    base_url: str | None = None) -> BatchHarvestResult:
    """Re-ask the truncated samples of ``recipe`` with its current max_tokens (see the module docstring)."""
    if batch:
        from tracesynth.stages.harvest.batch.run import harvest_batch

        return harvest_batch(recipe, retry_truncated=True, quiet=quiet, base_url=base_url)
    sim, base_url = start_sim(recipe, base_url)
    log = ProgressLog(quiet)
    try:
        with RunStore(recipe.run_dir) as store:
            store.mark_stage("harvest", started_at=time.time(), recipe_hash=recipe.hash(), mode="retry_truncated")
            run = RunContext(recipe, store)
            run.prices = require_prices(recipe.teacher.model, recipe.teacher.prices, recipe.teacher.budget_usd)
            client = TeacherClient.from_config(recipe.teacher, base_urls=[base_url] if base_url else None)
            ingestor = Ingestor(store, model=recipe.teacher.model, prices=run.prices, ledger=run.ledger,
                                endpoint=client.pool.endpoints[0].url)

            async def main() -> None:
                try:
                    await _ask_all(run, client, ingestor, log)
                finally:
                    await client.aclose()

            asyncio.run(main())
            status = "budget" if run.counts["left_for_budget"] else "complete"
            st = run.planner.stats
            msg = (f"{st['truncated']} truncated samples; {st['not_larger']} not re-asked because max_tokens is not "
                   f"larger than what they ran with" if st["not_larger"] else "")
            res = run.result(status, "retry", msg)
            run.write_summary(res)
            store.mark_stage("harvest", ended_at=time.time(), status=status, new=res.new, failed=res.failed,
                             spent_usd=res.spent_usd, mode="retry_truncated")
            return res
    finally:
        if sim is not None:
            sim.stop()


__all__ = ["retry_truncated"]
