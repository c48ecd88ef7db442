"""What a harvest shows while it runs and what it leaves in harvest.json: counters, timeline, display.

* :class:`HarvestStats` — counters the engine bumps (cheap attribute increments on the hot path) and a
  throughput timeline sampled once a second (halved in resolution past 2,000 points, so a week-long
  run keeps a bounded summary).
* :class:`ProgressView` — live rich progress on a terminal (done / total, rate, tokens/s, spend,
  errors by kind, concurrency), or with ``quiet`` a plain log line every ``log_every_s`` seconds.

This module displays and summarises; it does not schedule requests or write records.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

_MAX_POINTS = 2000


@dataclass
class HarvestStats:
    started: float = field(default_factory=time.monotonic)
    problems: int = 0
    expected: int = 0  # samples the problems seen so far ask for (n each)
    done_before: int = 0  # already in samples.jsonl when this run started
    gave_up: int = 0  # ids over teacher.item_retries: not asked again
    new: int = 0
    failed: int = 0
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
        f"{f' of ${ledger.budget_usd:g}' if ledger.budget_usd else ''}, "
        f"errors: {_fmt_errors(events)}, concurrency {flow.in_flight}/{flow.concurrency}"
    )


class ProgressView:
    """Live progress on a terminal, or periodic plain lines on stderr (``quiet``)."""

    def __init__(self, *, quiet: bool, live: bool | None = None, log_every_s: float = 10.0) -> None:
        self.console = Console(stderr=True)
        self.quiet = quiet
        self.live = (not quiet and self.console.is_terminal) if live is None else (live and not quiet)
        self.log_every_s = log_every_s
        self._next_log = log_every_s
        self._progress: Progress | None = None
        self._task: Any = None

    def start(self) -> None:
        if self.live:
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
