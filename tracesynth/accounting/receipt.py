"""The cost receipt of a run: what harvesting, training and evaluation cost, from what was recorded.

* Harvest: what :func:`tracesynth.accounting.spend.scan_spend` reads from samples.jsonl and
  failures.jsonl — complete and truncated answers, failed calls, money possibly billed by attempts
  that timed out or lost their body, and the part charged on estimated usage — with tokens in the
  one taxonomy (prompt, cached, reasoning, answer). Prices were applied per row when it was written.
* Model passes (classify, rewrite): their rows' cost, one line each (:mod:`tracesynth.accounting.passes`).
* Training: measured wall time × GPU count × ``compute.gpu_hour_usd`` from each train.json
  (the run's and every variant's). CPU runs are listed with their wall time and cost 0.
* Evaluation: cost recorded in eval.json (endpoint evaluation) — local evaluation costs 0 here.
* Sampling until verified: what each kept trace cost and what a fixed ``n`` would have cost for the
  same traces, from the ``until_verified`` block of harvest.json (:func:`until_verified_lines`, also
  used by the dataset card and report.md).

This module sums records; it does not estimate anything before a run (that is :mod:`tracesynth.accounting.estimate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracesynth.accounting.passes import scan_pass
from tracesynth.accounting.spend import scan_spend
from tracesynth.rundir.jsonio import read_json
from tracesynth.rundir.layout import TRAIN_JSON, RunLayout


@dataclass
class Line:
    item: str
    detail: str
    usd: float


@dataclass
class Receipt:
    lines: list[Line] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)
    spend: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

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
        rows += [f"\n{n}" for n in self.notes]
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lines": [x.__dict__ for x in self.lines],
            "tokens": self.tokens,
            "spend": self.spend,
            "notes": self.notes,
            "total_usd": self.total_usd,
        }


def _harvest_lines(run: Path, receipt: Receipt) -> None:
    s = scan_spend(run)
    if s.samples or s.failure_rows:
        receipt.lines.append(Line("harvest", f"{s.complete:,} complete samples", s.complete_usd))
        receipt.lines.append(
            Line("harvest", f"{s.truncated:,} truncated samples (finish_reason=length)", s.truncated_usd)
        )
        receipt.lines.append(Line("harvest", f"{s.failure_rows:,} failed calls kept as item errors", s.failed_usd))
        receipt.tokens = s.tokens.as_dict()
        receipt.spend = s.summary()
    if s.possibly_billed_usd:
        receipt.lines.append(
            Line("harvest", "timed-out or lost-body attempts (worst case; may be billed)", s.possibly_billed_usd)
        )
    if s.estimated:
        receipt.notes.append(
            f"{s.estimated:,} samples were charged on estimated usage (${s.estimated_usd:,.4f}, "
            "included above): the server reported none, or implausible counts"
        )


def _pass_lines(run: RunLayout, receipt: Receipt) -> None:
    """The model passes (classify, rewrite): what they cost, from their own rows (accounting/passes.py)."""
    what = {"classify": "problems labelled", "rewrite": "traces rewritten"}
    for name in ("classify", "rewrite"):
        s = scan_pass(run, name)
        if not s.any and not s.possibly_billed_usd:
            continue
        models = ", ".join(sorted(s.models)) or "?"
        detail = f"{s.done:,} {what[name]} by {models}; {s.failures:,} item errors (${s.failed_usd:,.4f} of it)"
        receipt.lines.append(Line(name, detail, s.spent_usd))
        if s.possibly_billed_usd:
            receipt.lines.append(
                Line(name, "timed-out or lost-body attempts (worst case; may be billed)", s.possibly_billed_usd)
            )


def until_verified_lines(block: dict[str, Any] | None) -> list[str]:
    """Plain sentences on sampling until verified (empty when the harvest sampled a fixed n)."""
    if not block or not block.get("problems"):
        return []
    b = block
    hist = ", ".join(f"{n}: {c:,}" for n, c in b["samples_per_problem"].items())
    out = [
        f"Sampled until verified (up to {b['until_verified']} per problem, stopping at "
        f"{b['keep_per_problem']} passing): {b['kept_traces']:,} verified traces from {b['samples']:,} samples of "
        f"{b['problems']:,} problems ({b['mean_samples_per_problem']:g} per problem); {b['solved']:,} solved, "
        f"{b['partial']:,} partly, {b['unsolved']:,} with no passing sample, {b['open']:,} still open.",
        f"Samples per problem (samples: problems): {hist}. Unverifiable samples (counted as not passed, "
        f"asked again): {b['unverifiable_samples']:,}.",
    ]
    if b.get("usd_per_kept_trace") is not None:
        out.append(
            f"${b['usd_per_kept_trace']:,.6f} per kept trace, {b['verified_traces_per_usd']:,.1f} verified traces per "
            f"dollar (${b['spent_usd']:,.4f} spent on every sample, kept or not)."
        )
    for key, what in (("fixed_n_same_traces", "finds every trace kept here"), ("fixed_n_k", "the same cap")):
        f = b.get(key)
        if f:
            out.append(
                f"A fixed n = {f['n']} ({what}) asks {f['samples']:,} samples: about ${f['usd']:,.4f} at this "
                "run's cost per sample."
            )
    return out


def _read(path: Path) -> dict[str, Any] | None:
    data = read_json(path, bad_ok=True)
    return data if isinstance(data, dict) else None


def _train_lines(run: RunLayout, receipt: Receipt) -> None:
    recipe = _read(run.recipe_json) or {}
    price = float((recipe.get("compute") or {}).get("gpu_hour_usd") or 0.0)
    candidates = [("student", run.student / TRAIN_JSON)]
    candidates += [(f"student[{name}]", v.student / TRAIN_JSON) for name, v in run.variant_layouts()]
    for name, path in candidates:
        info = _read(path)
        if not info:
            continue
        gpus = int(info.get("gpus") or 0)
        wall = float(info.get("wall_s") or 0.0)
        gpu_h = gpus * wall / 3600
        device = info.get("device", "cpu")
        if gpus:
            receipt.lines.append(
                Line(
                    f"training {name}",
                    f"{wall:,.0f} s × {gpus} {device} = {gpu_h:.2f} GPU-h × ${price:g}/GPU-h",
                    gpu_h * price,
                )
            )
        else:
            receipt.lines.append(Line(f"training {name}", f"{wall:,.0f} s on {device} (no GPU billed)", 0.0))


def _eval_lines(run: RunLayout, receipt: Receipt) -> None:
    for name, layout in [("", run), *run.variant_layouts()]:
        info = _read(layout.eval_json)
        if info and info.get("cost_usd"):
            receipt.lines.append(Line("evaluation", name or layout.root.name, float(info["cost_usd"])))


def build_receipt(run_dir: str | Path) -> Receipt:
    """The receipt of the run folder, from its records."""
    run = RunLayout(run_dir)
    receipt = Receipt()
    _harvest_lines(run.root, receipt)
    _pass_lines(run, receipt)
    harvest = _read(run.harvest_json) or {}
    prices = harvest.get("prices")
    if isinstance(prices, dict) and prices.get("self_hosted"):  # $0 above is a choice, not a missing price
        receipt.notes.append(f"Teacher tokens at $0: {prices.get('source', 'self-hosted')}.")
    receipt.notes += until_verified_lines(harvest.get("until_verified"))
    _train_lines(run, receipt)
    _eval_lines(run, receipt)
    return receipt
