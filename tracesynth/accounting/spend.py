"""The one reader of money and tokens in a run folder: resume, the receipt, the dataset card and the report.

:func:`scan_spend` streams ``samples.jsonl`` and ``failures.jsonl`` once and returns a :class:`Spend`:
money by kind (complete, truncated, failed, retried, estimated, possibly billed), tokens in the one
taxonomy (:class:`~tracesynth.accounting.tokens.TokenCounts`), row counts, and the failure rows per
sample id (for ``teacher.item_retries`` on resume). Every row counts: superseded and stale rows were
paid for. ``samples.jsonl`` can be gigabytes of reasoning text, so a row is parsed from its ``usage``
key onward: every field after the texts (usage, cost, supersedes, metadata) and nothing before.

This module reads; it writes nothing and estimates nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracesynth.accounting.tokens import USAGE_ESTIMATED, TokenCounts
from tracesynth.rundir.jsonio import json_lines
from tracesynth.rundir.layout import RunLayout


@dataclass
class Spend:
    """What a run folder records as paid (see the module docstring)."""

    spent_usd: float = 0.0  # every row's cost_usd (samples and failures)
    complete_usd: float = 0.0
    truncated_usd: float = 0.0
    failed_usd: float = 0.0
    retried_usd: float = 0.0  # part of complete/truncated: re-asks (rows that supersede another)
    estimated_usd: float = 0.0  # part of the above: charged on estimated usage
    possibly_billed_usd: float = 0.0  # worst cases of attempts that may have been billed (not in spent)
    samples: int = 0
    complete: int = 0
    truncated: int = 0
    failure_rows: int = 0
    estimated: int = 0
    tokens: TokenCounts = field(default_factory=TokenCounts)
    failures_by_id: Counter[str] = field(default_factory=Counter)

    @property
    def committed_usd(self) -> float:
        return self.spent_usd + self.possibly_billed_usd

    def summary(self) -> dict[str, Any]:
        return {
            "spent_usd": round(self.spent_usd, 6),
            "possibly_billed_usd": round(self.possibly_billed_usd, 6),
            "committed_usd": round(self.committed_usd, 6),
            "complete_usd": round(self.complete_usd, 6),
            "truncated_usd": round(self.truncated_usd, 6),
            "failed_usd": round(self.failed_usd, 6),
            "retried_usd": round(self.retried_usd, 6),
            "estimated_usd": round(self.estimated_usd, 6),
            "rows": {
                "samples": self.samples,
                "complete": self.complete,
                "truncated": self.truncated,
                "failures": self.failure_rows,
                "usage_estimated": self.estimated,
            },
            "tokens": self.tokens.as_dict(),
        }


def _tail(raw: bytes) -> dict[str, Any]:
    """The fields of a sample row from ``usage`` on (the texts before it are skipped, not parsed)."""
    at = raw.find(b'"usage":')
    if at < 0:
        return json.loads(raw)
    return json.loads(b"{" + raw[at:])


def _billed(meta: Any) -> float:
    return float(meta.get("possibly_billed_usd") or 0.0) if isinstance(meta, dict) else 0.0


def _estimated(meta: Any) -> bool:
    return isinstance(meta, dict) and USAGE_ESTIMATED in (meta.get("flags") or ())


def scan_spend(run_dir: str | Path | RunLayout) -> Spend:
    """Money and tokens recorded in a run folder (see the module docstring)."""
    layout = run_dir if isinstance(run_dir, RunLayout) else RunLayout(run_dir)
    s = Spend()
    for raw in json_lines(layout.samples, raw=True):
        row = _tail(raw)
        cost = float(row.get("cost_usd") or 0.0)
        s.samples += 1
        s.spent_usd += cost
        if b'"finish_reason":"length"' in raw[: raw.find(b'"usage":')]:
            s.truncated += 1
            s.truncated_usd += cost
        else:
            s.complete += 1
            s.complete_usd += cost
        if row.get("supersedes"):
            s.retried_usd += cost
        meta = row.get("metadata")
        s.possibly_billed_usd += _billed(meta)
        if _estimated(meta):
            s.estimated += 1
            s.estimated_usd += cost
        s.tokens.add_dict(row.get("usage") or {})
    for row in json_lines(layout.failures):
        cost = float(row.get("cost_usd") or 0.0)
        s.failure_rows += 1
        s.spent_usd += cost
        s.failed_usd += cost
        s.possibly_billed_usd += _billed(row.get("metadata"))
        s.tokens.add_dict(row.get("usage") or {})
        if isinstance(row.get("id"), str):
            s.failures_by_id[row["id"]] += 1
    return s


__all__ = ["Spend", "scan_spend"]
