"""Sampling until verified (``teacher.until_verified: K``): ask again only where no sample passed.

With a fixed ``n`` the teacher is paid for samples nobody needs (the problem already has a verified
trace) and not asked again where it failed. :class:`UntilVerified` asks one sample per problem,
verifies each reply as it arrives (a :class:`~tracesynth.stages.verify.pool.VerifierPool` of worker
processes beside the harvest, so the event loop is never blocked), and asks a problem again only
while it has fewer than ``teacher.keep_per_problem`` passing samples, up to K samples in all:

* it is the request source of the online :class:`~tracesynth.stages.harvest.online.Engine`: an async
  iterator that yields the next index of the problems that still want one, and takes new problems
  from the planner while fewer than ``4 x concurrency`` are open (memory stays bounded);
* sample ids are the fixed-``n`` ids (:func:`~tracesynth.records.sample_ids` has no ``n``): sample ``i``
  of a problem is the same request whether it was asked by ``n = K`` or by sampling until verified, so
  a run can switch between the two and resume either way; a problem asks its lowest unused indices;
* verdicts are appended to ``verdicts.jsonl`` as :func:`tracesynth.verify` writes them (same
  verifiers per domain, same worker function, same hard CPU limit), so ``tracesynth verify``
  afterwards finds nothing to do and the later stages need nothing new;
* resume: samples already in the run folder count (their verdicts are read; a sample without all of
  its verdicts — the run was killed between the reply and its verdict — is verified first); an item
  error uses its index up for this run (the next index is asked) and is re-asked on a later run
  within ``teacher.item_retries``, like any harvest; budget cap, signals and shards are the engine's;
* ``unverifiable`` samples count as not passed (the problem is asked again) and are reported apart.

:func:`summary` is the ``until_verified`` block of harvest.json: problems solved / unsolved / open,
samples per problem, verified traces per dollar, dollars per kept trace, and what fixed ``n`` would
have cost for the same kept traces. This module decides what to ask next; sending is the engine's,
rows the writer's, verdicts the verifiers'.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tracesynth.records import Problem, Sample, Verdict
from tracesynth.rundir.store import read_jsonl
from tracesynth.stages.harvest.plan import PendingRequest
from tracesynth.stages.harvest.run import HarvestRun
from tracesynth.stages.harvest.shards import in_shard
from tracesynth.stages.verify.pool import VerifierPool
from tracesynth.stages.verify.registry import keep_rows
from tracesynth.stages.verify.stage import verifier_options, verifiers_for

# problems open at once, per unit of teacher.concurrency (each has a request in flight or a verdict coming)
_OPEN_PER_SLOT = 4

VerdictRow = tuple[str, str, str, tuple[str, ...]]  # verifier, status, tag, fallback_for (as keep_rows takes)


def _row(v: Verdict | dict[str, Any]) -> VerdictRow:
    d = v.model_dump() if isinstance(v, Verdict) else v
    return (d["verifier"], d["status"], d.get("tag") or "", tuple((d.get("details") or {}).get("fallback_for") or ()))


@dataclass(slots=True)
class _Prior:
    """What the run folder already holds for one problem's sample."""

    sample_id: str
    index: int
    rows: dict[str, VerdictRow]
    sample: Sample | None  # kept only when some verifier's verdict may be missing


@dataclass(slots=True)
class _Open:
    """One problem still being asked."""

    problem: Problem
    names: list[str]
    next_index: int = 0
    passes: int = 0
    inflight: int = 0
    verifying: int = 0
    exhausted: bool = False  # no index left to ask this run
    messages: Callable[[], list[dict[str, Any]]] | None = None  # the planner's lazy prompt of this problem


