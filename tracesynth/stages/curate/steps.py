"""The curation steps: each a small function that returns the samples it drops and why.

    def my_filter(ctx: Context, infos: list[Info]) -> dict[str, str]:   # {sample id: reason}
        return {i.id: "too_easy" for i in infos if ...}

    STEPS["my_filter"] = my_filter          # and add "my_filter" to curate.steps in a recipe

:data:`DEFAULT_STEPS` is the order a recipe gets unless it sets ``curate.steps``:

1. ``decontaminate`` — problems sharing a word n-gram with an eval set (the shared filter of
   :mod:`tracesynth.decontam`; every removal listed with eval set, item and n-gram);
2. ``truncated`` — ``finish_reason == "length"`` (``drop_truncated``) and answers with no text;
3. ``keep`` — ``passing`` (the sample passes ``verify.keep``), ``solved`` (every sample of a
   problem with at least one passing sample), or ``all``;
4. ``length`` — ``min_tokens`` / ``max_tokens`` on the trace;
5. ``exact_dedup`` / ``near_dedup`` — of questions (the first problem in problems.jsonl order survives);
6. ``per_problem`` — ``per_problem`` samples by ``pick``;
7. ``select`` — difficulty signals, then s1 diversity sampling to ``select.size`` problems.

A step sees the current survivors and the shared :class:`Context` (problems, verdict counts,
the decontamination index, the seeded rng); it never writes files. The stage (stage.py) runs the
steps in order and records each one's counts in curate.json.
"""

from __future__ import annotations

import os
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from tracesynth.config import Recipe
from tracesynth.decontam.index import DecontamIndex, Hit
from tracesynth.plugins import lookup
from tracesynth.records import Problem
from tracesynth.sources.problems import source_type
from tracesynth.stages.classify.labels import domains as classified_domains
from tracesynth.stages.curate import dedup, select


@dataclass
class Info:
    """What the steps know of one sample (its texts stay on disk)."""

    id: str
    problem_id: str
    tokens: int
    prompt_tokens: int
    passed: bool
    why: str
    truncated: bool
    empty: bool


@dataclass
class Context:
    """What every step may read, and where steps leave what the report shows."""

    recipe: Recipe
    problems: dict[str, Problem]
    passes: Counter[str]
    totals: Counter[str]
    weak_solved: set[str]
    rng: random.Random
    hits: list[Hit] = field(default_factory=list)
    dedup_pairs: dict[str, list[dict[str, str]]] = field(default_factory=lambda: {"exact": [], "near": []})
    domains: dict[str, str] = field(default_factory=dict)

    def ordered_pids(self, infos: list[Info], *, problems_order: bool = False) -> list[str]:
        """Problem ids of ``infos`` once each, in problems.jsonl order (else first appearance)."""
        present = dict.fromkeys(i.problem_id for i in infos)
        return [p for p in self.problems if p in present] if problems_order else list(present)


Step = Callable[[Context, list[Info]], dict[str, str]]


def decontaminate(ctx: Context, infos: list[Info]) -> dict[str, str]:
    cfg = ctx.recipe.curate.decontam
    if not cfg.enabled:
        return {}
    index = DecontamIndex.from_config(cfg)
    ctx.hits = [h for pid in ctx.ordered_pids(infos) if (h := index.check(ctx.problems[pid])) is not None]
    bad = {h.problem_id for h in ctx.hits}
    return {i.id: "contaminated" for i in infos if i.problem_id in bad}


def truncated(ctx: Context, infos: list[Info]) -> dict[str, str]:
    drop = {i.id: "empty" for i in infos if i.empty}
    if ctx.recipe.curate.drop_truncated:
        drop.update({i.id: "truncated" for i in infos if i.truncated})
    return drop


def keep(ctx: Context, infos: list[Info]) -> dict[str, str]:
    policy = ctx.recipe.curate.keep
    if policy == "passing":
        return {i.id: i.why for i in infos if not i.passed}
    if policy == "solved":
        return {i.id: "unsolved_problem" for i in infos if ctx.passes[i.problem_id] == 0}
    return {}


def length(ctx: Context, infos: list[Info]) -> dict[str, str]:
    cfg = ctx.recipe.curate
    drop = {}
    for i in infos:
        if cfg.min_tokens is not None and i.tokens < cfg.min_tokens:
            drop[i.id] = "too_short"
        elif cfg.max_tokens is not None and i.tokens > cfg.max_tokens:
            drop[i.id] = "too_long"
    return drop


