"""The harvest stage: stream problems, ask the teacher n samples each, append Samples, resume, stop cleanly.

``tracesynth.harvest(recipe)`` / ``tracesynth harvest RECIPE``:

* Problems are streamed from the source (:func:`tracesynth.sources.iter_problems`) into a bounded
  queue (2 x concurrency jobs); only ids are held for the whole run, so memory stays flat.
* Each (problem, index) has a stable sample id. Ids already in ``samples.jsonl`` are skipped; an id
  whose rows in ``failures.jsonl`` number more than ``teacher.item_retries`` is given up; the others
  are asked. Successes go to ``samples.jsonl``, item errors to ``failures.jsonl`` (with reason and
  kind). Every record is one whole line (see store.py), written right after its response, so a
  kill -9 loses at most the requests in flight — never a duplicate, never a torn record.
* ``teacher.n`` samples per problem: one call with ``n`` choices when ``teacher.api_n``, else one call
  per index (with ``seed + index`` when a seed is set, so the samples differ).
* Money: every Sample carries its cost; the ledger (teacher/pricing.py) reserves each request's worst
  case before it starts and refuses it when that could break ``teacher.budget_usd`` (cumulative over
  resumes). A refused request waits for requests in flight to settle; when it would not fit even
  alone, the run stops cleanly (status ``budget``) saying how far it got.
* SIGINT / SIGTERM: stop taking new work, wait up to ``teacher.stop_grace_s`` for requests in flight,
  write what arrived and harvest.json, return status ``interrupted`` (CLI exit 130 / 143). A second
  signal stops at once. 401/403 stops everything at once and raises AuthError (exit 2).

This module schedules and records; talking HTTP is teacher/, display and summary harvest_progress.py.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracesynth.accounting.prices import DEFAULT_WORST_OUTPUT_TOKENS, Ledger, Prices, require_prices
from tracesynth.config import Recipe, load_recipe
from tracesynth.errors import AuthError, TeacherError
from tracesynth.records import Problem, Sample, Usage, sample_ids
from tracesynth.rundir.store import JsonlStage, RunStore
from tracesynth.stages.harvest.progress import (
    HarvestResult,
    HarvestStats,
    ProgressView,
    Status,
    status_line,
    write_summary,
)
from tracesynth.stages.harvest.shards import in_shard, parse_shard, shard_dir
from tracesynth.teacher.client import ChatResult, TeacherClient, estimate_tokens
from tracesynth.teacher.retry import ItemError

# item errors that say more about the endpoint than about the item (see _Engine._breaker)
UNHEALTHY_KINDS = frozenset({"connection", "dropped", "timeout", "protocol", "server_error", "bad_gateway",
                             "unavailable", "gateway_timeout", "rate_limited"})
# the producer yields to the event loop after this many jobs (see _Engine.produce)
_RAMP_CHUNK = 16


@dataclass(slots=True)
class _Job:
    problem: Problem
    messages: list[dict[str, Any]]
    indices: list[int]
    ids: list[str]
    attempts: list[int]  # attempt number of each index (1 + earlier failures)


class _Engine:
    def __init__(self, recipe: Recipe, store: RunStore, shard: tuple[int, int] | None, view: ProgressView,
                 base_urls: list[str] | None) -> None:
        from tracesynth.sources.prompts import template_hash

        self.recipe, self.t, self.store, self.shard, self.view = recipe, recipe.teacher, store, shard, view
        self.prices: Prices | None = require_prices(self.t.model, self.t.prices, self.t.budget_usd)
        self.samples: JsonlStage[Sample] = store.stage("samples", Sample, key="id")
        self.failures: JsonlStage[Sample] = store.stage("failures", Sample, key=None)
        self.problems: JsonlStage[Problem] = store.stage("problems", Problem, key="id")
        spent, billed, self.fail_counts = _scan_prior(self.samples.path, self.failures.path, self.samples.keys)
        self.ledger = Ledger(self.t.budget_usd, spent_usd=spent, possibly_billed_usd=billed)
        self.start_spent = spent
        self.client = TeacherClient.from_config(self.t, base_urls=base_urls)
        self.stats = HarvestStats()
        self.template_hash = template_hash(recipe.prompt)
        self.id_sampling = self.t.sampling.model_dump()
        self.sample_id = sample_ids(self.t.model, self.id_sampling, self.template_hash)
        self.sampling = dict(self.id_sampling)  # request parameters (a dict: no model_dump per call)
        self.max_out = self.t.sampling.max_tokens or DEFAULT_WORST_OUTPUT_TOKENS
        self.queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=2 * self.t.concurrency)
        self.stop_reason: str | None = None
        self.fatal: BaseException | None = None
        self.abandoned = 0
        self.unhealthy_streak = 0
        self.decontam_hits: list[Any] = []
        self._settled: asyncio.Condition | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._live_workers = 0
        self._producer: asyncio.Task[None] | None = None
        self._stopping = False

    # -- producing ------------------------------------------------------------------------
    async def produce(self) -> None:
        from tracesynth.decontam.index import problems_to_ask
        from tracesynth.sources.prompts import load_template, render_messages

        source_stats: Counter[str] = Counter()
        self.source_stats = source_stats
        n, per_call = self.t.n, self.t.api_n
        template = load_template(self.recipe.prompt)
        puts = 0
        for problem in problems_to_ask(self.recipe, stats=source_stats, removed=self.decontam_hits):
            if self.stop_reason is not None:
                return
            if not in_shard(problem.id, self.shard):
                continue
            self.stats.problems += 1
            self.stats.expected += n
            todo: list[tuple[int, str, int]] = []
            for i in range(n):
                sid = self.sample_id(problem.id, i)
                if sid in self.samples.keys:
                    self.stats.done_before += 1
                elif self.fail_counts.get(sid, 0) > self.t.item_retries:
                    self.stats.gave_up += 1
                else:
                    todo.append((i, sid, self.fail_counts.get(sid, 0) + 1))
            if not todo:
                continue
            if problem.id not in self.problems.keys:
                self.problems.append(problem)
            messages = render_messages(problem, self.recipe.prompt, template)
            groups = [todo] if per_call else [[x] for x in todo]
            for g in groups:
                await self.queue.put(_Job(problem, messages, [x[0] for x in g], [x[1] for x in g], [x[2] for x in g]))
                puts += 1
                if puts % _RAMP_CHUNK == 0:
                    # let the workers just handed jobs connect and send before producing more: at start-up
                    # the queue never fills, so without this every request of the first wave waited for
                    # the whole wave to be produced and started (measured: +1.2 s at 2,048 slots)
                    await asyncio.sleep(0)
        self.stats.source_done = True

    # -- working --------------------------------------------------------------------------
    def _spawn_worker(self) -> None:
        self._live_workers += 1
        if len(self._workers) > 4 * self._live_workers:  # forget retired stand-ins now and then
            self._workers = [w for w in self._workers if not w.done()]
        self._workers.append(asyncio.create_task(self.work()))

    def _wanted_workers(self) -> int:
        """One per slot, plus a stand-in per call sleeping out a backoff: at most twice the slots, so a
        429 storm or an outage cannot pull the whole source into sleeping calls (bounded working set)."""
        return self.t.concurrency + min(self.client.backing_off, self.t.concurrency)

    def _top_up_workers(self) -> None:
        """A call started a backoff sleep: start a stand-in worker (see :meth:`run`)."""
        if self.stop_reason is None and self._live_workers < self._wanted_workers():
            self._spawn_worker()

    async def work(self) -> None:
        try:
            await self._work()
        finally:
            self._live_workers -= 1

    async def _work(self) -> None:
        while True:
            if self._live_workers > self._wanted_workers():
                return  # a stand-in whose sleeper woke up
            job = await self.queue.get()
            try:
                if self.stop_reason is not None:
                    self.abandoned += len(job.indices)
                else:
                    await self.run_job(job)
            except Exception as exc:  # a bug or a store error: stop everything, re-raised by _harvest
                self.fatal = self.fatal or exc
                self.trigger_stop("error", hard=True)
                raise
            finally:
                self.queue.task_done()

    def _worst(self, job: _Job) -> float:
        """The most one attempt of this call can cost (prompt estimate x 1.5 + max_tokens per choice)."""
        if self.prices is None:
            return 0.0
        return self.prices.worst_case(estimate_tokens(job.messages) * 1.5, self.max_out * len(job.indices))

    async def _reserve(self, worst: float) -> bool:
        if self.ledger.budget_usd is None:
            return True
        if self._settled is None:
            self._settled = asyncio.Condition()
        async with self._settled:
            while not self.ledger.try_reserve(worst):
                if self.ledger.reserved_usd <= 1e-12 or self.stop_reason is not None:
                    self.trigger_stop("budget")
                    return False
                await self._settled.wait()
        return True

    async def _settle(self, worst: float) -> None:
        if self.ledger.budget_usd is None:
            return
        self.ledger.release(worst)
        if self._settled is not None:
            async with self._settled:
                self._settled.notify_all()

    async def run_job(self, job: _Job) -> None:
        worst = per_attempt = self._worst(job)
        if not await self._reserve(worst):
            self.abandoned += len(job.indices)
            return
        self.stats.requests += 1
        try:
            result = await self.client.chat(job.messages, n=len(job.indices), sampling=self.sampling,
                                            seed_offset=job.indices[0])
        except ItemError as exc:
            self.ledger.possibly_billed(per_attempt * exc.possibly_billed)
            await self._settle(worst)
            self._write_failure(job, exc, per_attempt * exc.possibly_billed)
            self._breaker(exc)
            return
        except AuthError as exc:
            await self._settle(worst)
            self.fatal = exc
            self.trigger_stop("auth", hard=True)
            return
        except BaseException:
            await self._settle(worst)
            raise
        self.ledger.possibly_billed(per_attempt * result.possibly_billed)
        await self._settle(worst)
        self.unhealthy_streak = 0
        k = self._write_samples(job, result)
        if k < len(job.indices):  # the endpoint ignored `n`: ask for the rest one call each
            self.client.events["n_ignored"] += 1
            for pos in range(k, len(job.indices)):
                if self.stop_reason is not None:
                    self.abandoned += 1
                    continue
                await self.run_job(_Job(job.problem, job.messages, [job.indices[pos]], [job.ids[pos]],
                                        [job.attempts[pos]]))

    def _breaker(self, exc: ItemError) -> None:
        """Many calls in a row that gave up on transport / server errors: the teacher is down, not the items.
        Stop (resumable) instead of burning every remaining item's retries."""
        if exc.kind not in UNHEALTHY_KINDS:
            self.unhealthy_streak = 0
            return
        self.unhealthy_streak += 1
        if self.unhealthy_streak >= max(10, 2 * self.t.concurrency) and self.fatal is None:
            urls = ", ".join(e.url for e in self.client.pool.endpoints)
            self.fatal = TeacherError(f"{self.unhealthy_streak} requests in a row failed ({exc.kind}: {exc}); "
                                      f"the teacher at {urls} looks down. Nothing is lost: re-run to resume")
            self.trigger_stop("error", hard=True)

    def _write_samples(self, job: _Job, r: ChatResult) -> int:
        """Append one Sample per choice (usage split evenly); returns how many were written."""
        k = len(r.choices[: len(job.indices)])
        shares = _split_usage(r.usage, max(1, k))
        for pos, choice in enumerate(r.choices[:k]):
            usage = shares[pos]
            cost = self.prices.cost(usage) if self.prices else 0.0
            meta: dict[str, Any] = {}
            if choice.flags:
                meta["flags"] = choice.flags
            if r.attempts > 1:
                meta["attempts"] = r.attempts
            if r.model and r.model != self.t.model:
                meta["served_model"] = r.model
            s = Sample(id=job.ids[pos], problem_id=job.problem.id, index=job.indices[pos], model=self.t.model,
                       reasoning=choice.reasoning, content=choice.content, finish_reason=choice.finish_reason,
                       usage=usage, latency_s=round(r.latency_s, 4), cost_usd=cost, endpoint=r.endpoint,
                       attempt=job.attempts[pos], metadata=meta)
            self.samples.append(s)
            self.ledger.charge(usage, cost, truncated=choice.finish_reason == "length")
            self.stats.new += 1
            self.stats.truncated += choice.finish_reason == "length"
        return k

    def _write_failure(self, job: _Job, exc: ItemError, billed: float) -> None:
        self.stats.errors[exc.kind] += len(job.indices)
        for pos, idx in enumerate(job.indices):
            meta = {"possibly_billed_usd": billed / len(job.indices)} if billed else {}
            self.failures.append(Sample(
                id=job.ids[pos], problem_id=job.problem.id, index=idx, model=self.t.model, error=str(exc),
                error_kind=exc.kind, endpoint=exc.endpoint, attempt=job.attempts[pos], metadata=meta))
            self.stats.failed += 1

    # -- control --------------------------------------------------------------------------
    def trigger_stop(self, reason: str, *, hard: bool = False) -> None:
        """Stop taking work (first reason wins); ``hard`` also cancels the requests in flight."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if not self._stopping:
            self._stopping = True
            if self._producer is not None:
                self._producer.cancel()
            while not self.queue.empty():  # queued jobs are pending (asked next run), not lost
                self.abandoned += len(self.queue.get_nowait().indices)
                self.queue.task_done()
        if hard:
            self._cancel_workers()

    def _cancel_workers(self) -> None:
        for w in self._workers:
            w.cancel()  # a request cut here is lost, never half-written

    def on_signal(self, name: str) -> None:
        if self.stop_reason in ("SIGINT", "SIGTERM"):
            self.trigger_stop(name, hard=True)  # second signal: stop now
            return
        self.view.say(f"{name}: no new requests; waiting up to {self.t.stop_grace_s:g}s "
                      f"for {self.client.flow.in_flight} in flight (again to stop now)")
        self.trigger_stop(name)
        asyncio.get_running_loop().call_later(self.t.stop_grace_s, self._cancel_workers)

    async def ticker(self) -> None:
        last_summary = time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            self.stats.tick(self.ledger, self.client.flow)
            self.view.update(self.stats, self.ledger, self.client.flow, self.client.events)
            if time.monotonic() - last_summary > 30:
                last_summary = time.monotonic()
                self.write_summary("running")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        installed: dict[signal.Signals, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            try:
                loop.add_signal_handler(sig, self.on_signal, sig.name)
                installed[sig] = previous
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread: the caller handles signals
        # one worker per slot, plus one for each call sleeping out a backoff (Retry-After): that call
        # holds a worker but no permit, and without a stand-in its slot would idle (measured: 10% 429s
        # at Retry-After 1 s left ~1/3 of the slots empty). Spare workers wait on permits, which costs
        # a little per request, so there are none when nothing is backing off.
        self.client.on_backoff = self._top_up_workers
        for _ in range(self.t.concurrency):
            self._spawn_worker()
        self._producer = asyncio.create_task(self.produce())
        tick = asyncio.create_task(self.ticker())
        self.view.start()
        try:
            try:
                await self._producer
            except asyncio.CancelledError:
                if self.stop_reason is None:
                    raise
            # every queued job taken and finished (after a signal, the rest is cancelled after the grace period)
            await self.queue.join()
            for w in self._workers:
                if w.done() and not w.cancelled() and w.exception() is not None:
                    raise w.exception()  # type: ignore[misc]
        finally:
            for task in (*self._workers, self._producer):
                if not task.done():
                    task.cancel()
            await asyncio.gather(*self._workers, self._producer, return_exceptions=True)
            tick.cancel()
            self.stats.tick(self.ledger, self.client.flow)
            self.view.stop()
            for sig, previous in installed.items():
                loop.remove_signal_handler(sig)
                if previous is not None:
                    signal.signal(sig, previous)  # give the caller its own handler back
            await self.client.aclose()

    # -- summary --------------------------------------------------------------------------
    def result(self) -> HarvestResult:
        s, led = self.stats, self.ledger
        reason = self.stop_reason
        status: Status = "complete" if reason is None else ("budget" if reason == "budget" else "interrupted")
        pending = max(0, s.expected - s.done - s.gave_up - s.failed) if s.source_done else self.abandoned
        if status == "budget":
            msg = (f"budget ${led.budget_usd:g} reached: spent ${led.spent_usd:.4f}"
                   f" (+${led.possibly_billed_usd:.4f} possibly billed); {s.done} of {s.expected}"
                   f"{'' if s.source_done else '+'} samples done, raise teacher.budget_usd and re-run to continue")
        elif status == "interrupted":
            msg = f"interrupted by {reason}: re-run the same command to resume"
        else:
            msg = ""
        return HarvestResult(
            status=status, signal=reason if reason in ("SIGINT", "SIGTERM") else None, run_dir=str(self.store.dir),
            message=msg, problems=s.problems, samples_expected=s.expected, done=s.done, new=s.new,
            truncated=s.truncated, failed=s.failed, gave_up=s.gave_up, pending=pending, requests=s.requests,
            spent_usd=round(led.spent_usd, 6),
            run_spent_usd=round(led.spent_usd - self.start_spent, 6),
            possibly_billed_usd=round(led.possibly_billed_usd, 6), tokens=dict(led.tokens),
            wall_s=round(s.elapsed, 3), errors_by_kind=dict(s.errors))

    def write_summary(self, status: str | None = None) -> dict[str, Any]:
        if status is None and self.fatal is not None:
            status = "auth_error" if isinstance(self.fatal, AuthError) else "failed"
        return write_summary(
            self.store.dir / "harvest.json", self.result(), self.stats, self.ledger, self.client, status=status,
            model=self.t.model, shard=f"{self.shard[0]}/{self.shard[1]}" if self.shard else None,
            source=dict(getattr(self, "source_stats", {})), decontam=self._decontam_summary())

    def _decontam_summary(self) -> dict[str, Any]:
        from tracesynth.decontam.index import decontam_summary

        cfg = self.recipe.curate.decontam
        return decontam_summary(cfg, self.decontam_hits, eval_sets=None if cfg.enabled else [])


def _scan_prior(samples: Path, failures: Path, done: set[str]) -> tuple[float, float, dict[str, int]]:
    """Spend recorded so far, possibly-billed so far, and failure rows per still-undone sample id.

    samples.jsonl can be gigabytes of reasoning text, so its costs are read without parsing each line:
    the first unescaped ``"cost_usd":`` is the key: texts before it have their quotes escaped, and
    the fields before it (ids, usage) have fixed keys."""
    spent = billed = 0.0
    counts: Counter[str] = Counter()
    if samples.exists():
        with samples.open("rb") as fh:
            for raw in fh:
                at = raw.find(b'"cost_usd":')
                if at >= 0 and raw.endswith(b"\n"):
                    end = at + 11
                    stop = min((i for i in (raw.find(b",", end), raw.find(b"}", end)) if i >= 0), default=len(raw))
                    spent += float(raw[end:stop])
    if failures.exists():
        with failures.open("rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break
                rec = json.loads(raw)
                spent += float(rec.get("cost_usd") or 0.0)
                billed += float((rec.get("metadata") or {}).get("possibly_billed_usd") or 0.0)
                if rec.get("id") not in done:
                    counts[rec["id"]] += 1
    return spent, billed, dict(counts)


def _split_usage(u: Usage, k: int) -> list[Usage]:
    """Share one call's usage among its k choices (prompt and totals split evenly, remainder to the first)."""
    if k == 1:
        return [u]
    fields = ("prompt_tokens", "completion_tokens", "reasoning_tokens", "cached_tokens")
    out = [Usage() for _ in range(k)]
    for f in fields:
        total = getattr(u, f)
        for i in range(k):
            setattr(out[i], f, total // k + (1 if i < total % k else 0))
    return out


def _run_loop(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def harvest(recipe: Recipe | str | Path, *, overrides: list[str] | None = None, quiet: bool = False,
            shard: str | tuple[int, int] | None = None, progress: bool | None = None) -> HarvestResult:
    """Run (or resume) the harvest of ``recipe``; see the module docstring."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides or [])
    if recipe.teacher.mode == "batch":  # provider batch API: tracesynth/batch/ (same store, ledger, resume)
        from tracesynth.stages.harvest.dispatch import harvest_variant

        return harvest_variant(recipe, quiet=quiet, shard=None if shard is None else str(shard))
    sh = parse_shard(shard) if isinstance(shard, str) or shard is None else shard
    run_dir = shard_dir(recipe.run_dir, sh) if sh else Path(recipe.run_dir)
    view = ProgressView(quiet=quiet, live=progress)
    sim = None
    base_urls = None
    if recipe.teacher.sim.enabled:
        from tracesynth.sim import SimTeacher

        sim = SimTeacher(**recipe.teacher.sim.options).start()
        base_urls = [sim.base_url]
    try:
        with RunStore(run_dir) as store:
            for msg in store.recovered:
                view.say(f"recovered: {msg}")
            store.mark_stage("harvest", started_at=time.time(), recipe_hash=recipe.hash())
            return _run_loop(_harvest(recipe, store, sh, view, base_urls))
    finally:
        if sim is not None:
            sim.stop()


async def _harvest(recipe: Recipe, store: RunStore, shard: tuple[int, int] | None, view: ProgressView,
                   base_urls: list[str] | None) -> HarvestResult:
    engine = _Engine(recipe, store, shard, view, base_urls)
    try:
        await engine.run()
    finally:
        engine.write_summary()
        res = engine.result()
        store.mark_stage("harvest", ended_at=time.time(), status=res.status, done=res.done, new=res.new,
                         failed=res.failed, spent_usd=res.spent_usd)
    if engine.fatal is not None:
        raise engine.fatal
    if view.quiet:
        print(f"harvest: {status_line(engine.stats, engine.ledger, engine.client.flow, engine.client.events)}",
              file=sys.stderr)
    return res