class UntilVerified:
    """The request source of a harvest that samples until verified (see the module docstring)."""

    def __init__(self, run: HarvestRun, pool: VerifierPool) -> None:
        t = run.recipe.teacher
        assert t.until_verified is not None
        self.run, self.pool = run, pool
        self.k, self.keep, self.policy = t.until_verified, t.keep_per_problem, run.recipe.verify.keep
        self.verdicts = run.store.verdicts
        self.open: dict[str, _Open] = {}
        self.ready: deque[PendingRequest] = deque()
        self.limit = _OPEN_PER_SLOT * t.concurrency
        self._wake = asyncio.Event()
        self._pending: set[asyncio.Future[list[Verdict]]] = set()
        self.error: BaseException | None = None
        self.on_error: Any = None  # set by the engine: stop the run when verification itself breaks
        self.prior = read_prior(run)

    # -- the request source --------------------------------------------------------------
    async def requests(self) -> AsyncIterator[PendingRequest]:
        problems: Iterator[Problem] | None = self.run.planner.problems_to_ask()
        while True:
            if self.error is not None:
                return
            if self.ready:
                yield self.ready.popleft()
                continue
            if problems is not None and len(self.open) < self.limit:
                problem = next(problems, None)
                if problem is None:
                    problems = None
                else:
                    self._open(problem)
                continue
            if problems is None and not self.open:
                return
            self._wake.clear()
            await self._wake.wait()

    def _open(self, problem: Problem) -> None:
        st = _Open(problem, verifiers_for(self.run.recipe, problem), messages=self.run.planner.lazy_messages(problem))
        self.open[problem.id] = st
        for p in self.prior.pop(problem.id, []):
            missing = [n for n in st.names if n not in p.rows]
            if not missing:
                self._decide(st, list(p.rows.values()))
            elif p.sample is not None:  # killed between the reply and its verdict: verify it now
                self._verify(st, p.sample, missing, list(p.rows.values()))
            else:  # no Sample kept for it (should not happen): ask past it
                st.next_index = max(st.next_index, p.index + 1)
        self._schedule(st)

    def _next_request(self, st: _Open) -> PendingRequest | None:
        planner = self.run.planner
        while st.next_index < self.k:
            i = st.next_index
            st.next_index += 1
            assert st.messages is not None
            req = planner.request(st.problem, i, st.messages)
            if req is not None:
                return req
        st.exhausted = True
        return None

    def _schedule(self, st: _Open) -> None:
        """Ask what this problem still wants, or close it."""
        while st.passes + st.inflight + st.verifying < self.keep:
            req = self._next_request(st)
            if req is None:
                break
            st.inflight += 1
            self.ready.append(req)
        if st.passes >= self.keep or (st.exhausted and not st.inflight and not st.verifying):
            self._close(st)
        self._wake.set()

    def _close(self, st: _Open) -> None:
        if not st.inflight and not st.verifying:  # else it closes when the last reply or verdict arrives
            self.open.pop(st.problem.id, None)

    # -- what the engine reports ---------------------------------------------------------------
    def answered(self, req: PendingRequest, sample: Sample | None) -> None:
        st = self.open.get(req.problem_id)
        if st is None:
            return
        st.inflight -= 1
        if sample is None:  # written as a failure (an unusable reply)
            self._schedule(st)
            return
        self._verify(st, sample, st.names, [])

    def failed(self, req: PendingRequest) -> None:
        st = self.open.get(req.problem_id)
        if st is not None:
            st.inflight -= 1
            self._schedule(st)

    # -- verification ----------------------------------------------------------------------------
    def _verify(self, st: _Open, sample: Sample, todo: list[str], have: list[VerdictRow]) -> None:
        st.verifying += 1
        fut = self.pool.verify((st.problem, sample, st.names, todo))
        self._pending.add(fut)
        fut.add_done_callback(lambda f: self._guarded(self._verified, f, st, sample, have))

    def _guarded(self, fn: Any, *args: Any) -> None:
        """Run a callback of the event loop; an exception in it stops the run (else the loop only logs it
        and the problem never closes: the harvest would wait for it forever)."""
        try:
            fn(*args)
        except Exception as exc:
            self._broke(exc)

    def _broke(self, exc: BaseException) -> None:
        self.error = self.error or exc
        if self.on_error is not None:
            self.on_error(exc)
        self._wake.set()

    def _verified(self, fut: asyncio.Future[list[Verdict]], st: _Open, sample: Sample, have: list[VerdictRow]) -> None:
        self._pending.discard(fut)
        st.verifying -= 1
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self._broke(exc)
            return
        verdicts = fut.result()
        for v in verdicts:
            self.verdicts.append(v)
        self._decide(st, have + [_row(v) for v in verdicts])
        self._schedule(st)

    def _decide(self, st: _Open, rows: list[VerdictRow]) -> None:
        st.passes += keep_rows(rows, self.policy)

    async def drain(self) -> None:
        """Wait for the verdicts of every reply written (after the engine stopped asking)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


def read_prior(run: HarvestRun) -> dict[str, list[_Prior]]:
    """This recipe's samples already in the run folder, with their verdicts, by problem (a Sample is
    kept only where a verifier's verdict may be missing)."""
    rows: dict[str, dict[str, VerdictRow]] = {}
    path = run.store.verdicts.path
    if path.exists():
        for v in read_jsonl(path):
            rows.setdefault(v["sample_id"], {})[v["verifier"]] = _row(v)
    cfg = run.recipe.verify
    lists = [set(cfg.verifiers), *(set(v) for v in cfg.by_domain.values())]
    prior: dict[str, list[_Prior]] = {}
    for s in run.planner.ids.live(run.store.samples):
        have = rows.get(s.id, {})
        complete = all(names <= have.keys() for names in lists)
        prior.setdefault(s.problem_id, []).append(_Prior(s.id, s.index, have, None if complete else s))
    return prior