def _text(p: Problem) -> str:
    return p.prompt if p.prompt is not None else " ".join(str(m.get("content", "")) for m in p.messages or [])


def exact_dedup(ctx: Context, infos: list[Info]) -> dict[str, str]:
    if not ctx.recipe.curate.exact_dedup:
        return {}
    items = [(pid, _text(ctx.problems[pid])) for pid in ctx.ordered_pids(infos, problems_order=True)]
    dups = dedup.exact_duplicates(items)
    ctx.dedup_pairs["exact"] = [{"problem_id": a, "duplicate_of": b} for a, b in dups.items()]
    return {i.id: "duplicate_question" for i in infos if i.problem_id in dups}


def near_dedup(ctx: Context, infos: list[Info]) -> dict[str, str]:
    cfg = ctx.recipe.curate
    if not cfg.near_dedup:
        return {}
    items = [(pid, _text(ctx.problems[pid])) for pid in ctx.ordered_pids(infos, problems_order=True)]
    dups = dedup.near_duplicates(
        items, cfg.near_threshold, num_perm=cfg.num_perm, seed=cfg.seed + 1, workers=min(2, os.cpu_count() or 1)
    )
    ctx.dedup_pairs["near"] = [{"problem_id": a, "duplicate_of": b} for a, b in dups.items()]
    return {i.id: "near_duplicate" for i in infos if i.problem_id in dups}


def per_problem(ctx: Context, infos: list[Info]) -> dict[str, str]:
    cfg = ctx.recipe.curate
    groups: dict[str, list[Info]] = defaultdict(list)
    for i in infos:
        groups[i.problem_id].append(i)
    kept = {
        i.id
        for g in groups.values()
        for i in select.pick_per_problem(g, cfg.per_problem, cfg.pick, lambda x: (x.tokens, x.id), ctx.rng)
    }
    return {i.id: "extra_sample" for i in infos if i.id not in kept}


def select_problems(ctx: Context, infos: list[Info]) -> dict[str, str]:
    sel = ctx.recipe.curate.select
    labels = select.labels_from_run(sel.domain_from_run) if sel.domain_from_run else None
    # the classify stage's MSC labels win where present; an unlabelled problem keeps its own domain
    own = classified_domains(ctx.recipe.run_dir) if ctx.recipe.classify.enabled else {}
    ctx.domains = {
        pid: own.get(pid) or select.domain_of(ctx.problems[pid], sel.domain_key, labels)
        for pid in {i.problem_id for i in infos}
    }
    longest: dict[str, int] = defaultdict(int)
    for i in infos:
        longest[i.problem_id] = max(longest[i.problem_id], i.tokens)
    cands = [
        select.Candidate(
            pid, ctx.domains[pid], longest[pid], ctx.passes[pid], ctx.totals[pid], source_type(ctx.problems[pid])
        )
        for pid in ctx.ordered_pids(infos)
    ]
    reasons = {c.problem_id: r for c in cands if (r := select.difficulty_reason(c, sel, ctx.weak_solved))}
    cands = [c for c in cands if c.problem_id not in reasons]
    if sel.size is not None:
        seed = ctx.recipe.curate.seed
        picked = select.s1_select(
            cands,
            sel.size,
            seed,
            diversity=sel.diversity,
            preselect=sel.preselect,
            benchmark_after=sel.benchmark_after,
            benchmark_mix=sel.benchmark_mix,
        )
        chosen = {c.problem_id for c in picked}
        reasons.update({c.problem_id: "not_selected" for c in cands if c.problem_id not in chosen})
    return {i.id: reasons[i.problem_id] for i in infos if i.problem_id in reasons}


STEPS: dict[str, Step] = {
    "decontaminate": decontaminate,
    "truncated": truncated,
    "keep": keep,
    "length": length,
    "exact_dedup": exact_dedup,
    "near_dedup": near_dedup,
    "per_problem": per_problem,
    "select": select_problems,
}
DEFAULT_STEPS: tuple[str, ...] = tuple(STEPS)


def step_label(name: str, recipe: Recipe) -> str:
    """The name a step has in curate.json (the keep step names its policy)."""
    return f"keep:{recipe.curate.keep}" if name == "keep" else name


def get_step(name: str) -> Step | None:
    """A registered step, or ``"package.module:function"`` imported on first use."""
    return lookup(STEPS, name)


__all__ = ["DEFAULT_STEPS", "STEPS", "Context", "Info", "Step", "get_step", "step_label"]
