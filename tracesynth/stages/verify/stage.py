"""The verify stage: ``problems.jsonl`` + ``samples.jsonl`` → ``verdicts.jsonl`` + ``verify.json``.

* Which verifiers: ``verify.by_domain[problem.domain]`` when set, else ``verify.verifiers``;
  per-verifier options from ``verify.options[name]`` (``timeout_s`` defaults to
  ``verify.timeout_s``; the judge's endpoint defaults to the teacher's).
* Resumable: one verdict per (sample id, verifier), written as soon as it is known; a re-run
  skips pairs already in ``verdicts.jsonl`` (a sample missing some verdicts is re-scored and
  only the missing ones are written).
* Runs in a :class:`~concurrent.futures.ProcessPoolExecutor` of ``verify.workers`` processes
  (forkserver start method) so math-verify's signal-based work and sandboxed programs never
  block an event loop. Samples are streamed in chunks with a bounded number in flight; memory
  holds the problems, the done keys and one small record per sample for the summary.
* A worker that hangs inside C code (where no Python-level timeout can reach) is stopped by a
  hard ``RLIMIT_CPU`` set before each sample (twice the sample's verifier budgets + 3 s); the
  pool is rebuilt, the samples that were in flight are re-run one at a time, and the one that
  kills its worker again gets ``unverifiable`` / ``timeout`` (or ``verifier_error`` if it died
  early), so one pathological answer can neither hang nor sink the run.
* ``verify.json``: counts per verifier and status, tags, the commonest reasons for
  ``unverifiable``, and how many samples pass ``verify.keep``; :func:`print_summary` prints it.

This module schedules and records; the verifiers themselves live in their own modules.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import resource
import signal
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from typing import Any

from pydantic import BaseModel, Field

from tracesynth.children import die_with_parent, parent_watchdog
from tracesynth.config import Recipe
from tracesynth.errors import ConfigError, UserError, VerifierError
from tracesynth.records import Problem, Sample, Verdict
from tracesynth.rundir.jsonio import write_json
from tracesynth.rundir.live import live_samples
from tracesynth.rundir.store import RunStore, read_jsonl
from tracesynth.stages.verify.registry import DEFAULT_TIMEOUT_S, VERIFIERS, get_verifier, keep_rows, score
from tracesynth.ui.progress import Progress

log = logging.getLogger(__name__)
Item = tuple[Problem, Sample, list[str], list[str]]  # problem, sample, verifiers to run, verdicts to write


class VerifyResult(BaseModel):
    run_dir: str
    keep: str
    workers: int
    samples: int = 0  # samples with at least one verdict
    kept: int = 0  # samples passing verify.keep
    written: int = 0  # verdicts written by this call
    existing: int = 0  # verdicts already there (resumed)
    no_problem: int = 0  # samples whose problem is missing from problems.jsonl
    worker_restarts: int = 0
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)  # verifier -> status -> n
    tags: dict[str, dict[str, int]] = Field(default_factory=dict)  # verifier -> tag -> n (non-pass)
    unverifiable_reasons: dict[str, dict[str, int]] = Field(default_factory=dict)  # verifier -> reason -> n
    wall_s: float = 0.0
    verdicts_per_s: float = 0.0
    sandbox: str | None = None


# -- configuration ---------------------------------------------------------------------------
def check_config(recipe: Recipe) -> None:
    cfg = recipe.verify
    names = list(cfg.verifiers) + [n for ns in cfg.by_domain.values() for n in ns] + list(cfg.options)
    unknown = sorted({n for n in names if get_verifier(n) is None})
    if unknown:
        known = ", ".join(sorted(n for n in VERIFIERS if ":" not in n))
        raise ConfigError(f"verify: unknown verifier {unknown[0]!r} (known: {known}, or an importable module:function)")


def verifier_options(recipe: Recipe) -> dict[str, dict[str, Any]]:
    cfg = recipe.verify
    out: dict[str, dict[str, Any]] = {}
    names = set(VERIFIERS) | set(cfg.verifiers) | {n for ns in cfg.by_domain.values() for n in ns}
    for name in sorted(names):
        opts = {"timeout_s": cfg.timeout_s, **(cfg.options.get(name) or {})}
        if name == "judge":
            t = recipe.teacher
            if not (opts.get("base_url") or opts.get("base_urls")):
                opts["base_urls"] = list(t.base_urls)
            opts.setdefault("model", t.model)
            opts.setdefault("api_key_env", t.api_key_env)
            opts.setdefault("http", getattr(t, "http", "aiohttp"))
        out[name] = opts
    return out


def _item_budget(names: list[str], options: dict[str, dict[str, Any]]) -> float:
    return 2.0 * sum(float(options.get(n, {}).get("timeout_s", DEFAULT_TIMEOUT_S)) for n in names) + 3.0


# -- worker side -----------------------------------------------------------------------------
def _init_worker(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    # forked beside a running event loop (sampling until verified), a worker would inherit the loop's
    # SIGTERM handler and its wakeup fd: a signal to the worker would wake the parent's loop instead
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # a worker dies with the verify that started it (kill -9 included), never blocked on a pipe forever;
    # under forkserver its parent is the forkserver, which itself exits when verify dies
    expected = parent if parent > 0 else os.getppid()
    die_with_parent(parent=expected)
    parent_watchdog(expected)


def _arm_cpu_limit(budget_s: float) -> None:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(ru.ru_utime + ru.ru_stime + budget_s) + 1
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def work_chunk(items: list[Item], options: dict[str, dict[str, Any]]) -> list[Verdict]:
    """Score a chunk of samples in a worker process (the hard CPU limit is re-armed per sample)."""
    out: list[Verdict] = []
    for problem, sample, names, todo in items:
        _arm_cpu_limit(_item_budget(names, options))
        out.extend(v for v in score(problem, sample, names, options) if v.verifier in todo)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
    return out


# -- parent side -----------------------------------------------------------------------------
def _new_pool(workers: int, preload: tuple[str, ...] = ()) -> ProcessPoolExecutor:
    """Workers are forked when this process has no other thread (fast, and a script without an
    ``if __name__ == "__main__"`` guard still works); with threads running, forking is unsafe and
    the forkserver method is used instead."""
    ctx: Any
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("fork")
    else:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["tracesynth.stages.verify.stage", *preload])  # only the first call counts
    parent = os.getpid() if ctx.get_start_method() == "fork" else -1
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(parent,))
    try:  # a pool that cannot run a no-op is our problem, not a sample's: stop before writing anything
        pool.submit(os.getpid).result(timeout=120)
    except Exception as exc:
        pool.shutdown(wait=False, cancel_futures=True)
        raise VerifierError(f"cannot start verifier worker processes: {type(exc).__name__}: {exc}") from None
    return pool


def _died_verdicts(item: Item, elapsed: float, options: dict[str, dict[str, Any]]) -> list[Verdict]:
    problem, sample, names, todo = item
    budget = _item_budget(names, options)
    if elapsed >= budget * 0.8:
        tag, why = "timeout", f"the verifier process was killed after its hard CPU limit ({budget:g}s)"
    else:
        tag, why = "verifier_error", f"the verifier process died after {elapsed:.1f}s while checking this sample"
    return [
        Verdict(sample_id=sample.id, problem_id=problem.id, verifier=n, status="unverifiable", tag=tag, reason=why)
        for n in todo
    ]


def run_items(
    items: Iterator[Item],
    options: dict[str, dict[str, Any]],
    sink: Callable[[Verdict], None],
    *,
    workers: int,
    chunk_size: int = 32,
    on_item: Callable[[int], None] | None = None,
    preload: tuple[str, ...] = (),
) -> int:
    """Score ``items`` in a process pool, passing each verdict to ``sink``; returns pool restarts.

    ``preload``: modules to import before the workers start (in this process when workers are
    forked, so they share it; in the forkserver otherwise)."""
    for name in preload:
        importlib.import_module(name)
    pool = _new_pool(workers, preload)
    inflight: dict[Future[list[Verdict]], tuple[list[Item], bool, float]] = {}
    isolate: deque[Item] = deque()
    restarts = 0
    exhausted = finished = False
    try:
        while True:
            if isolate:  # after a crash: one sample at a time until the suspects are cleared
                if not inflight:
                    item = isolate.popleft()
                    inflight[pool.submit(work_chunk, [item], options)] = ([item], True, time.monotonic())
            else:
                while not exhausted and len(inflight) < 2 * workers:
                    chunk = list(islice(items, chunk_size))
                    if not chunk:
                        exhausted = True
                        break
                    inflight[pool.submit(work_chunk, chunk, options)] = (chunk, False, time.monotonic())
            if not inflight:
                if exhausted and not isolate:
                    finished = True
                    return restarts
                continue
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            broken = False
            for fut in done:
                chunk, single, t0 = inflight.pop(fut)
                try:
                    verdicts = fut.result()
                except BrokenProcessPool:
                    broken = True
                    if single or (len(chunk) == 1 and len(done) == 1 and not inflight):  # it was alone
                        for v in _died_verdicts(chunk[0], time.monotonic() - t0, options):
                            sink(v)
                        if on_item:
                            on_item(1)
                    else:
                        isolate.extend(chunk)
                    continue
                for v in verdicts:
                    sink(v)
                if on_item:
                    on_item(len(chunk))
            if broken:
                for chunk, _single, _t0 in inflight.values():
                    isolate.extend(chunk)
                inflight.clear()
                pool.shutdown(wait=True, cancel_futures=True)
                pool = _new_pool(workers, preload)
                restarts += 1
                log.warning("a verifier worker died; re-running %d in-flight samples one at a time", len(isolate))
    finally:  # on Ctrl-C or an error, do not wait for the chunks in flight (their verdicts are not written)
        pool.shutdown(wait=finished, cancel_futures=True)


def verifiers_for(recipe: Recipe, problem: Problem | None) -> list[str]:
    """The verifiers of one problem: ``verify.by_domain[problem.domain]`` when set, else ``verify.verifiers``."""
    cfg = recipe.verify
    return list(cfg.by_domain.get(problem.domain, cfg.verifiers) if problem else cfg.verifiers)


def _pending(
    samples: Iterator[Sample],
    problems: dict[str, Problem],
    recipe: Recipe,
    done: set[str],
    orphan: Callable[[Sample, list[str]], None],
) -> Iterator[Item]:
    for s in samples:
        problem = problems.get(s.problem_id)
        names = verifiers_for(recipe, problem)
        todo = [n for n in names if f"{s.id}:{n}" not in done]
        if not todo:
            continue
        if problem is None:
            orphan(s, todo)
            continue
        yield problem, s, names, todo


def verify(
    recipe: Recipe, *, workers: int | None = None, progress: bool = False, chunk_size: int | None = None
) -> VerifyResult:
    """Verify every sample of the run folder (resumable); writes verdicts.jsonl and verify.json."""
    check_config(recipe)
    options = verifier_options(recipe)
    workers = workers or recipe.verify.workers
    all_names = set(recipe.verify.verifiers) | {n for ns in recipe.verify.by_domain.values() for n in ns}
    if chunk_size is None:
        chunk_size = 4 if all_names & {"code", "judge"} else 32
    t0 = time.monotonic()
    with RunStore(recipe.run_dir) as store:
        layout = store.layout
        if not layout.samples.exists():
            raise UserError(f"{layout.samples}: no samples; run `tracesynth harvest` first")
        problems = {p.id: p for p in store.problems.iter()}
        samples, verdicts = store.samples, store.verdicts
        result = VerifyResult(run_dir=str(store.dir), keep=recipe.verify.keep, workers=workers, existing=len(verdicts))
        with store.stage_run("verify") as mark:

            def sink(v: Verdict) -> None:
                verdicts.append(v)
                result.written += 1

            def orphan(s: Sample, todo: list[str]) -> None:
                result.no_problem += 1
                for n in todo:
                    sink(
                        Verdict(
                            sample_id=s.id,
                            problem_id=s.problem_id,
                            verifier=n,
                            status="unverifiable",
                            tag="no_problem",
                            reason=f"problem {s.problem_id!r} is not in problems.jsonl",
                        )
                    )

            with Progress("verify", quiet=not progress) as view:
                view.start(total=len(samples))
                # a truncated sample re-asked with a larger budget is superseded: verify only the live row
                items = _pending(live_samples(samples), problems, recipe, verdicts.keys, orphan)
                preload = ("math_verify",) if "math" in all_names else ()
                result.worker_restarts = run_items(
                    items, options, sink, workers=workers, chunk_size=chunk_size, on_item=view.advance, preload=preload
                )
            verdicts.sync()
            _summarise(read_jsonl(verdicts.path), result)
            result.wall_s = round(time.monotonic() - t0, 3)
            result.verdicts_per_s = round(result.written / result.wall_s, 2) if result.wall_s else 0.0
            if "code" in all_names:
                from tracesynth.stages.verify.verifiers.sandbox import capabilities

                result.sandbox = capabilities().describe()
            write_json(layout.verify_json, result.model_dump(mode="json"))
            mark.update(written=result.written, kept=result.kept, samples=result.samples)
    return result


def _summarise(rows: Iterator[dict[str, Any]], result: VerifyResult) -> None:
    """Counts, tags, reasons and the keep decision per sample, from verdicts.jsonl as plain dicts."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    tags: dict[str, Counter[str]] = defaultdict(Counter)
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    by_sample: dict[str, list[tuple[str, str, str, tuple[str, ...]]]] = defaultdict(list)
    for v in rows:
        name, status, tag = v["verifier"], v["status"], v.get("tag") or ""
        counts[name][status] += 1
        if status != "pass":
            tags[name][tag or "untagged"] += 1
        if status == "unverifiable":
            reasons[name][f"{tag}: {(v.get('reason') or '')[:100]}"] += 1
        fallback = tuple((v.get("details") or {}).get("fallback_for") or ())
        by_sample[v["sample_id"]].append((name, status, tag, fallback))
    result.counts = {k: dict(c) for k, c in sorted(counts.items())}
    result.tags = {k: dict(c.most_common()) for k, c in sorted(tags.items())}
    result.unverifiable_reasons = {k: dict(c.most_common(10)) for k, c in sorted(reasons.items())}
    result.samples = len(by_sample)
    result.kept = sum(keep_rows(vs, result.keep) for vs in by_sample.values())