def verify_pending(run: HarvestRun, prior: dict[str, list[_Prior]] | None = None) -> dict[str, list[_Prior]]:
    """Verify this recipe's samples that lack some verdict (the verify stage's process pool), writing the
    verdicts as ``tracesynth verify`` does; returns :func:`read_prior` with them filled in."""
    from tracesynth.stages.verify.stage import run_items

    recipe = run.recipe
    prior = read_prior(run) if prior is None else prior
    problems = {p.id: p for p in run.store.problems.iter() if p.id in prior}
    by_id = {p.sample_id: p for ps in prior.values() for p in ps}
    items = []
    for pid, ps in prior.items():
        names = verifiers_for(recipe, problems.get(pid))
        for p in ps:
            todo = [n for n in names if n not in p.rows]
            if todo and p.sample is not None and pid in problems:
                items.append((problems[pid], p.sample, names, todo))
    if items:

        def sink(v: Verdict) -> None:
            run.store.verdicts.append(v)
            by_id[v.sample_id].rows[v.verifier] = _row(v)

        run_items(iter(items), verifier_options(recipe), sink, workers=recipe.verify.workers)
        run.store.verdicts.sync()
    return prior


def round_requests(run: HarvestRun, reserved: set[str] | frozenset[str] = frozenset()) -> Iterator[PendingRequest]:
    """Batch mode: the next round. Samples without their verdicts (the last round's) are verified first
    (:func:`verify_pending`); then each problem with fewer than ``keep_per_problem`` passes gets its lowest
    unused indices, as many as it still wants (requests in a batch in flight count as wanted)."""
    recipe, planner = run.recipe, run.planner
    t = recipe.teacher
    assert t.until_verified is not None
    prior = verify_pending(run)
    for problem in planner.problems_to_ask():
        ps = prior.get(problem.id, [])
        wanted = t.keep_per_problem - sum(keep_rows(list(p.rows.values()), recipe.verify.keep) for p in ps)
        wanted -= sum(planner.sample_id(problem.id, i) in reserved for i in range(t.until_verified))
        messages = planner.lazy_messages(problem)
        for i in range(t.until_verified):
            if wanted <= 0:
                break
            sid = planner.sample_id(problem.id, i)
            if sid in reserved or any(p.index == i for p in ps):
                continue
            req = planner.request(problem, i, messages, reserved)
            if req is not None:
                wanted -= 1
                yield req


