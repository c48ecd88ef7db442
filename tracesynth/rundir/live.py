"""Which sample rows count: the live ones (not superseded) that belong to the recipe as it is now.

Two rules, one home, used by harvest (what is pending), verify, curate and export:

* **live** — ``--retry-truncated`` never rewrites history: the truncated answer stays in
  ``samples.jsonl`` (its cost stays in the ledger) and the re-ask is a new row whose ``supersedes``
  names the row it replaces. A row is live when no later row supersedes it: one live row per
  (problem, index), however many times it was re-asked.
* **of this recipe** — a sample belongs to the recipe when its *root* id (the id of the first ask:
  ``metadata.root`` on a re-ask, else its own id) is the id the recipe's model, sampling, template
  and ``n`` give that (problem, index) (:func:`tracesynth.records.sample_id`). Rows of an earlier
  recipe (another model, another template) are *stale*: kept as history, never mixed in.

Cost accounting (tracesynth.accounting.spend) reads every row: superseded and stale rows were paid for.
Two streaming passes over the file; only the set of superseded ids is held in memory.
This module reads; it never writes or deletes a row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tracesynth.records import Sample, sample_ids
from tracesynth.rundir.jsonio import json_lines
from tracesynth.rundir.store import JsonlFile, RunStore, read_jsonl

Source = str | Path | RunStore | JsonlFile[Any]


def _path(source: Source) -> Path:
    if isinstance(source, RunStore):
        return source.layout.samples
    if isinstance(source, JsonlFile):
        return source.path
    p = Path(source)
    return p / "samples.jsonl" if p.is_dir() else p


def supersedes_edges(source: Source) -> dict[str, str]:
    """``{new id: the id it supersedes}`` of every re-ask row (a run folder, its store, or samples.jsonl)."""
    out: dict[str, str] = {}
    for raw in json_lines(_path(source), raw=True):
        if b'"supersedes":null' in raw:  # the common case, without parsing the line
            continue
        row = json.loads(raw)
        old = row.get("supersedes")
        if old:
            out[str(row.get("id"))] = old
    return out


def superseded_ids(source: Source) -> set[str]:
    """Ids of the sample rows that a later row supersedes."""
    return set(supersedes_edges(source).values())


def live_samples(source: Source) -> Iterator[Sample]:
    """Stream the sample rows no later row supersedes (of any recipe; see :class:`RecipeSamples`)."""
    path = _path(source)
    dead = superseded_ids(path)
    for s in read_jsonl(path, Sample):
        if s.id not in dead:
            yield s


def root_id(sample: Sample, edges: dict[str, str] | None = None) -> str:
    """The id of the first ask of this (problem, index): a re-ask records it as ``metadata.root``; a row
    without it is followed back along ``edges`` (:func:`supersedes_edges`) to the row it replaced."""
    root = sample.metadata.get("root")
    if isinstance(root, str) and root:
        return root
    node, seen = sample.supersedes or sample.id, {sample.id}
    while edges and node in edges and node not in seen:
        seen.add(node)
        node = edges[node]
    return node if sample.supersedes else sample.id


class RecipeSamples:
    """The sample ids a recipe gives, and whether a row belongs to it (see the module docstring)."""

    def __init__(self, recipe: Any) -> None:
        from tracesynth.sources.prompts import template_hash

        t = recipe.teacher
        self.n: int = t.samples_per_problem  # until_verified asks indices 0..K-1 of the same ids
        per_source = [src.template for src in getattr(recipe, "sources", [])]
        sampling, template = t.sampling.model_dump(), template_hash(recipe.prompt, per_source)
        self.id_of: Callable[[str, int], str] = sample_ids(t.model, sampling, template)

    def belongs(self, sample: Sample, edges: dict[str, str] | None = None) -> bool:
        """Whether ``sample`` (or the first ask it re-asks) has the id this recipe gives its (problem, index)."""
        if not 0 <= sample.index < self.n:
            return False
        return root_id(sample, edges) == self.id_of(sample.problem_id, sample.index)

    def live(self, source: Source) -> Iterator[Sample]:
        """The live rows of this recipe (what verify, curate and export use)."""
        edges = supersedes_edges(source)
        dead = set(edges.values())
        return (s for s in read_jsonl(_path(source), Sample) if s.id not in dead and self.belongs(s, edges))


__all__ = ["RecipeSamples", "live_samples", "root_id", "superseded_ids", "supersedes_edges"]
