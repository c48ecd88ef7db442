"""What the model passes of a run folder (rewrite, classify) cost, from their own records.

Each pass (:mod:`tracesynth.stages.ask`) writes one row per record it finished and one row per item
error, every row carrying what its call cost (``cost_usd``, charged on the usage the ledger trusted)
and what its failed attempts may have been billed (``possibly_billed_usd``). This module sums those
rows: the ledger of a resumed pass starts from them, and the receipt lists them as their own lines.
It reads JSONL files; it makes no requests and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracesynth.accounting.tokens import TokenCounts
from tracesynth.rundir.jsonio import json_lines
from tracesynth.rundir.layout import PASS_FILES, RunLayout


@dataclass
class PassSpend:
    """Money and tokens of one pass in one run folder."""

    name: str
    done: int = 0  # rows written (records the pass finished)
    failures: int = 0  # item-error rows
    done_usd: float = 0.0
    failed_usd: float = 0.0  # billed calls whose reply was unusable
    possibly_billed_usd: float = 0.0
    models: set[str] = field(default_factory=set)
    tokens: TokenCounts = field(default_factory=TokenCounts)

    @property
    def spent_usd(self) -> float:
        return self.done_usd + self.failed_usd

    @property
    def any(self) -> bool:
        return bool(self.done or self.failures)


def _num(row: dict[str, Any], key: str) -> float:
    v = row.get(key)
    return float(v) if isinstance(v, (int, float)) and v >= 0 else 0.0


def scan_pass(run_dir: str | Path | RunLayout, name: str) -> PassSpend:
    """The spend of pass ``name`` (``rewrite`` | ``classify``) recorded in the run folder."""
    layout = run_dir if isinstance(run_dir, RunLayout) else RunLayout(run_dir)
    rows_name, failures_name = PASS_FILES[name]
    out = PassSpend(name)
    for which, fname in (("done", rows_name), ("failed", failures_name)):
        path = layout.jsonl(fname)
        if not path.exists():
            continue
        for row in json_lines(path):
            cost = _num(row, "cost_usd")
            if which == "done":
                out.done += 1
                out.done_usd += cost
            else:
                out.failures += 1
                out.failed_usd += cost
            out.possibly_billed_usd += _num(row, "possibly_billed_usd")
            if isinstance(row.get("model"), str):
                out.models.add(row["model"])
            if isinstance(row.get("usage"), dict):
                out.tokens.add_dict(row["usage"])
    return out


__all__ = ["PassSpend", "scan_pass"]
