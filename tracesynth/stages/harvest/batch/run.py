"""Batch harvesting end to end: plan → write files → submit → poll → ingest; export and ingest for vLLM.

``harvest_batch(recipe)`` (``teacher.mode: batch`` / ``tracesynth harvest RECIPE --batch``):

1. takes the run folder's lock and reads the batch log (:mod:`~tracesynth.batch.state`);
2. finishes any logged submission a crash interrupted (reconciled against the provider, never twice);
3. plans the pending samples (:mod:`~tracesynth.batch.plan`; with ``retry_truncated`` the truncated
   ones), reserving each request's worst case at the *batch* price against ``teacher.budget_usd``
   (requests that would not fit are left for later: status ``budget``), writes them into files split by
   ``teacher.batch.max_requests`` / ``max_bytes`` and submits each file as soon as it is complete;
4. polls every batch in flight (``poll_s``, growing x1.5 to ``poll_max_s``) until all have ended
   (``teacher.batch.wait``; otherwise one look), downloading and ingesting each as it ends
   (:mod:`~tracesynth.batch.ingest`); expired, cancelled or missing requests become pending again;
5. writes ``harvest.json`` (``mode: batch``: counts, ledger with truncated / failed / retried spend and
   reasoning vs answer tokens, every batch) and returns a :class:`BatchHarvestResult`.

A kill at any point loses nothing: re-running resumes polling the same batch ids.

``export_batch(recipe, out_dir)`` writes the same files for ``vllm run-batch`` elsewhere (maps stay in the
run folder); ``ingest_results(recipe, path)`` takes a results file in with the same rules;
``batch_status(recipe, cancel=...)`` lists (and cancels) the run's batches without the lock.

This module orchestrates; files, submission, ingestion and bookkeeping live in their own modules.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tracesynth.config import Recipe
from tracesynth.errors import TeacherError
from tracesynth.rundir.store import RunStore
from tracesynth.stages.harvest.batch.context import (
    BatchHarvestResult,
    ProgressLog,
    RunContext,
    Status,
    describe,
    progress_line,
    start_sim,
)
from tracesynth.stages.harvest.batch.files import Part, PartWriter
from tracesynth.stages.harvest.batch.state import BatchRecord, BatchState
from tracesynth.stages.harvest.batch.submit import BatchAPI, BatchAPIError
from tracesynth.stages.harvest.plan import PendingRequest
from tracesynth.stages.harvest.writer import Ingestor


def _budgeted(run: RunContext, reqs: Iterator[PendingRequest], writer: PartWriter, *, reserve: bool) -> None:
    """Add requests to ``writer`` while their worst case fits the budget (each reserved until ingested)."""
    for r in reqs:
        worst = run.planner.worst_usd(r, run.prices)
        if reserve and not run.ledger.try_reserve(worst):
            run.counts["left_for_budget"] += 1  # at least this one; the rest are not planned (nor counted)
            return
        writer.add(r, worst)
        run.counts["submitted"] += 1


def _ingest(run: RunContext, api: BatchAPI, rec: BatchRecord, ingestor: Ingestor) -> None:
    """Download the output / error files of an ended batch and take them in (idempotent)."""
    lookup = run.lookup([rec])
    counts: Counter[str] = Counter()
    for which, fid in (("output", rec.output_file_id), ("error", rec.error_file_id)):
        if not fid:
            continue
        dest = run.state.folder / f"{rec.local}.{which}.jsonl"
        if not dest.exists():
            api.download(fid, dest)
        counts.update(ingestor.ingest_file(dest, lookup.get, rec.local, {"batch_id": rec.batch_id}))
    seen = counts["new"] + counts["failed"] + counts["duplicate"] + counts["not_run"] + counts["unknown"]
    counts["missing"] = max(0, rec.requests - seen)  # cancelled before they ran: in neither file
    run.ledger.release(rec.worst_usd)
    run.counts.update({k: v for k, v in counts.items() if k != "duplicate"})
    run.state.record("ingested", local=rec.local, status=rec.status, **dict(counts))


def _look(run: RunContext, api: BatchAPI, rec: BatchRecord) -> None:
    b = api.retrieve(rec.batch_id)
    counts = b.request_counts.model_dump() if b.request_counts is not None else {}
    if b.status != rec.status or counts != rec.counts:
        errors = [e.model_dump() for e in (b.errors.data or [])][:5] if b.errors is not None else []
        run.state.record("status", local=rec.local, status=b.status, counts=counts,
                         output_file_id=b.output_file_id, error_file_id=b.error_file_id, errors=errors)


MAX_POLL_FAILURES = 10  # consecutive failed polls (after the SDK's own retries) before giving up


def _poll(run: RunContext, api: BatchAPI, ingestor: Ingestor, log: ProgressLog, wait: bool) -> None:
    cfg = run.recipe.teacher.batch
    delay = cfg.poll_s
    failures = 0
    while True:
        for rec in run.state.active():
            if rec.batch_id is None:
                continue
            if not rec.final:
                try:
                    _look(run, api, rec)
                    failures = 0
                except BatchAPIError as exc:
                    if exc.status == 404:  # deleted, or made on another server: its requests are pending again
                        log(f"{rec.local}: the provider does not know batch {rec.batch_id} any more", force=True)
                        run.state.record("status", local=rec.local, status="lost", counts=rec.counts)
                    elif wait and exc.transient and failures < MAX_POLL_FAILURES:
                        failures += 1
                        log(f"poll failed ({failures}/{MAX_POLL_FAILURES}), will retry: {exc}", force=True)
                        continue
                    else:
                        raise
            if rec.final:
                _ingest(run, api, rec, ingestor)
        done = not wait or not any(r.batch_id for r in run.state.active())
        log(progress_line(run), force=done)
        if done:
            return
        time.sleep(delay)
        delay = min(delay * 1.5, cfg.poll_max_s)


def harvest_batch(recipe: Recipe, *, retry_truncated: bool = False, wait: bool | None = None, quiet: bool = False,
                  base_url: str | None = None) -> BatchHarvestResult:
    """Run (or resume) the batch harvest of ``recipe``; see the module docstring."""
    sim, base_url = start_sim(recipe, base_url)
    log = ProgressLog(quiet)
    try:
        with RunStore(recipe.run_dir) as store:
            for msg in store.recovered:
                log(f"recovered: {msg}")
            store.mark_stage("harvest", started_at=time.time(), recipe_hash=recipe.hash(), mode="batch")
            run = RunContext(recipe, store)
            api = BatchAPI.from_recipe(recipe, base_url)
            ingestor = Ingestor(store, model=recipe.teacher.model, prices=run.prices, ledger=run.ledger,
                                endpoint=api.base_url)
            for rec in run.state.active():  # batches of earlier runs: reserve, finish interrupted submissions
                run.ledger.reserved_usd += rec.worst_usd
                if rec.batch_id is None:
                    api.submit(run.state, rec, reconcile=True)

            def submit(part: Part) -> None:
                run.state.record("intent", local=part.name, input=str(part.path.relative_to(store.dir)),
                                 map=str(part.map_path.relative_to(store.dir)), requests=part.requests,
                                 bytes=part.bytes, sha256=part.sha256, worst_usd=part.worst_usd,
                                 retry=retry_truncated)
                api.submit(run.state, run.state.records[part.name], reconcile=False)

            cfg = recipe.teacher.batch
            writer = PartWriter(run.state.folder, lambda k: run.state.next_local("b"), max_requests=cfg.max_requests,
                                max_bytes=cfg.max_bytes, on_part=submit)
            _budgeted(run, run.requests(retry_truncated), writer, reserve=True)
            writer.close()
            _poll(run, api, ingestor, log, cfg.wait if wait is None else wait)
            status: Status = ("budget" if run.counts["left_for_budget"] else
                              "waiting" if run.state.active() else "complete")
            if status == "budget":
                msg = (f"budget ${run.ledger.budget_usd:g} reached: not every pending request was submitted; "
                       "raise teacher.budget_usd and re-run")
            elif status == "waiting":
                msg = "batches still running: re-run the same command to poll and ingest them"
            elif run.counts["not_run"] or run.counts["missing"]:
                msg = "some requests never ran (expired / cancelled): re-run to submit them again"
            else:
                msg = ""
            res = run.result(status, "batch", msg)
            run.write_summary(res)
            store.mark_stage("harvest", ended_at=time.time(), status=status, new=res.new, failed=res.failed,
                             spent_usd=res.spent_usd, mode="batch")
            return res
    finally:
        if sim is not None:
            sim.stop()


def export_batch(recipe: Recipe, out_dir: str | Path, *, retry_truncated: bool = False) -> BatchHarvestResult:
    """Write the pending requests as batch input files into ``out_dir`` (for ``vllm run-batch``)."""
    out = Path(out_dir).resolve()
    with RunStore(recipe.run_dir) as store:
        run = RunContext(recipe, store)

        def exported(part: Part) -> None:
            run.state.record("exported", local=part.name, input=str(part.path),
                             map=str(part.map_path.relative_to(store.dir)), requests=part.requests,
                             bytes=part.bytes, sha256=part.sha256, retry=retry_truncated)

        cfg = recipe.teacher.batch
        writer = PartWriter(out, lambda k: run.state.next_local("e"), max_requests=cfg.max_requests,
                            max_bytes=cfg.max_bytes, map_folder=run.state.folder, file_prefix=f"{recipe.name}-",
                            on_part=exported)
        _budgeted(run, run.requests(retry_truncated), writer, reserve=False)
        parts = writer.close()
        files = [str(p.path) for p in parts]
        msg = (f"run `vllm run-batch -i FILE -o OUT.jsonl --model {recipe.teacher.model}` on each file, then "
               f"`tracesynth harvest RECIPE --ingest OUT.jsonl`" if parts else "nothing pending: no file written")
        return run.result("exported", "export", msg, files)


def ingest_results(recipe: Recipe, path: str | Path) -> BatchHarvestResult:
    """Take in a batch results file (vLLM run-batch output or a provider's output/error file)."""
    src = Path(path)
    if not src.is_file():
        raise TeacherError(f"{src}: no such results file")
    with RunStore(recipe.run_dir) as store:
        run = RunContext(recipe, store)
        lookup = run.lookup(list(run.state.records.values()))
        sha = hashlib.sha256()
        with src.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                sha.update(chunk)
        tag = f"ingest-{sha.hexdigest()[:12]}"
        ingestor = Ingestor(store, model=recipe.teacher.model, prices=run.prices, ledger=run.ledger,
                            endpoint=f"file:{src.name}")
        counts = ingestor.ingest_file(src, lookup.get, tag)
        run.counts.update(counts)
        run.state.record("ingest_file", path=str(src.resolve()), sha256=sha.hexdigest(), **dict(counts))
        msg = f"{counts['unknown']} lines had a custom_id no exported file knows" if counts["unknown"] else ""
        if counts["torn_last_line"]:
            msg += " the last line was incomplete (skipped)"
        res = run.result("ingested", "ingest", msg.strip())
        run.write_summary(res)
        return res


def batch_status(recipe: Recipe, *, cancel: bool = False, refresh: bool = True) -> list[dict[str, Any]]:
    """The run's batches (live status from the provider when ``refresh``); ``cancel`` cancels the running ones.

    Reads the log without the run folder's lock, so it works beside a running ``harvest --batch`` (which
    sees the cancellation at its next poll and ingests the partial results).
    """
    state = BatchState(Path(recipe.run_dir))
    api = BatchAPI.from_recipe(recipe) if (refresh or cancel) and any(
        r.batch_id and r.ingested is None for r in state.records.values()) else None
    rows = []
    for rec in state.records.values():
        row = describe(rec)
        if api is not None and rec.batch_id and rec.ingested is None:
            b = api.cancel(rec.batch_id) if cancel and rec.status not in ("completed", "failed", "expired",
                                                                           "cancelled") else api.retrieve(rec.batch_id)
            row["status"] = b.status
            row["counts"] = b.request_counts.model_dump() if b.request_counts is not None else {}
            row["cancelled_now"] = cancel and b.status in ("cancelling", "cancelled")
        rows.append(row)
    return rows


__all__ = ["BatchHarvestResult", "batch_status", "export_batch", "harvest_batch", "ingest_results"]
