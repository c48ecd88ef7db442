"""What a harvest shows while it runs and what it leaves in harvest.json: result, counters, timeline, display.

* :class:`HarvestResult` — what ``tracesynth.harvest`` returns (and the CLI's one-line summary / exit code);
  :func:`write_summary` writes it to ``harvest.json`` with counts, ledger, retries, flow and the timeline.

* :class:`HarvestStats` — counters the engine bumps (cheap attribute increments on the hot path) and a
  throughput timeline sampled once a second (halved in resolution past 2,000 points, so a week-long
  run keeps a bounded summary).
* :class:`ProgressView` — live rich progress on a terminal (done / total, rate, tokens/s, spend,
  errors by kind, concurrency), or with ``quiet`` a plain log line every ``log_every_s`` seconds.

This module displays and summarises; it does not schedule requests or write records.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

_MAX_POINTS = 2000
Status = Literal["complete", "budget", "interrupted"]


class HarvestResult(BaseModel):
    """What a harvest did (also written, with the timeline, to ``harvest.json``)."""

    status: Status
    signal: str | None = None
    run_dir: str
    message: str = ""
    problems: int = 0
    samples_expected: int = 0
    done: int = 0
    new: int = 0
    truncated: int = 0
    failed: int = 0
    gave_up: int = 0
    pending: int = 0
    requests: int = 0
    spent_usd: float = 0.0
    run_spent_usd: float = 0.0
    possibly_billed_usd: float = 0.0
    tokens: dict[str, int] = Field(default_factory=dict)
    wall_s: float = 0.0
    errors_by_kind: dict[str, int] = Field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return {"SIGINT": 130, "SIGTERM": 143}.get(self.signal or "", 0) if self.status == "interrupted" else 0

    def summary_line(self) -> str:
        rate = self.new / self.wall_s if self.wall_s > 0 else 0.0
        errs = ", ".join(f"{k} {v}" for k, v in sorted(self.errors_by_kind.items())) or "none"
        return (f"harvest {self.status}: {self.done}/{self.samples_expected} samples ({self.new} new, "
                f"{self.truncated} cut at max_tokens, {self.failed} item errors, {self.gave_up} given up, "
                f"{self.pending} pending) in {self.wall_s:.1f}s "
                f"({rate:.1f}/s), spent ${self.spent_usd:.4f} (${self.run_spent_usd:.4f} this run), "
                f"errors: {errs}. {self.message}").strip()


@dataclass
class HarvestStats:
    started: float = field(default_factory=time.monotonic)
    problems: int = 0
    expected: int = 0  # samples the problems seen so far ask for (n each)
    done_before: int = 0  # already in samples.jsonl when this run started
    gave_up: int = 0  # ids over teacher.item_retries: not asked again
    new: int = 0
    failed: int = 0
    truncated: int = 0  # successes cut at max_tokens (finish_reason 'length')
    requests: int = 0
    source_done: bool = False
    errors: Counter[str] = field(default_factory=Counter)  # item errors written this run, by kind
    timeline: list[dict[str, Any]] = field(default_factory=list)
    _interval: float = 1.0
    _next_point: float = 0.0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def done(self) -> int:
        return self.done_before + self.new

    def tick(self, ledger: Any, flow: Any) -> None:
        """Append a timeline point if one is due."""
        t = self.elapsed
        if t < self._next_point:
            return
        self._next_point = t + self._interval
        self.timeline.append({
            "t": round(t, 2), "done": self.new, "failed": self.failed, "requests": self.requests,
            "completion_tokens": ledger.tokens["completion"], "spent_usd": round(ledger.spent_usd, 6),
            "concurrency": flow.concurrency, "in_flight": flow.in_flight,
        })
        if len(self.timeline) > _MAX_POINTS:
            self.timeline = self.timeline[::2]
            self._interval *= 2


def _fmt_errors(events: Counter[str]) -> str:
    if not events:
        return "no errors"
    return " ".join(f"{k}={v}" for k, v in events.most_common(4))


def status_line(stats: HarvestStats, ledger: Any, flow: Any, events: Counter[str]) -> str:
    el = max(stats.elapsed, 1e-9)
    total = f"{stats.expected}" if stats.source_done else f"{stats.expected}+"
    return (
        f"{stats.done}/{total} samples, {stats.new / el:.1f}/s, "
        f"{ledger.tokens['completion'] / el:,.0f} tok/s, ${ledger.spent_usd:.4f}"
        f"{f' of ${ledger.budget_usd:g}' if ledger.budget_usd else ''} ({ledger.spend_line()}), "
        f"errors: {_fmt_errors(events)}, concurrency {flow.in_flight}/{flow.concurrency}"
    )


class ProgressView:
    """Live progress on a terminal, or periodic plain lines on stderr (``quiet``)."""

    def __init__(self, *, quiet: bool, live: bool | None = None, log_every_s: float = 10.0) -> None:
        self.quiet = quiet
        self.console: Any = None
        if not quiet and live is not False:  # rich is imported only when it may draw (~50 ms)
            from rich.console import Console

            self.console = Console(stderr=True)
        self.live = (not quiet and self.console.is_terminal) if live is None else (live and not quiet)
        self.log_every_s = log_every_s
        self._next_log = log_every_s
        self._progress: Any = None
        self._task: Any = None

    def say(self, message: str) -> None:
        """One line on stderr (through rich when it is drawing, so the bar stays intact)."""
        if self.console is not None:
            self.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=sys.stderr, flush=True)

    def start(self) -> None:
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]harvest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"), console=self.console, refresh_per_second=4,
            )
            self._task = self._progress.add_task("harvest", total=None, info="")
            self._progress.start()

    def update(self, stats: HarvestStats, ledger: Any, flow: Any, events: Counter[str]) -> None:
        if self._progress is not None:
            el = max(stats.elapsed, 1e-9)
            info = (f"{stats.new / el:.1f}/s {ledger.tokens['completion'] / el:,.0f} tok/s "
                    f"${ledger.spent_usd:.4f} {_fmt_errors(events)} conc {flow.in_flight}/{flow.concurrency}")
            self._progress.update(self._task, completed=stats.done,
                                  total=stats.expected if stats.source_done else None, info=info)
        elif self.quiet and stats.elapsed >= self._next_log:
            self._next_log = stats.elapsed + self.log_every_s
            print(f"harvest: {status_line(stats, ledger, flow, events)}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def write_summary(path: Path, res: HarvestResult, stats: HarvestStats, ledger: Any, client: Any, *,
                  status: str | None, model: str, shard: str | None, source: dict[str, int],
                  decontam: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``harvest.json`` atomically: result, counts, ledger, retries, throughput, flow, timeline."""
    el = max(stats.elapsed, 1e-9)
    data = {
        **res.model_dump(), "status": status or res.status, "model": model,
        "endpoints": [e.as_dict() for e in client.pool.endpoints], "shard": shard,
        "counts": {"problems": res.problems, "samples_expected": res.samples_expected, "done_total": res.done,
                   "new": res.new, "truncated": res.truncated, "failed": res.failed, "gave_up": res.gave_up,
                   "pending": res.pending},
        "ledger": ledger.summary(), "retries_by_kind": dict(client.events),
        "throughput": {"samples_per_s": round(res.new / el, 3), "requests_per_s": round(res.requests / el, 3),
                       "completion_tokens_per_s": round(ledger.tokens["completion"] / el, 1)},
        "flow": client.flow.snapshot(), "source": source, "decontam": decontam, "timeline": stats.timeline,
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)
    return data
