"""`tracesynth curate RECIPE`: problems + samples + verdicts → traces.jsonl and the curation report curate.json.

Steps, in order, each counted in and out with reasons (``curate.json["steps"]``):

1. read — samples with an item error or an unknown problem are not candidates, nor are stale
   samples (their id is not one the current recipe's model, sampling, template and ``n`` give:
   an earlier recipe's answers are never mixed in) and samples superseded by a re-asked one;
2. decontaminate — problems sharing a word n-gram with an eval set (every removal listed with
   eval set, eval item and n-gram; the pre-harvest removals from harvest.json are listed too);
3. truncated / empty — ``finish_reason == "length"`` (``drop_truncated``) and answers with no text;
4. keep policy — ``passing`` (the sample passes ``verify.keep`` over its verdicts), ``solved``
   (every sample of a problem with at least one passing sample), or ``all``;
5. length — ``min_tokens`` / ``max_tokens`` on the trace (see filters.TokenCounter);
6. exact and near dedup of questions (the first problem in problems.jsonl order survives);
7. per problem — ``per_problem`` samples by ``pick``;
8. select — difficulty signals, then s1 diversity sampling to ``select.size`` problems.

Samples are read twice (decide, then write) so trace texts are never all in memory. Outputs
are written (outputs.py) to temporary files and renamed, so a failure (bad input, Ctrl-C) leaves the
previous traces.jsonl and curate.json as they were; re-running recomputes them from the
inputs. This module does not call the teacher or verifiers and does not build the dataset.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracesynth.config import Recipe
from tracesynth.decontam.index import DecontamIndex
from tracesynth.errors import UserError
from tracesynth.records import Problem, Sample, Verdict, sample_ids
from tracesynth.rundir.store import RunStore, read_jsonl
from tracesynth.sources.prompts import load_template, render_messages, template_hash
from tracesynth.stages.curate import dedup, outputs, select
from tracesynth.stages.curate.filters import TokenCounter, completion_text, keep_fn, local_keep, why_not_passing


@dataclass
class _Info:
    id: str
    problem_id: str
    tokens: int
    prompt_tokens: int
    passed: bool
    why: str
    truncated: bool
    empty: bool


@dataclass
class CurateResult:
    """What curation kept and why the rest went (the same numbers as curate.json)."""

    traces: int
    problems: int
    steps: list[dict[str, Any]] = field(default_factory=list)
    decontam_removed: int = 0
    traces_path: str = ""
    report_path: str = ""

    def summary(self) -> str:
        funnel = " → ".join(f"{s['step']} {s['out']}" for s in self.steps)
        return f"curate: {self.traces} traces of {self.problems} problems ({funnel}) -> {self.traces_path}"


class _Funnel:
    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def apply(self, name: str, infos: list[_Info], drop: dict[str, str]) -> list[_Info]:
        """Drop the samples whose id is in ``drop`` (id → reason); record the step."""
        kept = [i for i in infos if i.id not in drop]
        reasons = Counter(drop[i.id] for i in infos if i.id in drop)
        self.steps.append({
            "step": name,
            "in": len(infos),
            "out": len(kept),
            "problems_in": len({i.problem_id for i in infos}),
            "problems_out": len({i.problem_id for i in kept}),
            "dropped": dict(sorted(reasons.items())),
        })
        return kept


def curate(recipe: Recipe) -> CurateResult:
    """Run curation for ``recipe`` (see module docstring); write traces.jsonl and curate.json."""
    cfg = recipe.curate
    run_dir = Path(recipe.run_dir)
    if not (run_dir / "samples.jsonl").exists():
        raise UserError(f"{run_dir / 'samples.jsonl'}: no samples; run `tracesynth harvest` first")
    if cfg.keep != "all" and not (run_dir / "verdicts.jsonl").exists():
        raise UserError(
            f"{run_dir / 'verdicts.jsonl'}: no verdicts; run `tracesynth verify` first (or set curate.keep: all)"
        )
    started = time.time()
    with RunStore(run_dir) as store:
        store.mark_stage("curate", started_at=started)
        problems = {p.id: p for p in store.file("problems", Problem).iter()}
        verdicts, weak_solved = _verdicts(store, cfg.select.weak_verifier)
        weak_solved |= weak_runs_solved(cfg.select.weak_runs)
        counter = TokenCounter(cfg.tokenizer)
        keep = keep_fn()
        infos, read_drop, n_samples = _read(store, problems, verdicts, counter, keep, recipe)
        passes: Counter[str] = Counter(i.problem_id for i in infos if i.passed)
        totals: Counter[str] = Counter(i.problem_id for i in infos)
        funnel = _Funnel()
        funnel.steps.append({"step": "read", "in": n_samples, "out": len(infos), "problems_in": len(problems),
                             "problems_out": len(totals), "dropped": dict(read_drop)})

        hits = []
        if cfg.decontam.enabled:
            index = DecontamIndex.from_config(cfg.decontam)
            hits = [h for pid in _ordered_pids(infos) if (h := index.check(problems[pid])) is not None]
        bad = {h.problem_id for h in hits}
        infos = funnel.apply("decontaminate", infos, {i.id: "contaminated" for i in infos if i.problem_id in bad})

        drop = {i.id: "empty" for i in infos if i.empty}
        if cfg.drop_truncated:
            drop.update({i.id: "truncated" for i in infos if i.truncated})
        infos = funnel.apply("truncated", infos, drop)

        if cfg.keep == "passing":
            drop = {i.id: i.why for i in infos if not i.passed}
        elif cfg.keep == "solved":
            drop = {i.id: "unsolved_problem" for i in infos if passes[i.problem_id] == 0}
        else:
            drop = {}
        infos = funnel.apply(f"keep:{cfg.keep}", infos, drop)

        drop = {}
        for i in infos:
            if cfg.min_tokens is not None and i.tokens < cfg.min_tokens:
                drop[i.id] = "too_short"
            elif cfg.max_tokens is not None and i.tokens > cfg.max_tokens:
                drop[i.id] = "too_long"
        infos = funnel.apply("length", infos, drop)

        dedup_pairs: dict[str, list[dict[str, str]]] = {"exact": [], "near": []}
        if cfg.exact_dedup:
            items = [(pid, _text(problems[pid])) for pid in _ordered_pids(infos, problems)]
            dups = dedup.exact_duplicates(items)
            dedup_pairs["exact"] = [{"problem_id": a, "duplicate_of": b} for a, b in dups.items()]
            drop = {i.id: "duplicate_question" for i in infos if i.problem_id in dups}
            infos = funnel.apply("exact_dedup", infos, drop)
        if cfg.near_dedup:
            items = [(pid, _text(problems[pid])) for pid in _ordered_pids(infos, problems)]
            dups = dedup.near_duplicates(items, cfg.near_threshold, num_perm=cfg.num_perm, seed=cfg.seed + 1,
                                         workers=min(2, os.cpu_count() or 1))
            dedup_pairs["near"] = [{"problem_id": a, "duplicate_of": b} for a, b in dups.items()]
            infos = funnel.apply("near_dedup", infos, {i.id: "near_duplicate" for i in infos if i.problem_id in dups})

        rng = random.Random(f"pick:{cfg.seed}")
        groups: dict[str, list[_Info]] = defaultdict(list)
        for i in infos:
            groups[i.problem_id].append(i)
        keep_ids = {i.id for g in groups.values() for i in select.pick_per_problem(
            g, cfg.per_problem, cfg.pick, lambda x: (x.tokens, x.id), rng)}
        infos = funnel.apply("per_problem", infos, {i.id: "extra_sample" for i in infos if i.id not in keep_ids})

        infos, domains = _select(infos, problems, passes, totals, weak_solved, recipe, funnel)

        report = outputs.build_report(recipe, funnel, infos, domains, hits, dedup_pairs, counter, passes, totals,
                                      run_dir, keep is local_keep, len(problems), started)
        traces_path = outputs.write_traces(store, run_dir, infos, problems, verdicts, domains, passes, totals, recipe)
        report_path = outputs.write_json(run_dir / "curate.json", report)
        store.mark_stage("curate", finished_at=time.time(), traces=len(infos))
    return CurateResult(
        traces=len(infos),
        problems=len({i.problem_id for i in infos}),
        steps=funnel.steps,
        decontam_removed=len(hits),
        traces_path=str(traces_path),
        report_path=str(report_path),
    )


def _verdicts(store: RunStore, weak_verifier: str | None) -> tuple[dict[str, list[Verdict]], set[str]]:
    by_sample: dict[str, list[Verdict]] = defaultdict(list)
    weak_solved: set[str] = set()
    if not (store.dir / "verdicts.jsonl").exists():
        return by_sample, weak_solved
    for v in store.file("verdicts", Verdict, key=("sample_id", "verifier")).iter():
        if weak_verifier and v.verifier == weak_verifier:
            if v.status == "pass":
                weak_solved.add(v.problem_id)
            continue
        by_sample[v.sample_id].append(v)
    return by_sample, weak_solved


def weak_runs_solved(runs: list[str]) -> set[str]:
    """Problem ids a weak model solved: a ``pass`` verdict in any of these runs' verdicts.jsonl (s1's filter).

    The runs are read, never written (a torn last line, from a verify still running, is skipped).
    """
    solved: set[str] = set()
    for run in runs:
        path = Path(run) / "verdicts.jsonl"
        if not path.is_file():
            raise UserError(f"curate.select.weak_runs: {path}: no verdicts; harvest the weak model into {run} "
                            "and run `tracesynth verify` on it first")
        solved.update(v.problem_id for v in read_jsonl(path, Verdict) if v.status == "pass")
    return solved


def _read(store, problems, verdicts, counter: TokenCounter, keep, recipe: Recipe):
    """Decide about every sample of the current recipe (stale and superseded samples are counted, not used)."""
    infos: list[_Info] = []
    drop: Counter[str] = Counter()
    prompt_tokens: dict[str, int] = {}
    expected = _expected_ids(problems, recipe)
    superseded: set[str] = set()
    template = load_template(recipe.prompt)
    n = 0
    for s in store.file("samples", Sample).iter():
        n += 1
        if s.supersedes:
            superseded.add(s.supersedes)
        if s.error is not None:
            drop["error"] += 1
            continue
        problem = problems.get(s.problem_id)
        if problem is None:
            drop["unknown_problem"] += 1
            continue
        if s.id not in expected and s.supersedes not in expected:
            drop["stale"] += 1  # another model, sampling, template or n than the recipe now says
            continue
        vs = verdicts.get(s.id, [])
        passed = s.finish_reason != "length" and keep(vs, recipe.verify.keep)
        if s.problem_id not in prompt_tokens or not counter.exact:
            text = "\n".join(str(m.get("content", "")) for m in render_messages(problem, recipe.prompt, template))
            prompt_tokens[s.problem_id] = counter.count(text, s.usage.prompt_tokens)
        infos.append(_Info(
            id=s.id,
            problem_id=s.problem_id,
            tokens=counter.count(completion_text(s), s.usage.completion_tokens),
            prompt_tokens=prompt_tokens[s.problem_id],
            passed=passed,
            why="" if passed else why_not_passing(s, vs),
            truncated=s.finish_reason == "length",
            empty=not (s.reasoning or "").strip() and not (s.content or "").strip(),
        ))
    if superseded:
        drop["superseded"] = sum(i.id in superseded for i in infos)
        infos = [i for i in infos if i.id not in superseded]
    return infos, drop, n


def _expected_ids(problems: dict[str, Problem], recipe: Recipe) -> set[str]:
    """The sample ids harvest gives this recipe's samples (records.sample_id, as tracesynth.harvest computes them)."""
    t = recipe.teacher
    sampling = t.sampling.model_dump()
    make = sample_ids(t.model, sampling, template_hash(recipe.prompt))
    return {make(pid, i) for pid in problems for i in range(t.n)}


