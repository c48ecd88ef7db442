"""The cost receipt of a run: what harvesting, training and evaluation cost, from what was recorded.

* Harvest: the sum of ``cost_usd`` over samples.jsonl (kept answers, truncated ones counted
  apart) and failures.jsonl (calls that failed but may have been billed), with token totals split
  into prompt, reasoning and answer tokens. Prices were applied per sample when it was written.
* Training: measured wall time × GPU count × ``compute.gpu_hour_usd`` from each train.json
  (the run's and every variant's). CPU runs are listed with their wall time and cost 0.
* Evaluation: cost recorded in eval.json (endpoint evaluation) — local evaluation costs 0 here.

This module sums records; it does not estimate anything before a run (that is :mod:`tracesynth.cost`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Line:
    item: str
    detail: str
    usd: float


@dataclass
class Receipt:
    lines: list[Line] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)

    @property
    def total_usd(self) -> float:
        return sum(line.usd for line in self.lines)

    def markdown(self) -> str:
        rows = ["| item | detail | USD |", "|---|---|---:|"]
        rows += [f"| {x.item} | {x.detail} | {x.usd:,.4f} |" for x in self.lines]
        rows.append(f"| **total** | | **{self.total_usd:,.4f}** |")
        if self.tokens:
            rows.append("")
            rows.append("Tokens: " + ", ".join(f"{k} {v:,}" for k, v in self.tokens.items()))
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {"lines": [x.__dict__ for x in self.lines], "tokens": self.tokens, "total_usd": self.total_usd}


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open("rb") as fh:
        for raw in fh:
            if raw.endswith(b"\n"):
                yield json.loads(raw)


def _harvest_lines(run: Path, receipt: Receipt) -> None:
    ok = trunc = failed = 0.0
    n_ok = n_trunc = n_failed = 0
    tok = {"prompt": 0, "reasoning": 0, "answer": 0}
    for row in _iter_jsonl(run / "samples.jsonl"):
        usage = row.get("usage") or {}
        tok["prompt"] += usage.get("prompt_tokens", 0)
        tok["reasoning"] += usage.get("reasoning_tokens", 0)
        tok["answer"] += usage.get("completion_tokens", 0) - usage.get("reasoning_tokens", 0)
        if row.get("finish_reason") == "length":
            trunc += row.get("cost_usd", 0.0)
            n_trunc += 1
        else:
            ok += row.get("cost_usd", 0.0)
            n_ok += 1
    for row in _iter_jsonl(run / "failures.jsonl"):
        failed += row.get("cost_usd", 0.0)
        n_failed += 1
    if n_ok or n_trunc or n_failed:
        receipt.lines.append(Line("harvest", f"{n_ok:,} complete samples", ok))
        receipt.lines.append(Line("harvest", f"{n_trunc:,} truncated samples (finish_reason=length)", trunc))
        receipt.lines.append(Line("harvest", f"{n_failed:,} failed calls kept as item errors", failed))
        receipt.tokens = tok
    ledger = (_read(run / "harvest.json") or {}).get("ledger") or {}
    if ledger.get("possibly_billed_usd"):
        receipt.lines.append(Line("harvest", "timed-out or lost-body calls (worst case; may be billed)",
                                  float(ledger["possibly_billed_usd"])))


def _train_lines(run: Path, receipt: Receipt) -> None:
    recipe = _read(run / "recipe.json") or {}
    price = float((recipe.get("compute") or {}).get("gpu_hour_usd") or 0.0)
    candidates = [("student", run / "student" / "train.json")]
    vdir = run / "variants"
    if vdir.is_dir():
        candidates += [(f"student[{d.name}]", d / "student" / "train.json") for d in sorted(vdir.iterdir())]
    for name, path in candidates:
        info = _read(path)
        if not info:
            continue
        gpus = int(info.get("gpus") or 0)
        wall = float(info.get("wall_s") or 0.0)
        gpu_h = gpus * wall / 3600
        device = info.get("device", "cpu")
        if gpus:
            receipt.lines.append(Line(f"training {name}", f"{wall:,.0f} s × {gpus} {device} = {gpu_h:.2f} GPU-h"
                                      f" × ${price:g}/GPU-h", gpu_h * price))
        else:
            receipt.lines.append(Line(f"training {name}", f"{wall:,.0f} s on {device} (no GPU billed)", 0.0))


def _eval_lines(run: Path, receipt: Receipt) -> None:
    paths = [run / "eval.json", *sorted((run / "variants").glob("*/eval.json"))]
    for path in paths:
        info = _read(path)
        if info and info.get("cost_usd"):
            receipt.lines.append(Line("evaluation", str(path.parent.name), float(info["cost_usd"])))


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def build_receipt(run_dir: str | Path) -> Receipt:
    """The receipt of the run folder, from its records."""
    run = Path(run_dir)
    receipt = Receipt()
    _harvest_lines(run, receipt)
    _train_lines(run, receipt)
    _eval_lines(run, receipt)
    return receipt
