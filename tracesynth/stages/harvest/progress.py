"""What an online harvest counts while it runs: counters the engine bumps and a throughput timeline.

:class:`HarvestStats` is cheap attribute increments on the hot path plus a timeline sampled once a
second (halved in resolution past 2,000 points, so a week-long run keeps a bounded summary);
:func:`status_text` is the line the live bar and the quiet log show. Drawing is
:class:`tracesynth.ui.progress.Progress`. This module counts; it schedules and writes nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_MAX_POINTS = 2000


@dataclass
class HarvestStats:
    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    successes: int = 0
    timeline: list[dict[str, Any]] = field(default_factory=list)
    _interval: float = 1.0
    _next_point: float = 0.0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def tick(self, new: int, failed: int, ledger: Any, flow: Any) -> None:
        """Append a timeline point if one is due."""
        t = self.elapsed
        if t < self._next_point:
            return
        self._next_point = t + self._interval
        self.timeline.append(
            {
                "t": round(t, 2),
                "done": new,
                "failed": failed,
                "requests": self.requests,
                "completion_tokens": ledger.tokens.completion,
                "spent_usd": round(ledger.spent_usd, 6),
                "concurrency": flow.concurrency,
                "in_flight": flow.in_flight,
            }
        )
        if len(self.timeline) > _MAX_POINTS:
            self.timeline = self.timeline[::2]
            self._interval *= 2


def _fmt_errors(events: Counter[str]) -> str:
    if not events:
        return "no errors"
    return " ".join(f"{k}={v}" for k, v in events.most_common(4))


def status_text(
    done: int,
    expected: int,
    source_done: bool,
    new: int,
    new_tokens: int,
    elapsed: float,
    ledger: Any,
    flow: Any,
    events: Counter[str],
) -> str:
    el = max(elapsed, 1e-9)
    total = f"{expected}" if source_done else f"{expected}+"
    cap = f" of ${ledger.budget_usd:g}" if ledger.budget_usd else ""
    return (
        f"{done}/{total} samples, {new / el:.1f}/s, {new_tokens / el:,.0f} tok/s, "
        f"${ledger.spent_usd:.4f}{cap} ({ledger.spend_line()}), errors: {_fmt_errors(events)}, "
        f"concurrency {flow.in_flight}/{flow.concurrency}"
    )


__all__ = ["HarvestStats", "status_text"]