def _select(infos, problems, passes, totals, weak_solved, recipe: Recipe, funnel: _Funnel):
    sel = recipe.curate.select
    labels = select.labels_from_run(sel.domain_from_run) if sel.domain_from_run else None
    domains = {pid: select.domain_of(problems[pid], sel.domain_key, labels) for pid in {i.problem_id for i in infos}}
    longest: dict[str, int] = defaultdict(int)
    for i in infos:
        longest[i.problem_id] = max(longest[i.problem_id], i.tokens)
    cands = [
        select.Candidate(pid, domains[pid], longest[pid], passes[pid], totals[pid]) for pid in _ordered_pids(infos)
    ]
    reasons = {c.problem_id: r for c in cands if (r := select.difficulty_reason(c, sel, weak_solved))}
    cands = [c for c in cands if c.problem_id not in reasons]
    if sel.size is not None:
        chosen = {c.problem_id for c in select.s1_select(cands, sel.size, recipe.curate.seed, diversity=sel.diversity)}
        reasons.update({c.problem_id: "not_selected" for c in cands if c.problem_id not in chosen})
    infos = funnel.apply("select", infos, {i.id: reasons[i.problem_id] for i in infos if i.problem_id in reasons})
    return infos, domains


def _ordered_pids(infos: list[_Info], problems: dict[str, Problem] | None = None) -> list[str]:
    """Problem ids of ``infos`` once each, in problems.jsonl order (else first appearance)."""
    present = dict.fromkeys(i.problem_id for i in infos)
    if problems is None:
        return list(present)
    return [pid for pid in problems if pid in present]


def _text(p: Problem) -> str:
    return p.prompt if p.prompt is not None else " ".join(str(m.get("content", "")) for m in p.messages or [])


__all__ = ["CurateResult", "curate"]