def folder_summary(run: HarvestRun) -> dict[str, Any]:
    """The ``until_verified`` block of harvest.json, from what the run folder holds (every mode, resumed or not)."""
    recipe, planner = run.recipe, run.planner
    t = recipe.teacher
    assert t.until_verified is not None
    k, keep = t.until_verified, t.keep_per_problem
    outcomes: Counter[str] = Counter()
    hist: Counter[int] = Counter()
    unverifiable = max_needed = 0
    prior = read_prior(run)
    for problem in run.store.problems.iter():
        if not in_shard(problem.id, run.shard):
            continue
        ps = sorted(prior.get(problem.id, []), key=lambda p: p.index)
        if not ps and all(planner.sample_id(problem.id, i) not in planner.fail_counts for i in range(k)):
            continue  # recorded by another recipe, never asked by this one
        passes = 0
        for p in ps:
            rows = list(p.rows.values())
            if keep_rows(rows, recipe.verify.keep):
                passes += 1
                if passes == keep:
                    max_needed = max(max_needed, p.index + 1)
            elif any(r[1] == "unverifiable" for r in rows):
                unverifiable += 1
        have = {p.index for p in ps}
        used = sum(i in have or planner.gave_up(planner.sample_id(problem.id, i)) for i in range(k))
        outcomes["passes"] += passes
        hist[len(ps)] += 1
        if passes >= keep:
            outcomes["solved"] += 1
        elif used >= k:
            outcomes["partial" if passes else "unsolved"] += 1
        else:
            outcomes["open"] += 1
    return summary(
        k=k,
        keep=keep,
        outcomes=outcomes,
        hist=hist,
        unverifiable=unverifiable,
        max_needed=max_needed,
        spent_usd=run.ledger.spent_usd,
    )


def summary(
    *,
    k: int,
    keep: int,
    outcomes: Counter[str],
    hist: Counter[int],
    unverifiable: int,
    max_needed: int,
    spent_usd: float,
) -> dict[str, Any]:
    """Problems by outcome, samples per problem, money per kept trace, and the fixed-``n`` counterfactual.

    The counterfactual is exact in the samples it asks: a fixed ``n = m`` harvest asks indices
    0..m-1 of every problem, the same sample ids, so with ``m`` the most samples any solved problem
    needed here it finds every trace kept here. Its cost is priced at this run's mean cost per answer.
    """
    solved, partial, unsolved, still = (outcomes[x] for x in ("solved", "partial", "unsolved", "open"))
    problems = solved + partial + unsolved + still
    answered = sum(n * c for n, c in hist.items())
    kept = outcomes["passes"]  # every passing sample (curation keeps them all)
    per_answer = spent_usd / answered if answered else 0.0

    def fixed(n: int) -> dict[str, Any]:
        return {"n": n, "samples": problems * n, "usd": round(problems * n * per_answer, 6)}

    return {
        "until_verified": k,
        "keep_per_problem": keep,
        "problems": problems,
        "solved": solved,  # reached keep_per_problem passing samples
        "partial": partial,  # some passing samples, fewer than keep_per_problem, K used up
        "unsolved": unsolved,  # K samples (or all that could be asked) and none passed
        "open": still,  # still wanted samples when the run stopped (budget, signal): resumes
        "samples": answered,
        "kept_traces": kept,
        "unverifiable_samples": unverifiable,
        "samples_per_problem": {str(n): c for n, c in sorted(hist.items())},
        "mean_samples_per_problem": round(answered / problems, 3) if problems else 0.0,
        "spent_usd": round(spent_usd, 6),
        "verified_traces_per_usd": round(kept / spent_usd, 3) if spent_usd else None,
        "usd_per_kept_trace": round(spent_usd / kept, 6) if kept else None,
        "fixed_n_same_traces": fixed(max_needed) if max_needed else None,
        "fixed_n_k": fixed(k),
    }


def start_pool(run: HarvestRun) -> VerifierPool:
    """The verifier workers of a harvest that samples until verified, started before its event loop."""
    from tracesynth.stages.verify.stage import check_config

    recipe = run.recipe
    check_config(recipe)
    names = set(recipe.verify.verifiers) | {n for ns in recipe.verify.by_domain.values() for n in ns}
    preload = ("math_verify",) if "math" in names else ()
    chunk = 2 if names & {"code", "judge"} else 8
    return VerifierPool(
        verifier_options(recipe), workers=recipe.verify.workers, chunk_size=chunk, preload=preload
    ).start()


__all__ = ["UntilVerified", "folder_summary", "read_prior", "round_requests", "start_pool", "summary", "verify_pending"]
