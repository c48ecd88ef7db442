"""What every harvest mode shares for one run folder: planner, prices, ledger, writer, result and summary.

:class:`HarvestRun` is built once by the dispatch (:func:`tracesynth.stages.harvest.harvest`) and handed
to the mode (online, batch, export, ingest). The ledger starts where the run folder is
(:meth:`~tracesynth.accounting.ledger.Ledger.from_spend`), prices are the online ones or the batch
ones, and :meth:`HarvestRun.result` builds the one :class:`~tracesynth.stages.harvest.result.HarvestResult`.
This module holds state; it sends nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from tracesynth.accounting.ledger import Ledger
from tracesynth.accounting.prices import Prices, batch_discount, batch_prices, require_prices
from tracesynth.config import Recipe
from tracesynth.decontam.index import decontam_summary
from tracesynth.errors import ConfigError
from tracesynth.rundir.store import RunStore
from tracesynth.stages.harvest.plan import PendingRequest, Planner
from tracesynth.stages.harvest.result import HarvestResult, Mode, Status, write_summary
from tracesynth.stages.harvest.writer import Writer
from tracesynth.ui.progress import Progress


class HarvestRun:
    """One harvest of one run folder (see the module docstring)."""

    def __init__(
        self,
        recipe: Recipe,
        store: RunStore,
        *,
        mode: Mode,
        retry_truncated: bool,
        view: Progress,
        endpoint: str,
        shard: tuple[int, int] | None = None,
    ) -> None:
        t = recipe.teacher
        self.recipe, self.store, self.mode, self.retry, self.view, self.shard = (
            recipe,
            store,
            mode,
            retry_truncated,
            view,
            shard,
        )
        self.planner = Planner(recipe, store, shard=shard)
        online: Prices | None = require_prices(t.model, t.prices, t.budget_usd, t.base_urls)
        self.prices = online
        if mode in ("batch", "export", "ingest") and online is not None:
            if mode == "batch" and not online.batch:
                raise ConfigError(f"teacher.mode: batch: {t.model} ({online.source}) has no batch API; harvest online")
            if online.batch and not online.self_hosted:
                self.prices = batch_prices(online, batch_discount(t.prices))
        self.ledger = Ledger.from_spend(self.planner.spend, t.budget_usd)
        self.start_spent = self.ledger.spent_usd
        self.writer = Writer(
            store, model=t.model, prices=self.prices, ledger=self.ledger, endpoint=endpoint, say=view.say
        )
        if self.prices is not None and self.prices.self_hosted:
            view.say(f"note: {self.prices.source}")
        self.t0 = time.monotonic()
        self.left_for_budget = 0

    @property
    def until_verified(self) -> bool:
        """Sampling until verified (``teacher.until_verified``; re-asking truncated samples is not)."""
        return self.recipe.teacher.until_verified is not None and not self.retry

    def requests(self, reserved: set[str] | frozenset[str] = frozenset()) -> Iterator[PendingRequest]:
        """What to ask: truncated re-asks, the next round of sampling until verified, or the fresh samples.
        (Online, sampling until verified asks from :class:`~tracesynth.stages.harvest.until.UntilVerified`.)"""
        if self.retry:
            return self.planner.truncated(reserved)
        if self.until_verified:
            from tracesynth.stages.harvest.until import round_requests

            return round_requests(self, reserved)
        return self.planner.fresh(reserved)

    def worst_usd(self, req: PendingRequest, choices: int = 1) -> float:
        return self.planner.worst_usd(req, self.prices, choices)

    def source_drops(self) -> dict[str, int]:
        return {k[5:]: v for k, v in self.planner.source_stats.items() if k.startswith("drop:")}

    def result(
        self,
        status: Status,
        *,
        message: str = "",
        signal: str | None = None,
        requests: int = 0,
        submitted: int = 0,
        in_batches: int = 0,
        returned: int = 0,
        files: list[str] | None = None,
        batches: list[dict[str, Any]] | None = None,
        abandoned: int = 0,
    ) -> HarvestResult:
        st, c, led = self.planner.stats, self.writer.counts, self.ledger
        if self.retry and st["not_larger"]:
            message = (
                f"{message} {st['truncated']} truncated samples; {st['not_larger']} not re-asked because "
                f"max_tokens is not larger than what they ran with"
            ).strip()
        done = st["done_before"] + c["new"]
        if self.planner.source_done:
            pending = max(0, st["expected"] - done - st["gave_up"] - c["failed"] - in_batches)
        else:
            pending = abandoned
        return HarvestResult(
            status=status,
            mode=self.mode,
            retry_truncated=self.retry,
            signal=signal,
            run_dir=str(self.store.dir),
            message=message,
            problems=st["problems"],
            samples_expected=st["expected"],
            done=done,
            done_before=st["done_before"],
            new=c["new"],
            truncated=c["truncated"],
            failed=c["failed"],
            gave_up=st["gave_up"],
            pending=pending,
            requests=requests,
            submitted=submitted,
            in_batches=in_batches,
            returned=returned,
            left_for_budget=self.left_for_budget,
            usage_estimated=c["estimated"],
            files=files or [],
            batches=batches or [],
            spent_usd=round(led.spent_usd, 6),
            run_spent_usd=round(led.spent_usd - self.start_spent, 6),
            possibly_billed_usd=round(led.possibly_billed_usd, 6),
            tokens=led.tokens.as_dict(),
            ledger=led.summary(),
            errors_by_kind=self.writer.errors_by_kind(),
            source_drops=self.source_drops(),
            wall_s=round(time.monotonic() - self.t0, 3),
        )

    def write_summary(self, result: HarvestResult, **extra: Any) -> dict[str, Any]:
        if self.until_verified and result.status != "running":
            from tracesynth.stages.harvest.until import folder_summary

            extra["until_verified"] = folder_summary(self)
        cfg = self.recipe.curate.decontam
        hits = self.planner.decontam_hits
        return write_summary(
            self.store.layout,
            result,
            model=self.recipe.teacher.model,
            prices=self.prices.as_dict() if self.prices else None,
            shard=f"{self.shard[0]}/{self.shard[1]}" if self.shard else None,
            planner=dict(self.planner.stats),
            source=dict(self.planner.source_stats),
            decontam=decontam_summary(cfg, hits, eval_sets=None if cfg.enabled and not self.retry else []),
            **extra,
        )


__all__ = ["HarvestRun"]
