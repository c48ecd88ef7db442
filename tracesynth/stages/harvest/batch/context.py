"""What every batch entry point shares: the run context (store, log, planner, prices, ledger), the result
model written to ``harvest.json``, progress lines, and starting the simulated teacher for a demo recipe.

This module holds state and reporting; it sends nothing (see submit.py) and plans nothing (plan.py).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, Field
from rich.console import Console

from tracesynth.accounting.prices import Prices, require_prices
from tracesynth.config import Recipe
from tracesynth.rundir.store import RunStore
from tracesynth.stages.harvest.batch.state import BatchRecord, BatchState
from tracesynth.stages.harvest.plan import PendingRequest, Planner, batch_discount, batch_prices

Status = Literal["complete", "waiting", "budget", "exported", "ingested"]
Mode = Literal["batch", "export", "ingest", "retry"]


class BatchHarvestResult(BaseModel):
    """What a batch harvest, export or ingest did (also in ``harvest.json`` with ``mode``)."""

    status: Status
    mode: Mode = "batch"
    run_dir: str
    message: str = ""
    problems: int = 0
    samples_expected: int = 0
    done_before: int = 0
    submitted: int = 0  # requests written into new batch files by this run
    in_batches: int = 0  # requests in batches still running at the end
    new: int = 0
    failed: int = 0
    truncated: int = 0
    returned: int = 0  # requests that never ran (expired, cancelled, missing): pending again
    gave_up: int = 0
    left_for_budget: int = 0
    files: list[str] = Field(default_factory=list)
    batches: list[dict[str, Any]] = Field(default_factory=list)
    spent_usd: float = 0.0
    run_spent_usd: float = 0.0
    ledger: dict[str, Any] = Field(default_factory=dict)
    errors_by_kind: dict[str, int] = Field(default_factory=dict)
    wall_s: float = 0.0

    exit_code: int = 0

    def summary_line(self) -> str:
        errs = ", ".join(f"{k} {v}" for k, v in sorted(self.errors_by_kind.items())) or "none"
        led = self.ledger
        return (f"harvest ({self.mode}) {self.status}: {self.new} new samples ({self.truncated} truncated), "
                f"{self.failed} item errors, {self.submitted} requests submitted, {self.in_batches} in batches "
                f"still running, {self.returned} returned to pending; spent ${self.spent_usd:.4f} "
                f"(${self.run_spent_usd:.4f} this run; truncated ${led.get('truncated_usd', 0):.4f}, retried "
                f"${led.get('retried_usd', 0):.4f}); errors: {errs}. {self.message}").strip()


class RunContext:
    """Shared setup of the batch entry points: store, state, prices, ledger, planner."""

    def __init__(self, recipe: Recipe, store: RunStore) -> None:
        t = recipe.teacher
        self.recipe, self.store = recipe, store
        self.state = BatchState(store)
        self.planner = Planner(recipe, store)
        online: Prices | None = require_prices(t.model, t.prices, t.budget_usd)
        self.prices = batch_prices(online, batch_discount(recipe))
        self.ledger = self.planner.prior.ledger(t.budget_usd)  # cumulative over the run folder
        self.start_spent = self.ledger.spent_usd
        self.counts: Counter[str] = Counter()
        self.t0 = time.monotonic()

    def requests(self, retry_truncated: bool) -> Iterator[PendingRequest]:
        reserved = self.state.reserved_ids()
        return self.planner.truncated(reserved) if retry_truncated else self.planner.fresh(reserved)

    def lookup(self, records: list[BatchRecord]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for rec in records:
            for e in self.state.map_entries(rec):
                out[e["id"]] = e
        return out

    def result(self, status: Status, mode: Mode, message: str = "",
               files: list[str] | None = None) -> BatchHarvestResult:
        st, c, led = self.planner.stats, self.counts, self.ledger
        active = self.state.active()
        return BatchHarvestResult(
            status=status, mode=mode, run_dir=str(self.store.dir), message=message, problems=st["problems"],
            samples_expected=st["expected"], done_before=st["done_before"], submitted=c["submitted"],
            in_batches=sum(r.requests for r in active), new=c["new"], failed=c["failed"], truncated=c["truncated"],
            returned=c["not_run"] + c["missing"], gave_up=st["gave_up"], left_for_budget=c["left_for_budget"],
            files=files or [], batches=[describe(r) for r in self.state.records.values()],
            spent_usd=round(led.spent_usd, 6), run_spent_usd=round(led.spent_usd - self.start_spent, 6),
            ledger=led.summary(), errors_by_kind={k[6:]: v for k, v in c.items() if k.startswith("error:")},
            wall_s=round(time.monotonic() - self.t0, 3))

    def write_summary(self, res: BatchHarvestResult) -> None:
        data = {**res.model_dump(), "model": self.recipe.teacher.model, "prices": prices_dict(self.prices),
                "counts": {"problems": res.problems, "samples_expected": res.samples_expected,
                           "done_before": res.done_before, "new": res.new, "failed": res.failed,
                           "truncated": res.truncated, "returned": res.returned, "in_batches": res.in_batches,
                           "gave_up": res.gave_up}, "planner": dict(self.planner.stats),
                "source": dict(self.planner.source_stats)}
        path = self.store.dir / "harvest.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str))
        tmp.replace(path)


def prices_dict(p: Prices | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"input": p.input, "output": p.output, "cached_input": p.cached_input, "reasoning": p.reasoning,
            "source": p.source}


def describe(r: BatchRecord) -> dict[str, Any]:
    return {"local": r.local, "kind": r.kind, "batch_id": r.batch_id, "status": r.status or (
        "exported" if r.kind == "export" else "not submitted"), "requests": r.requests, "counts": r.counts,
        "ingested": r.ingested, "input": r.input, "errors": r.errors[:3]}


class ProgressLog:
    """Progress lines on stderr (rich console; plain with quiet)."""

    def __init__(self, quiet: bool, every_s: float = 2.0) -> None:
        self.quiet = quiet
        self.console = Console(stderr=True, highlight=False)
        self.every_s = every_s
        self._last = ""
        self._t = -1e9

    def __call__(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if text == self._last or (not force and now - self._t < self.every_s):
            return
        self._last, self._t = text, now
        if self.quiet:
            print(f"harvest: {text}", file=sys.stderr, flush=True)
        else:
            self.console.print(text)


def progress_line(run: RunContext) -> str:
    recs = [r for r in run.state.records.values() if r.kind == "remote"]
    by = Counter((r.status or "submitting") if r.ingested is None else "ingested" for r in recs)
    running = [f"{r.local} {r.counts.get('completed', 0) + r.counts.get('failed', 0)}/{r.requests}"
               for r in recs if r.ingested is None and r.status == "in_progress"][:3]
    return (f"batches {', '.join(f'{v} {k}' for k, v in sorted(by.items())) or 'none'}"
            f"{' (' + ', '.join(running) + ')' if running else ''}; {run.counts['new']} new samples, "
            f"{run.counts['failed']} failed, {run.counts['truncated']} truncated; spent ${run.ledger.spent_usd:.4f} "
            f"({run.ledger.spend_line()})")


def start_sim(recipe: Recipe, base_url: str | None) -> tuple[Any, str | None]:
    if not recipe.teacher.sim.enabled or base_url is not None:
        return None, base_url
    from tracesynth.sim import SimTeacher

    sim = SimTeacher(**recipe.teacher.sim.options).start()
    return sim, sim.base_url


__all__ = ["BatchHarvestResult", "Mode", "ProgressLog", "RunContext", "Status", "describe", "progress_line",
           "start_sim"]
