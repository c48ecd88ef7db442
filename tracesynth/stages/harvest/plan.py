"""What still has to be asked, as request bodies: the pending samples of a recipe, or its truncated ones.

* :meth:`Planner.fresh` streams the recipe's problems exactly as the online harvester does and
  yields one :class:`PendingRequest` per (problem, index) whose sample id is not in
  ``samples.jsonl``, not given up (more failure rows than ``teacher.item_retries``) and not reserved
  by a batch in flight. The body is the online request body (same messages, sampling parameters,
  ``seed + index``), one sample per request (batch mode never uses ``n``).
* :meth:`Planner.truncated` (``--retry-truncated``) yields the *live* samples of this recipe that
  ended with ``finish_reason == "length"`` and were cut below the current ``max_tokens`` (the budget
  they ran with is ``metadata.max_tokens`` when recorded, else at least their completion tokens).
  The re-ask gets a new id derived from the old one, :func:`retry_id`, and ``supersedes`` the old
  row; complete samples are never asked again (sample ids exclude ``max_tokens``, see records.py).

Also: the spend (by kind), tokens and failure counts already recorded (:func:`scan_prior`), and batch prices.
This module plans; it sends nothing and writes only ``problems.jsonl`` rows for problems it asks.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracesynth._ids import stable_hash
from tracesynth.accounting.prices import DEFAULT_WORST_OUTPUT_TOKENS, Ledger, Prices
from tracesynth.config import Recipe
from tracesynth.records import Problem, Sample, sample_ids
from tracesynth.rundir.live import superseded_ids
from tracesynth.rundir.store import RunStore
from tracesynth.teacher.client import estimate_tokens, sampling_params


@dataclass(slots=True)
class PendingRequest:
    """One request to make: the sample it fills and the body to POST to /v1/chat/completions."""

    id: str
    problem_id: str
    index: int
    attempt: int
    body: dict[str, Any]
    supersedes: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # root id and retry depth of a re-ask

    def map_entry(self) -> dict[str, Any]:
        """What ingesting a result needs besides the result (written next to the batch file)."""
        return {"id": self.id, "problem_id": self.problem_id, "index": self.index, "attempt": self.attempt,
                "supersedes": self.supersedes, "max_tokens": self.max_tokens, "meta": self.meta}

    @property
    def max_tokens(self) -> int | None:
        return self.body.get("max_tokens") or self.body.get("max_completion_tokens")


def retry_id(old_id: str, depth: int) -> str:
    """The id of the ``depth``-th re-ask of a truncated sample (deterministic: a crash never pays twice)."""
    return "s-" + stable_hash("sample-retry", old_id, depth)


def batch_prices(prices: Prices | None, discount: float) -> Prices | None:
    """Recipe prices x (1 - discount), every token class (batch APIs discount input and output alike)."""
    if prices is None:
        return None
    f = 1.0 - discount

    def scale(v: float | None) -> float | None:
        return None if v is None else v * f

    return Prices(prices.input * f, prices.output * f, scale(prices.cached_input), scale(prices.reasoning),
                  source=f"{prices.source}, batch -{discount:.0%}")


def batch_discount(recipe: Recipe) -> float:
    return recipe.teacher.prices.batch_discount if recipe.teacher.prices is not None else 0.5


@dataclass
class Prior:
    """What the run folder already records: spend by kind, tokens, and failure rows per still-undone id."""

    spent_usd: float = 0.0
    possibly_billed_usd: float = 0.0
    truncated_usd: float = 0.0
    retried_usd: float = 0.0
    tokens: Counter[str] = field(default_factory=Counter)
    fail_counts: dict[str, int] = field(default_factory=dict)

    def ledger(self, budget_usd: float | None) -> Ledger:
        """A ledger that starts where the run folder is (cumulative spend, breakdown and tokens)."""
        led = Ledger(budget_usd, spent_usd=self.spent_usd, possibly_billed_usd=self.possibly_billed_usd,
                     truncated_usd=self.truncated_usd, retried_usd=self.retried_usd)
        for k in led.tokens:
            led.tokens[k] = self.tokens[k]
        return led


def scan_prior(run_dir: Path, done: set[str]) -> Prior:
    """Read samples.jsonl and failures.jsonl once (see :class:`Prior`)."""
    prior = Prior()
    counts: Counter[str] = Counter()
    for name in ("samples", "failures"):
        path = run_dir / f"{name}.jsonl"
        if not path.exists():
            continue
        with path.open("rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break
                rec = json.loads(raw)
                cost = float(rec.get("cost_usd") or 0.0)
                prior.spent_usd += cost
                if name == "failures":
                    prior.possibly_billed_usd += float((rec.get("metadata") or {}).get("possibly_billed_usd") or 0.0)
                    if rec.get("id") not in done:
                        counts[rec["id"]] += 1
                    continue
                if rec.get("finish_reason") == "length":
                    prior.truncated_usd += cost
                if rec.get("supersedes"):
                    prior.retried_usd += cost
                u = rec.get("usage") or {}
                for k in ("prompt", "completion", "reasoning", "cached"):
                    prior.tokens[k] += int(u.get(f"{k}_tokens") or 0)
    prior.fail_counts = dict(counts)
    return prior


class Planner:
    """Pending work of one recipe in one run folder (see module docstring)."""

    def __init__(self, recipe: Recipe, store: RunStore) -> None:
        from tracesynth.sources.prompts import template_hash

        self.recipe, self.t, self.store = recipe, recipe.teacher, store
        self.samples = store.stage("samples", Sample, key="id")
        self.problems = store.stage("problems", Problem, key="id")
        self.prior = scan_prior(store.dir, self.samples.keys)
        self.fail_counts = self.prior.fail_counts
        self.template_hash = template_hash(recipe.prompt)
        self.id_sampling = self.t.sampling.model_dump()
        self.sample_id = sample_ids(self.t.model, self.id_sampling, self.template_hash)
        self.stats: Counter[str] = Counter()  # problems, expected, done_before, gave_up, reserved, ...
        self.source_stats: Counter[str] = Counter()

    def body(self, messages: list[dict[str, Any]], index: int) -> dict[str, Any]:
        return {"model": self.t.model, "messages": messages,
                **sampling_params(self.t.sampling, n=1, seed_offset=index, model=self.t.model)}

    def worst_usd(self, req: PendingRequest, prices: Prices | None) -> float:
        """The most one request can cost (prompt estimate x 1.5 + max_tokens), as the online harvester reserves."""
        if prices is None:
            return 0.0
        out = req.max_tokens or DEFAULT_WORST_OUTPUT_TOKENS
        return prices.worst_case(estimate_tokens(req.body["messages"]) * 1.5, out)

    def _attempt(self, sid: str) -> int | None:
        """Attempt number for ``sid``, or None when it has used up its item retries."""
        failed = self.fail_counts.get(sid, 0)
        return None if failed > self.t.item_retries else failed + 1

    def fresh(self, reserved: set[str]) -> Iterator[PendingRequest]:
        from tracesynth.decontam.index import problems_to_ask
        from tracesynth.sources.prompts import load_template, render_messages

        st = self.stats
        template = load_template(self.recipe.prompt)
        for problem in problems_to_ask(self.recipe, stats=self.source_stats):
            st["problems"] += 1
            messages: list[dict[str, Any]] | None = None
            for i in range(self.t.n):
                st["expected"] += 1
                sid = self.sample_id(problem.id, i)
                if sid in self.samples.keys:
                    st["done_before"] += 1
                    continue
                if sid in reserved:
                    st["in_batches"] += 1
                    continue
                attempt = self._attempt(sid)
                if attempt is None:
                    st["gave_up"] += 1
                    continue
                if messages is None:
                    if problem.id not in self.problems.keys:
                        self.problems.append(problem)
                    messages = render_messages(problem, self.recipe.prompt, template)
                yield PendingRequest(sid, problem.id, i, attempt, self.body(messages, i))

    def truncated(self, reserved: set[str]) -> Iterator[PendingRequest]:
        """Re-asks of this recipe's live truncated samples cut below the current max_tokens."""
        from tracesynth.sources.prompts import render_messages

        st = self.stats
        limit = self.t.sampling.max_tokens
        dead = superseded_ids(self.samples.path)
        todo: list[Sample] = []
        for s in self.samples.iter():
            if s.id in dead or s.finish_reason != "length":
                continue
            root = s.metadata.get("root", s.id)
            if root != self.sample_id(s.problem_id, s.index):
                st["other_settings"] += 1  # asked with another model / sampling / template: not this recipe's
                continue
            st["truncated"] += 1
            ran_with = s.metadata.get("max_tokens") or s.usage.completion_tokens
            if limit is not None and ran_with and limit <= ran_with:
                st["not_larger"] += 1  # the same budget would cut it again: raise max_tokens first
                continue
            todo.append(s)
        if not todo:
            return
        wanted = {s.problem_id for s in todo}
        problems = {p.id: p for p in self.problems.iter() if p.id in wanted}
        for s in todo:
            depth = int(s.metadata.get("retry", 0)) + 1
            new = retry_id(s.id, depth)
            if new in self.samples.keys or new in reserved:
                st["in_batches" if new in reserved else "done_before"] += 1
                continue
            attempt = self._attempt(new)
            if attempt is None:
                st["gave_up"] += 1
                continue
            problem = problems.get(s.problem_id)
            if problem is None:
                st["no_problem"] += 1  # problems.jsonl lost the row: cannot rebuild the prompt
                continue
            meta = {"root": s.metadata.get("root", s.id), "retry": depth}
            yield PendingRequest(new, s.problem_id, s.index, attempt, self.body(render_messages(problem,
                                 self.recipe.prompt), s.index), supersedes=s.id, meta=meta)


__all__ = ["PendingRequest", "Planner", "Prior", "batch_discount", "batch_prices", "retry_id", "scan_prior"]
