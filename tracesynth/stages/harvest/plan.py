"""What is still to be asked, as requests: the one planner every harvest mode uses.

* :meth:`Planner.fresh` streams the recipe's problems — decontaminated first (the shared filter of
  :mod:`tracesynth.decontam`), so no money is spent on a problem curation would drop, and limited to
  this shard — and yields one :class:`PendingRequest` per (problem, index) whose sample id is not
  in ``samples.jsonl``, not given up (more failure rows than ``teacher.item_retries``) and not
  reserved by a batch in flight. The body is the request body of every mode (same messages, sampling
  parameters, ``seed + index``). Problems asked are recorded in ``problems.jsonl``.
* :meth:`Planner.truncated` (``--retry-truncated``) yields the live samples of this recipe that ended
  with ``finish_reason == "length"`` under a smaller ``max_tokens`` than the current one (the budget
  they ran with is ``metadata.max_tokens`` when recorded, else at least their completion tokens). A
  re-ask has the id :func:`retry_id` (root id, depth), ``supersedes`` the row it replaces and keeps
  the root in ``metadata.root``; complete samples are never asked again (sample ids exclude
  ``max_tokens``, see records.py).
* :meth:`Planner.worst_usd` — the most one attempt of a request can cost (the ledger reserves it).

The planner also holds what the run folder already records (:func:`tracesynth.accounting.spend.scan_spend`,
read once). This module plans; it sends nothing and writes only ``problems.jsonl`` rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from tracesynth._ids import stable_hash
from tracesynth.accounting.prices import Prices
from tracesynth.accounting.spend import Spend, scan_spend
from tracesynth.accounting.tokens import DEFAULT_WORST_OUTPUT_TOKENS, PROMPT_MARGIN, prompt_tokens
from tracesynth.config import Recipe
from tracesynth.decontam.index import Hit, decontam_filter
from tracesynth.records import Problem, Sample
from tracesynth.rundir.live import RecipeSamples, root_id, supersedes_edges
from tracesynth.rundir.store import RunStore
from tracesynth.stages.harvest.shards import in_shard
from tracesynth.teacher.client import sampling_params


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

    @property
    def max_tokens(self) -> int | None:
        return self.body.get("max_tokens") or self.body.get("max_completion_tokens")

    @property
    def prompt_tokens(self) -> int:
        return prompt_tokens(self.body["messages"])

    def entry(self) -> dict[str, Any]:
        """What writing the answer needs besides the answer (and what a batch map file holds)."""
        return {
            "id": self.id,
            "problem_id": self.problem_id,
            "index": self.index,
            "attempt": self.attempt,
            "supersedes": self.supersedes,
            "max_tokens": self.max_tokens,
            "meta": self.meta,
            "prompt_tokens": self.prompt_tokens,
        }

    map_entry = entry


def retry_id(old_id: str, depth: int) -> str:
    """The id of the ``depth``-th re-ask of a truncated sample (deterministic: a crash never pays twice)."""
    return "s-" + stable_hash("sample-retry", old_id, depth)


def problems_to_ask(recipe: Recipe, *, stats: Counter[str], removed: list[Hit] | None = None) -> Iterator[Problem]:
    """The recipe's problems, decontaminated before any money is spent on them."""
    from tracesynth.sources.problems import iter_problems

    return decontam_filter(iter_problems(recipe, stats=stats), recipe.curate.decontam, stats=stats, removed=removed)


