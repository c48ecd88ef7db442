"""What a harvest did, in every mode: the one result model and the one writer of ``harvest.json``.

``status``:

* ``running`` — written when a harvest starts, so a killed one never leaves an older ``complete``;
* ``complete`` — nothing left to ask (item errors may remain: they are retried on the next run);
* ``budget`` — the cap stopped new work (a clean stop; raise ``teacher.budget_usd`` and re-run);
* ``interrupted`` — Ctrl-C / SIGTERM (exit 130 / 143); re-running resumes;
* ``failed`` — this run asked and got no answer at all, or stopped on an error (exit 1);
* ``waiting`` (batch mode, batches still running), ``exported``, ``ingested``.

This module summarises and writes one JSON file; it schedules and records nothing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from tracesynth.rundir.jsonio import write_json
from tracesynth.rundir.layout import RunLayout

Status = Literal["running", "complete", "budget", "interrupted", "failed", "waiting", "exported", "ingested"]
Mode = Literal["online", "retry", "batch", "export", "ingest"]  # retry: online re-asks of truncated samples


class HarvestResult(BaseModel):
    """What a harvest, batch harvest, export or ingest did (also in ``harvest.json``)."""

    status: Status
    mode: Mode = "online"
    retry_truncated: bool = False
    signal: str | None = None
    run_dir: str
    message: str = ""
    problems: int = 0
    samples_expected: int = 0
    done: int = 0  # samples of this recipe in samples.jsonl after this run
    done_before: int = 0
    new: int = 0
    truncated: int = 0
    failed: int = 0
    gave_up: int = 0
    pending: int = 0
    requests: int = 0
    submitted: int = 0  # batch / export: requests written into new batch files by this run
    in_batches: int = 0  # batch: requests in batches still running at the end
    returned: int = 0  # batch: requests that never ran (expired, cancelled, missing): pending again
    left_for_budget: int = 0
    usage_estimated: int = 0
    files: list[str] = Field(default_factory=list)
    batches: list[dict[str, Any]] = Field(default_factory=list)
    spent_usd: float = 0.0
    run_spent_usd: float = 0.0
    possibly_billed_usd: float = 0.0
    tokens: dict[str, int] = Field(default_factory=dict)
    ledger: dict[str, Any] = Field(default_factory=dict)
    errors_by_kind: dict[str, int] = Field(default_factory=dict)
    source_drops: dict[str, int] = Field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.status == "interrupted":
            return {"SIGINT": 130, "SIGTERM": 143}.get(self.signal or "", 130)
        return 1 if self.status == "failed" else 0

    def summary_line(self) -> str:
        errs = ", ".join(f"{k} {v}" for k, v in sorted(self.errors_by_kind.items())) or "none"
        drops = ", ".join(f"{k} {v}" for k, v in sorted(self.source_drops.items()))
        head = f"harvest{'' if self.mode == 'online' else f' ({self.mode})'} {self.status}"
        if self.mode in ("online", "retry"):
            rate = self.new / self.wall_s if self.wall_s > 0 else 0.0
            body = (
                f"{self.done}/{self.samples_expected} samples ({self.new} new, {self.truncated} cut at max_tokens, "
                f"{self.failed} item errors, {self.gave_up} given up, {self.pending} pending) in "
                f"{self.wall_s:.1f}s ({rate:.1f}/s)"
            )
        else:
            body = (
                f"{self.new} new samples ({self.truncated} truncated), {self.failed} item errors, "
                f"{self.submitted} requests submitted, {self.in_batches} in batches still running, "
                f"{self.returned} returned to pending"
            )
        money = f"spent ${self.spent_usd:.4f} (${self.run_spent_usd:.4f} this run"
        if self.possibly_billed_usd:
            money += f", +${self.possibly_billed_usd:.4f} possibly billed"
        if self.usage_estimated:
            money += f", {self.usage_estimated} samples charged on estimated usage"
        money += ")"
        dropped = f"; source rows dropped: {drops}" if drops else ""
        return f"{head}: {body}, {money}, errors: {errs}{dropped}. {self.message}".strip()


def write_summary(layout: RunLayout, result: HarvestResult, **extra: Any) -> dict[str, Any]:
    """Write ``harvest.json``: the result, its counts block, and the mode's extra blocks (atomically)."""
    data = {
        **result.model_dump(),
        **extra,
        "counts": {
            "problems": result.problems,
            "samples_expected": result.samples_expected,
            "done_total": result.done,
            "done_before": result.done_before,
            "new": result.new,
            "truncated": result.truncated,
            "failed": result.failed,
            "gave_up": result.gave_up,
            "pending": result.pending,
            "submitted": result.submitted,
            "in_batches": result.in_batches,
            "returned": result.returned,
            "usage_estimated": result.usage_estimated,
        },
    }
    write_json(layout.harvest_json, data)
    return data


__all__ = ["HarvestResult", "Mode", "Status", "write_summary"]
