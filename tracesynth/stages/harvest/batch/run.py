"""Batch harvesting end to end: plan → write files → submit → poll → ingest; export and ingest for vLLM.

:func:`harvest_batch` (``teacher.mode: batch`` / ``tracesynth harvest RECIPE --batch``):

1. reads the batch log (:mod:`.state`) and finishes any logged submission a crash interrupted
   (reconciled against the provider, never twice); batches of earlier runs keep their reservation;
2. plans the pending requests (the harvest's planner: fresh, or truncated with ``--retry-truncated``),
   reserving each request's worst case at the *batch* price against ``teacher.budget_usd``
   (requests that would not fit are left for later: status ``budget``), writes them into files split by
   ``teacher.batch.max_requests`` / ``max_bytes`` and submits each file as soon as it is complete;
3. polls every batch in flight (``poll_s``, growing x1.5 to ``poll_max_s``) until all have ended
   (``teacher.batch.wait``; otherwise one look), downloading and ingesting each as it ends
   (:mod:`.ingest`); expired, cancelled or missing requests become pending again. Each batch is a
   round: a re-run after one ends asks what is still missing. Sampling until verified
   (``teacher.until_verified``), the rounds follow each other in one run (with ``wait``): each is
   planned from the verdicts of the last (:func:`~tracesynth.stages.harvest.until.round_requests`).

A kill at any point loses nothing: re-running resumes polling the same batch ids.

:func:`export_batch` writes the same files for ``vllm run-batch`` elsewhere (maps stay in the run
folder); :func:`ingest_results` takes a results file in with the same rules; :func:`batch_status`
lists (and cancels) the run's batches without the lock.

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
from tracesynth.stages.harvest.batch.files import Part, PartWriter
from tracesynth.stages.harvest.batch.ingest import ingest_file
from tracesynth.stages.harvest.batch.state import BatchRecord, BatchState
from tracesynth.stages.harvest.batch.submit import BatchAPI, BatchAPIError
from tracesynth.stages.harvest.plan import PendingRequest
from tracesynth.stages.harvest.result import HarvestResult, Status
from tracesynth.stages.harvest.run import HarvestRun

MAX_POLL_FAILURES = 10  # consecutive failed polls (after the SDK's own retries) before giving up


def _budgeted(run: HarvestRun, reqs: Iterator[PendingRequest], writer: PartWriter, *, reserve: bool) -> int:
    """Add requests to ``writer`` while their worst case fits the budget (each reserved until ingested)."""
    n = 0
    for r in reqs:
        worst = run.worst_usd(r)
        if reserve and not run.ledger.try_reserve(worst):
            run.left_for_budget += 1  # at least this one; the rest are not planned (nor counted)
            break
        writer.add(r, worst)
        n += 1
    return n


def _lookup(state: BatchState, records: list[BatchRecord]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for rec in records:
        for e in state.map_entries(rec):
            out[e["id"]] = e
    return out


class _Batches:
    """The remote batches of one run: submit, poll, ingest (with the counts the result needs)."""

    def __init__(self, run: HarvestRun, api: BatchAPI) -> None:
        self.run, self.api = run, api
        self.state = BatchState(run.store)
        self.returned = 0

    def ingest(self, rec: BatchRecord) -> None:
        """Download the output / error files of an ended batch and take them in (idempotent)."""
        lookup = _lookup(self.state, [rec])
        counts: Counter[str] = Counter()
        for which, fid in (("output", rec.output_file_id), ("error", rec.error_file_id)):
            if not fid:
                continue
            dest = self.state.folder / f"{rec.local}.{which}.jsonl"
            if not dest.exists():
                self.api.download(fid, dest)
            counts.update(ingest_file(self.run.writer, dest, lookup.get, rec.local, {"batch_id": rec.batch_id}))
        seen = sum(counts[k] for k in ("new", "failed", "duplicate", "not_run", "unknown"))
        counts["missing"] = max(0, rec.requests - seen)  # cancelled before they ran: in neither file
        self.returned += counts["not_run"] + counts["missing"]
        self.run.ledger.release(rec.worst_usd)
        self.state.record(
            "ingested",
            local=rec.local,
            status=rec.status,
            **{k: v for k, v in counts.items() if not k.startswith("error:")},
        )

    def look(self, rec: BatchRecord) -> None:
        assert rec.batch_id is not None
        b = self.api.retrieve(rec.batch_id)
        counts = b.request_counts.model_dump() if b.request_counts is not None else {}
        if b.status != rec.status or counts != rec.counts:
            errors = [e.model_dump() for e in (b.errors.data or [])][:5] if b.errors is not None else []
            self.state.record(
                "status",
                local=rec.local,
                status=b.status,
                counts=counts,
                output_file_id=b.output_file_id,
                error_file_id=b.error_file_id,
                errors=errors,
            )

    def poll(self, wait: bool) -> None:
        cfg = self.run.recipe.teacher.batch
        delay, failures = cfg.poll_s, 0
        while True:
            for rec in self.state.active():
                if rec.batch_id is None:
                    continue
                if not rec.final:
                    try:
                        self.look(rec)
                        failures = 0
                    except BatchAPIError as exc:
                        if exc.status == 404:  # deleted, or made on another server: its requests are pending again
                            self.run.view.say(f"{rec.local}: the provider does not know batch {rec.batch_id} any more")
                            self.state.record("status", local=rec.local, status="lost", counts=rec.counts)
                        elif wait and exc.transient and failures < MAX_POLL_FAILURES:
                            failures += 1
                            self.run.view.say(f"poll failed ({failures}/{MAX_POLL_FAILURES}), will retry: {exc}")
                            continue
                        else:
                            raise
                if rec.final:
                    self.ingest(rec)
            done = not wait or not any(r.batch_id for r in self.state.active())
            self.run.view.line(self.progress(), force=done)
            if done:
                return
            time.sleep(delay)
            delay = min(delay * 1.5, cfg.poll_max_s)

    def progress(self) -> str:
        recs = [r for r in self.state.records.values() if r.kind == "remote"]
        by = Counter((r.status or "submitting") if r.ingested is None else "ingested" for r in recs)
        running = [
            f"{r.local} {r.counts.get('completed', 0) + r.counts.get('failed', 0)}/{r.requests}"
            for r in recs
            if r.ingested is None and r.status == "in_progress"
        ][:3]
        c, led = self.run.writer.counts, self.run.ledger
        return (
            f"batches {', '.join(f'{v} {k}' for k, v in sorted(by.items())) or 'none'}"
            f"{' (' + ', '.join(running) + ')' if running else ''}; {c['new']} new samples, "
            f"{c['failed']} failed, {c['truncated']} truncated; spent ${led.spent_usd:.4f} ({led.spend_line()})"
        )


def harvest_batch(run: HarvestRun, *, base_url: str | None = None, wait: bool | None = None) -> HarvestResult:
    """Run (or resume) the batch harvest of ``run``; see the module docstring."""
    recipe = run.recipe
    api = BatchAPI.from_recipe(recipe, base_url)
    batches = _Batches(run, api)
    state = batches.state
    for rec in state.active():  # batches of earlier runs: reserve, finish interrupted submissions
        run.ledger.reserved_usd += rec.worst_usd
        if rec.batch_id is None:
            api.submit(state, rec, reconcile=True)

    def submit(part: Part) -> None:
        state.record(
            "intent",
            local=part.name,
            input=str(part.path.relative_to(run.store.dir)),
            map=str(part.map_path.relative_to(run.store.dir)),
            requests=part.requests,
            bytes=part.bytes,
            sha256=part.sha256,
            worst_usd=part.worst_usd,
            retry=run.retry,
        )
        api.submit(state, state.records[part.name], reconcile=False)

    cfg = recipe.teacher.batch
    wait = cfg.wait if wait is None else wait
    submitted = 0
    while True:
        writer = PartWriter(
            state.folder,
            lambda k: state.next_local("b"),
            max_requests=cfg.max_requests,
            max_bytes=cfg.max_bytes,
            on_part=submit,
        )
        this_round = _budgeted(run, run.requests(state.reserved_ids()), writer, reserve=True)
        writer.close()
        submitted += this_round
        batches.poll(wait)
        # sampling until verified: each round is planned from the verdicts of the last (run.requests
        # verifies what the round brought in); it ends when a round has nothing left to ask
        if not (run.until_verified and wait and this_round) or run.left_for_budget or state.active():
            break
    if run.until_verified and not state.active():
        from tracesynth.stages.harvest.until import verify_pending

        verify_pending(run)  # the last round's replies get their verdicts, as every round's before it
    active = state.active()
    status: Status = "budget" if run.left_for_budget else "waiting" if active else "complete"
    if status == "budget":
        msg = (
            f"budget ${run.ledger.budget_usd:g} reached: not every pending request was submitted; "
            "raise teacher.budget_usd and re-run"
        )
    elif status == "waiting":
        msg = "batches still running: re-run the same command to poll and ingest them"
    elif batches.returned:
        msg = "some requests never ran (expired / cancelled): re-run to submit them again"
    else:
        msg = ""
    c = run.writer.counts
    if status == "complete" and c["new"] == 0 and c["failed"] > 0:
        status, msg = "failed", f"every request of the batches failed ({run.writer.errors_by_kind()})"
    res = run.result(
        status,
        message=msg,
        submitted=submitted,
        in_batches=sum(r.requests for r in active),
        returned=batches.returned,
        batches=[r.describe() for r in state.records.values()],
    )
    run.write_summary(res)
    return res


def export_batch(run: HarvestRun, out_dir: str | Path) -> HarvestResult:
    """Write the pending requests as batch input files into ``out_dir`` (for ``vllm run-batch``)."""
    out = Path(out_dir).resolve()
    state = BatchState(run.store)
    recipe = run.recipe

    def exported(part: Part) -> None:
        state.record(
            "exported",
            local=part.name,
            input=str(part.path),
            map=str(part.map_path.relative_to(run.store.dir)),
            requests=part.requests,
            bytes=part.bytes,
            sha256=part.sha256,
            retry=run.retry,
        )

    cfg = recipe.teacher.batch
    writer = PartWriter(
        out,
        lambda k: state.next_local("e"),
        max_requests=cfg.max_requests,
        max_bytes=cfg.max_bytes,
        map_folder=state.folder,
        file_prefix=f"{recipe.name.replace('/', '-')}-",
        on_part=exported,
    )
    submitted = _budgeted(run, run.requests(), writer, reserve=False)
    parts = writer.close()
    files = [str(p.path) for p in parts]
    msg = (
        f"run `python -m vllm.entrypoints.openai.run_batch -i FILE -o OUT.jsonl --model MODEL_DIR "
        f"--served-model-name {recipe.teacher.model}` on each file, then `tracesynth harvest RECIPE --ingest "
        f"OUT.jsonl`"
        if parts
        else "nothing pending: no file written"
    )
    return run.result("exported", message=msg, submitted=submitted, files=files)


def ingest_results(run: HarvestRun, path: str | Path) -> HarvestResult:
    """Take in a batch results file (vLLM run-batch output or a provider's output/error file)."""
    src = Path(path)
    if not src.is_file():
        raise TeacherError(f"{src}: no such results file")
    state = BatchState(run.store)
    lookup = _lookup(state, list(state.records.values()))
    sha = hashlib.sha256()
    with src.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha.update(chunk)
    tag = f"ingest-{sha.hexdigest()[:12]}"
    run.writer.endpoint = f"file:{src.name}"
    counts = ingest_file(run.writer, src, lookup.get, tag)
    state.record(
        "ingest_file",
        path=str(src.resolve()),
        sha256=sha.hexdigest(),
        **{k: v for k, v in counts.items() if not k.startswith("error:")},
    )
    msg = f"{counts['unknown']} lines had a custom_id no exported file knows" if counts["unknown"] else ""
    if counts["torn_last_line"]:
        msg += " the last line was incomplete (skipped)"
    res = run.result("ingested", message=msg.strip())
    run.write_summary(res, ingest={k: v for k, v in counts.items() if not k.startswith("error:")})
    return res


def batch_status(recipe: Recipe, *, cancel: bool = False, refresh: bool = True) -> list[dict[str, Any]]:
    """The run's batches (live status from the provider when ``refresh``); ``cancel`` cancels the running ones.

    Reads the log without the run folder's lock, so it works beside a running ``harvest --batch`` (which
    sees the cancellation at its next poll and ingests the partial results).
    """
    state = BatchState(Path(recipe.run_dir))
    api = (
        BatchAPI.from_recipe(recipe)
        if (refresh or cancel) and any(r.batch_id and r.ingested is None for r in state.records.values())
        else None
    )
    rows = []
    for rec in state.records.values():
        row = rec.describe()
        if api is not None and rec.batch_id and rec.ingested is None:
            ended = rec.status in ("completed", "failed", "expired", "cancelled")
            b = api.cancel(rec.batch_id) if cancel and not ended else api.retrieve(rec.batch_id)
            row["status"] = b.status
            row["counts"] = b.request_counts.model_dump() if b.request_counts is not None else {}
            row["cancelled_now"] = cancel and b.status in ("cancelling", "cancelled")
        rows.append(row)
    return rows


__all__ = ["batch_status", "export_batch", "harvest_batch", "ingest_results"]