class Planner:
    """Pending work of one recipe in one run folder (see the module docstring)."""

    def __init__(self, recipe: Recipe, store: RunStore, *, shard: tuple[int, int] | None = None) -> None:
        self.recipe, self.t, self.store, self.shard = recipe, recipe.teacher, store, shard
        self.samples = store.samples
        self.problems = store.problems
        self.spend: Spend = scan_spend(store.layout)
        self.fail_counts = {k: v for k, v in self.spend.failures_by_id.items() if k not in self.samples.keys}
        self.ids = RecipeSamples(recipe)
        self.sample_id = self.ids.id_of
        # problems, expected, done_before, gave_up, in_batches, truncated, not_larger, other_settings, no_problem
        self.stats: Counter[str] = Counter()
        self.source_stats: Counter[str] = Counter()
        self.decontam_hits: list[Hit] = []
        self.source_done = False
        self._template: Any = None

    def body(self, messages: list[dict[str, Any]], index: int, n: int = 1) -> dict[str, Any]:
        return {
            "model": self.t.model,
            "messages": messages,
            **sampling_params(self.t.sampling, n=n, seed_offset=index, model=self.t.model),
        }

    @staticmethod
    def worst_usd(req: PendingRequest, prices: Prices | None, choices: int = 1) -> float:
        """The most one attempt of ``req`` can cost: prompt estimate x margin + max_tokens per choice."""
        if prices is None:
            return 0.0
        out = (req.max_tokens or DEFAULT_WORST_OUTPUT_TOKENS) * choices
        return prices.worst_case(req.prompt_tokens * PROMPT_MARGIN, out)

    def gave_up(self, sid: str) -> bool:
        """Whether ``sid`` has used up its item retries (more failure rows than ``teacher.item_retries``)."""
        return sid not in self.samples.keys and self._attempt(sid) is None

    def _attempt(self, sid: str) -> int | None:
        """Attempt number for ``sid``, or None when it has used up its item retries."""
        failed = self.fail_counts.get(sid, 0)
        return None if failed > self.t.item_retries else failed + 1

    def problems_to_ask(self) -> Iterator[Problem]:
        """This shard's decontaminated problems, counted in ``stats["problems"]``; ``source_done`` at the end."""
        for problem in problems_to_ask(self.recipe, stats=self.source_stats, removed=self.decontam_hits):
            if in_shard(problem.id, self.shard):
                self.stats["problems"] += 1
                yield problem
        self.source_done = True

    def messages(self, problem: Problem) -> list[dict[str, Any]]:
        """The rendered prompt of ``problem``, recorded in ``problems.jsonl`` the first time it is asked."""
        from tracesynth.sources.prompts import load_template, render_messages

        if self._template is None:
            self._template = load_template(self.recipe.prompt)
        if problem.id not in self.problems.keys:
            self.problems.append(problem)
        return render_messages(problem, self.recipe.prompt, self._template)

    def request(
        self, problem: Problem, index: int, messages: Callable[[], list[dict[str, Any]]], reserved: Collection[str] = ()
    ) -> PendingRequest | None:
        """The request for sample ``index`` of ``problem``, or None when it is done, in a batch or given up
        (counted in ``stats``). ``messages`` is called only when a request is made."""
        st = self.stats
        st["expected"] += 1
        sid = self.sample_id(problem.id, index)
        if sid in self.samples.keys:
            st["done_before"] += 1
            return None
        if sid in reserved:
            st["in_batches"] += 1
            return None
        attempt = self._attempt(sid)
        if attempt is None:
            st["gave_up"] += 1
            return None
        return PendingRequest(sid, problem.id, index, attempt, self.body(messages(), index))

    def lazy_messages(self, problem: Problem) -> Callable[[], list[dict[str, Any]]]:
        """:meth:`messages` of ``problem``, rendered (and recorded) on the first call only: a problem whose
        samples are all done is never rendered, and its requests share one message list."""
        rendered: list[dict[str, Any]] = []

        def messages() -> list[dict[str, Any]]:
            if not rendered:
                rendered.extend(self.messages(problem))
            return rendered

        return messages

    def fresh(self, reserved: set[str] | frozenset[str] = frozenset()) -> Iterator[PendingRequest]:
        for problem in self.problems_to_ask():
            messages = self.lazy_messages(problem)
            for i in range(self.t.n):
                req = self.request(problem, i, messages, reserved)
                if req is not None:
                    yield req

    def truncated(self, reserved: set[str] | frozenset[str] = frozenset()) -> Iterator[PendingRequest]:
        """Re-asks of this recipe's live truncated samples cut below the current max_tokens."""
        from tracesynth.sources.prompts import render_messages

        st = self.stats
        limit = self.t.sampling.max_tokens
        edges = supersedes_edges(self.samples.path)
        dead = set(edges.values())
        todo: list[Sample] = []
        for s in self.samples.iter():
            if s.id in dead or s.finish_reason != "length":
                continue
            if not self.ids.belongs(s, edges):
                st["other_settings"] += 1  # asked with another model / sampling / template: not this recipe's
                continue
            st["truncated"] += 1
            ran_with = s.metadata.get("max_tokens") or s.usage.completion_tokens
            if limit is not None and ran_with and limit <= ran_with:
                st["not_larger"] += 1  # the same budget would cut it again: raise max_tokens first
                continue
            todo.append(s)
        if todo:
            wanted = {s.problem_id for s in todo}
            problems = {p.id: p for p in self.problems.iter() if p.id in wanted}
            for s in todo:
                req = self._re_ask(s, problems.get(s.problem_id), reserved, render_messages, edges)
                if req is not None:
                    yield req
        self.source_done = True

    def _re_ask(
        self,
        s: Sample,
        problem: Problem | None,
        reserved: set[str] | frozenset[str],
        render: Any,
        edges: dict[str, str],
    ) -> PendingRequest | None:
        st = self.stats
        depth = int(s.metadata.get("retry", 0)) + 1
        new = retry_id(s.id, depth)
        if new in self.samples.keys or new in reserved:
            st["in_batches" if new in reserved else "done_before"] += 1
            return None
        attempt = self._attempt(new)
        if attempt is None:
            st["gave_up"] += 1
            return None
        if problem is None:
            st["no_problem"] += 1  # problems.jsonl lost the row: cannot rebuild the prompt
            return None
        st["expected"] += 1
        meta = {"root": root_id(s, edges), "retry": depth}
        return PendingRequest(
            new,
            s.problem_id,
            s.index,
            attempt,
            self.body(render(problem, self.recipe.prompt), s.index),
            supersedes=s.id,
            meta=meta,
        )


__all__ = ["PendingRequest", "Planner", "problems_to_ask", "retry_id"]
