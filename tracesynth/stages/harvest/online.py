"""Online harvesting: the async engine that keeps the endpoint busy, for fresh samples and re-asks alike.

* Requests come from the planner (:mod:`.plan`: fresh or truncated) into a bounded queue
  (2 x concurrency jobs); only ids are held for the whole run, so memory stays flat. With
  ``teacher.api_n`` the requests of one problem go in one call with ``n`` choices; an endpoint
  that ignores ``n`` gets the rest one call each.
* Money: every attempt reserves its worst case before it starts (an :class:`~tracesynth.teacher.client.AttemptGate`
  given to the client): a retried request reserves again for each attempt, an attempt that may have
  been billed keeps its worst case as *possibly billed*, and that amount is written on the request's
  row. A reservation that does not fit waits for requests in flight to settle; when it would not
  fit even alone, the run stops cleanly (status ``budget``) saying how far it got.
* Rows: every answer and every item error goes through the one writer (:mod:`.writer`) right after
  its response, so a kill -9 loses at most the requests in flight — never a duplicate, never a torn
  record. A reply that cannot be used is an item error of that sample; the run goes on.
* Failing fast: when the first answers of a run are all the same refusal of the request itself
  (404 model not found, a base URL without ``/v1``, 400 on the sampling parameters), the rest are not
  sent: the run stops with one line naming the cause and, where the server tells, the fix
  (:mod:`tracesynth.teacher.diagnose`). Many transport or server failures in a row stop it too
  (the teacher looks down; re-run to resume).
* SIGINT / SIGTERM: stop taking new work, wait up to ``teacher.stop_grace_s`` for requests in flight,
  write what arrived, return status ``interrupted`` (CLI exit 130 / 143). A second signal stops at
  once. 401/403 stops everything at once and raises AuthError (exit 2).

This module schedules; talking HTTP is teacher/, rows writer.py, money accounting/.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from tracesynth.accounting.ledger import Reservations
from tracesynth.errors import AuthError, TeacherError
from tracesynth.records import Sample, Usage
from tracesynth.stages.harvest.plan import PendingRequest
from tracesynth.stages.harvest.progress import HarvestStats, status_text
from tracesynth.stages.harvest.result import HarvestResult, Status
from tracesynth.stages.harvest.run import HarvestRun
from tracesynth.teacher.client import ChatResult, TeacherClient
from tracesynth.teacher.retry import BUDGET_STOP, REQUEST_KINDS, UNHEALTHY_KINDS, BudgetRefused, ItemError

# the producer yields to the event loop after this many jobs (see Engine.produce)
_RAMP_CHUNK = 16
# this many refusals of the request itself before any answer: the rest would be refused too
_FIRST_WAVE = 8


@dataclass(slots=True)
class _Job:
    reqs: list[PendingRequest]  # one request, or the requests of one problem in one call (api_n)

    @property
    def body(self) -> dict[str, Any]:
        if len(self.reqs) == 1:
            return self.reqs[0].body
        return {**self.reqs[0].body, "n": len(self.reqs)}


class Listener(Protocol):
    """Told how each request ended (sampling until verified decides what to ask next from it)."""

    def answered(self, req: PendingRequest, sample: Sample | None) -> None: ...  # None: written as a failure

    def failed(self, req: PendingRequest) -> None: ...


class Engine:
    """One online harvest over a stream of pending requests (see the module docstring)."""

    def __init__(
        self,
        run: HarvestRun,
        requests: Iterator[PendingRequest] | AsyncIterator[PendingRequest],
        client: TeacherClient,
        listener: Listener | None = None,
    ) -> None:
        self.run, self.requests, self.client, self.listener = run, requests, client, listener
        self.t = run.recipe.teacher
        self.view = run.view
        self.ledger, self.writer = run.ledger, run.writer
        self.stats = HarvestStats()
        self._tokens_before = run.ledger.tokens.completion  # the ledger is cumulative; rates are this run's
        self.queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=2 * self.t.concurrency)
        self.stop_reason: str | None = None
        self.fatal: BaseException | None = None
        self.first_refusal: ItemError | None = None
        self.abandoned = 0
        self.unhealthy_streak = 0
        self.refusals = 0
        self.reservations = Reservations(
            self.ledger, stopping=lambda: self.stop_reason is not None, refused=lambda: self.trigger_stop("budget")
        )
        self._workers: list[asyncio.Task[None]] = []
        self._live_workers = 0
        self._producer: asyncio.Task[None] | None = None
        self._stopping = False

    # -- producing ------------------------------------------------------------------------
    async def produce(self) -> None:
        if isinstance(self.requests, AsyncIterator):  # a source that waits for answers (until verified)
            async for req in self.requests:
                if self.stop_reason is not None:
                    return
                await self._put(_Job([req]))
            return
        per_call = self.t.api_n
        puts = 0
        group: list[PendingRequest] = []
        for req in self.requests:
            if self.stop_reason is not None:
                return
            if per_call and req.supersedes is None:
                if group and group[0].problem_id != req.problem_id:
                    await self._put(_Job(group))
                    puts += 1
                    group = []
                group.append(req)
                continue
            await self._put(_Job([req]))
            puts += 1
            if puts % _RAMP_CHUNK == 0:
                # let the workers just handed jobs connect and send before producing more: at start-up
                # the queue never fills, so without this every request of the first wave waited for
                # the whole wave to be produced and started
                await asyncio.sleep(0)
        if group:
            await self._put(_Job(group))

    async def _put(self, job: _Job) -> None:
        await self.queue.put(job)

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
                    self.abandoned += len(job.reqs)
                else:
                    await self.run_job(job)
            except Exception as exc:  # a bug or a store error: stop everything, re-raised by run()
                self.fatal = self.fatal or exc
                self.trigger_stop("error", hard=True)
                raise
            finally:
                self.queue.task_done()

    # -- one job ----------------------------------------------------------------------------
    async def run_job(self, job: _Job) -> None:
        k = len(job.reqs)
        gate = self.reservations.gate(self.run.worst_usd(job.reqs[0], k) if self.run.prices else 0.0)
        self.stats.requests += 1
        try:
            result = await self.client.request(job.body, gate=gate)
        except BudgetRefused as exc:
            self.abandoned += k
            self.run.left_for_budget += k
            if gate.billed:  # earlier attempts may have been billed: keep that money on a row
                for r in job.reqs:
                    self.writer.failure(
                        r.entry(),
                        exc.last_kind or BUDGET_STOP,
                        f"stopped for the budget after {exc.attempts} attempts that may have been billed",
                        endpoint=exc.endpoint,
                        billed_usd=gate.billed / k,
                    )
            self.trigger_stop("budget")
            return
        except ItemError as exc:
            for r in job.reqs:
                self.writer.failure(r.entry(), exc.kind, str(exc), endpoint=exc.endpoint, billed_usd=gate.billed / k)
                if self.listener is not None:
                    self.listener.failed(r)
            self._after_failure(exc)
            return
        except AuthError as exc:
            self.fatal = exc
            self.trigger_stop("auth", hard=True)
            return
        self.unhealthy_streak = 0
        self.stats.successes += 1
        written = self._write(job, result, gate.billed)
        if written < k:  # the endpoint ignored `n`: ask for the rest one call each
            self.client.events["n_ignored"] += 1
            for r in job.reqs[written:]:
                if self.stop_reason is not None:
                    self.abandoned += 1
                    continue
                await self.run_job(_Job([r]))

    def _write(self, job: _Job, r: ChatResult, billed: float) -> int:
        """Write one Sample per choice (usage split evenly); returns how many choices there were."""
        k = min(len(r.choices), len(job.reqs))
        shares = _split_usage(r.usage, max(1, k))
        for pos in range(k):
            sample = self.writer.sample(
                job.reqs[pos].entry(),
                r.choices[pos],
                shares[pos],
                served=r.model,
                endpoint=r.endpoint,
                latency_s=r.latency_s,
                attempts=r.attempts,
                billed_usd=billed / max(1, k),
            )
            if self.listener is not None:
                self.listener.answered(job.reqs[pos], sample)
        return k

    def _after_failure(self, exc: ItemError) -> None:
        """Stop early when the failures say more about the run than about the items (module docstring)."""
        if exc.kind in REQUEST_KINDS and self.stats.successes == 0:
            self.refusals += 1
            self.first_refusal = self.first_refusal or exc
            if self.refusals >= min(_FIRST_WAVE, self.t.concurrency + 1) and self.fatal is None:
                self.fatal = exc  # turned into one explained line by harvest_online
                self.trigger_stop("error", hard=True)
            return
        if exc.kind not in UNHEALTHY_KINDS:
            self.unhealthy_streak = 0
            return
        self.unhealthy_streak += 1
        if self.unhealthy_streak >= max(10, 2 * self.t.concurrency) and self.fatal is None:
            urls = ", ".join(e.url for e in self.client.pool.endpoints)
            self.fatal = TeacherError(
                f"{self.unhealthy_streak} requests in a row failed ({exc.kind}: {exc}); "
                f"the teacher at {urls} looks down. Nothing is lost: re-run to resume"
            )
            self.trigger_stop("error", hard=True)

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
                self.abandoned += len(self.queue.get_nowait().reqs)
                self.queue.task_done()
        if hard:
            self._cancel_workers()

    def _cancel_workers(self) -> None:
        for w in self._workers:
            w.cancel()  # a request cut here is lost, never half-written

    def fail(self, exc: BaseException) -> None:
        """Stop the run for an error outside any one request (verification itself broke)."""
        self.fatal = self.fatal or exc
        self.trigger_stop("error", hard=True)

    def on_signal(self, name: str) -> None:
        if self.stop_reason in ("SIGINT", "SIGTERM"):
            self.trigger_stop(name, hard=True)  # second signal: stop now
            return
        self.view.say(
            f"{name}: no new requests; waiting up to {self.t.stop_grace_s:g}s "
            f"for {self.client.flow.in_flight} in flight (again to stop now)"
        )
        self.trigger_stop(name)
        asyncio.get_running_loop().call_later(self.t.stop_grace_s, self._cancel_workers)

    def status(self) -> str:
        st, c = self.run.planner.stats, self.writer.counts
        return status_text(
            st["done_before"] + c["new"],
            st["expected"],
            self.run.planner.source_done,
            c["new"],
            self.ledger.tokens.completion - self._tokens_before,
            self.stats.elapsed,
            self.ledger,
            self.client.flow,
            self.client.events,
        )

    async def ticker(self) -> None:
        last_summary = self.stats.elapsed
        while True:
            await asyncio.sleep(0.5)
            c = self.writer.counts
            self.stats.tick(c["new"], c["failed"], self.ledger, self.client.flow)
            st = self.run.planner.stats
            self.view.update(
                st["done_before"] + c["new"], st["expected"] if self.run.planner.source_done else None, self.status()
            )
            self.view.line(self.status())
            if self.stats.elapsed - last_summary > 30:
                last_summary = self.stats.elapsed
                self.run.write_summary(self.result(running=True), **self.extras())

    async def run_all(self) -> None:
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
        # holds a worker but no permit, and without a stand-in its slot would idle. Spare workers wait
        # on permits, which costs a little per request, so there are none when nothing is backing off.
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
        except Exception as exc:  # the source, the store or a bug: the run failed (harvest.json says so)
            self.fatal = self.fatal or exc
            raise
        finally:
            for task in (*self._workers, self._producer):
                if not task.done():
                    task.cancel()
            await asyncio.gather(*self._workers, self._producer, return_exceptions=True)
            tick.cancel()
            self.stats.tick(self.writer.counts["new"], self.writer.counts["failed"], self.ledger, self.client.flow)
            self.view.stop()
            for sig, previous in installed.items():
                loop.remove_signal_handler(sig)
                if previous is not None:
                    signal.signal(sig, previous)  # give the caller its own handler back

    # -- summary --------------------------------------------------------------------------
    def result(self, *, running: bool = False) -> HarvestResult:
        reason = self.stop_reason
        c = self.writer.counts
        status: Status
        if running:
            status = "running"
        elif self.fatal is not None:
            status = "failed"
        elif reason == "budget":
            status = "budget"
        elif reason in ("SIGINT", "SIGTERM"):
            status = "interrupted"
        elif c["new"] == 0 and (c["failed"] > 0 or self._nothing_left()):
            status = "failed"  # asked, and not one answer came back (or every sample was given up)
        else:
            status = "complete"
        led = self.ledger
        if status == "budget":
            st = self.run.planner.stats
            msg = (
                f"budget ${led.budget_usd:g} reached: spent ${led.spent_usd:.4f}"
                f" (+${led.possibly_billed_usd:.4f} possibly billed); {st['done_before'] + c['new']} of "
                f"{st['expected']}{'' if self.run.planner.source_done else '+'} samples done, raise "
                f"teacher.budget_usd and re-run to continue"
            )
        elif status == "interrupted":
            msg = f"interrupted by {reason}: re-run the same command to resume"
        elif self.fatal is not None:
            msg = " ".join(str(self.fatal).split())[:500]
        elif status == "failed" and self.fatal is None and not c["failed"]:
            msg = (
                f"every pending sample was given up after teacher.item_retries ({self.t.item_retries}); "
                f"see failures.jsonl for why, or raise teacher.item_retries"
            )
        elif status == "failed" and self.fatal is None:
            kinds = self.writer.errors_by_kind()
            top = max(kinds, key=lambda k: kinds[k]) if kinds else "error"
            msg = f"every request failed ({top}); nothing was harvested"
        else:
            msg = ""
        return self.run.result(
            status,
            message=msg,
            signal=reason if reason in ("SIGINT", "SIGTERM") else None,
            requests=self.stats.requests,
            submitted=self.stats.requests,
            abandoned=self.abandoned,
        )

    def _nothing_left(self) -> bool:
        """Nothing of the recipe is done and everything was given up: a run that cannot make progress."""
        st = self.run.planner.stats
        return self.run.planner.source_done and st["done_before"] == 0 and 0 < st["gave_up"] == st["expected"]

    def extras(self) -> dict[str, Any]:
        return {
            "endpoints": [e.as_dict() for e in self.client.pool.endpoints],
            "retries_by_kind": dict(self.client.events),
            "flow": self.client.flow.snapshot(),
            "throughput": self._throughput(),
            "timeline": self.stats.timeline,
        }

    def _throughput(self) -> dict[str, float]:
        el = max(self.stats.elapsed, 1e-9)
        return {
            "samples_per_s": round(self.writer.counts["new"] / el, 3),
            "requests_per_s": round(self.stats.requests / el, 3),
            "completion_tokens_per_s": round((self.ledger.tokens.completion - self._tokens_before) / el, 1),
        }


def _split_usage(u: Usage | None, k: int) -> list[Usage | None]:
    """Share one call's usage among its k choices (prompt and totals split evenly, remainder to the first)."""
    if k == 1 or u is None:
        return [u] * k
    fields = ("prompt_tokens", "completion_tokens", "reasoning_tokens", "cached_tokens")
    out = [Usage() for _ in range(k)]
    for f in fields:
        total = getattr(u, f)
        for i in range(k):
            setattr(out[i], f, total // k + (1 if i < total % k else 0))
    return list(out)


def _run_loop(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def harvest_online(run: HarvestRun, base_urls: list[str] | None) -> HarvestResult:
    """Ask every pending request of ``run`` online; write harvest.json; raise what stopped the run.

    With ``teacher.until_verified`` the requests come from :class:`~tracesynth.stages.harvest.until.UntilVerified`
    and its verifier workers start here, before the event loop (forked from one thread)."""
    if not run.until_verified:
        return _run_loop(_harvest(run, base_urls))
    from tracesynth.stages.harvest.until import start_pool

    with start_pool(run) as pool:
        return _run_loop(_harvest(run, base_urls, pool))


async def _harvest(run: HarvestRun, base_urls: list[str] | None, pool: Any = None) -> HarvestResult:
    from tracesynth.teacher.diagnose import explain

    client = TeacherClient.from_config(run.recipe.teacher, base_urls=base_urls)
    until = None
    if pool is not None:
        from tracesynth.stages.harvest.until import UntilVerified

        until = UntilVerified(run, pool)
    engine = Engine(run, until.requests() if until else run.requests(), client, listener=until)
    if until is not None:
        until.on_error = lambda exc: engine.fail(exc)
    try:
        try:
            await engine.run_all()
        finally:
            extras = engine.extras()
            if until is not None:
                await until.drain()  # every reply written gets its verdicts, whatever stopped the run
                run.store.verdicts.sync()
            res = engine.result()
            run.write_summary(res, **extras)
        if isinstance(engine.fatal, ItemError):
            raise TeacherError(await explain(client, engine.fatal, run.recipe.teacher))
        if engine.fatal is not None:
            raise engine.fatal
        if res.status == "failed" and engine.first_refusal is not None:
            raise TeacherError(await explain(client, engine.first_refusal, run.recipe.teacher))
        if run.view.quiet:
            print(f"harvest: {engine.status()}", file=sys.stderr)
        return res
    finally:
        await client.aclose()


__all__ = ["Engine", "harvest_online"]