def print_summary(result: VerifyResult, console: Any = None) -> None:
    """The end-of-stage table: per verifier pass / fail / unverifiable and the commonest tags."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"verify: {result.run_dir}")
    for col in ("verifier", "pass", "fail", "unverifiable", "pass rate", "top non-pass tags"):
        table.add_column(col, justify="left" if col in ("verifier", "top non-pass tags") else "right")
    for name, c in result.counts.items():
        total = sum(c.values())
        top = ", ".join(f"{t} {n}" for t, n in list(result.tags.get(name, {}).items())[:4])
        table.add_row(
            name,
            str(c.get("pass", 0)),
            str(c.get("fail", 0)),
            str(c.get("unverifiable", 0)),
            f"{c.get('pass', 0) / total:.1%}" if total else "-",
            top,
        )
    console.print(table)
    console.print(
        f"kept {result.kept}/{result.samples} samples (keep: {result.keep}); wrote {result.written} "
        f"verdicts in {result.wall_s:.1f}s ({result.verdicts_per_s:.0f}/s, {result.workers} workers), "
        f"{result.existing} already there"
    )
    for name, reasons in result.unverifiable_reasons.items():
        for reason, n in list(reasons.items())[:3]:
            console.print(f"  {name} unverifiable x{n}: {reason}", markup=False, highlight=False)
    if result.sandbox:
        console.print(f"code sandbox: {result.sandbox}", markup=False, highlight=False)


__all__ = [
    "Item",
    "VerifyResult",
    "check_config",
    "print_summary",
    "run_items",
    "verifier_options",
    "verifiers_for",
    "verify",
    "work_chunk",
]
