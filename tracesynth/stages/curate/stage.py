"""`tracesynth curate RECIPE`: problems + samples + verdicts → traces.jsonl and the curation report curate.json.

1. read — the live samples of this recipe (:class:`tracesynth.rundir.live.RecipeSamples`: a
   re-asked sample replaces the row it supersedes, however many times it was re-asked; rows of an
   earlier recipe are *stale* and counted, never mixed in); item errors and samples of unknown
   problems are not candidates;
2. the steps of :mod:`.steps` in ``curate.steps`` order, each dropping samples with a reason.

Every step is counted in and out with its reasons (``curate.json["steps"]``). Samples are read
twice (decide, then write) so trace texts are never all in memory. Outputs (outputs.py) are
written to temporary files and renamed, so a failure (bad input, Ctrl-C) leaves the previous
traces.jsonl and curate.json as they were; re-running recomputes them from the inputs. This module
does not call the teacher or verifiers and does not build the dataset.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracesynth.config import Recipe
from tracesynth.errors import ConfigError, UserError
from tracesynth.records import Problem, Verdict
from tracesynth.rundir.live import RecipeSamples, supersedes_edges
from tracesynth.rundir.store import RunStore, read_jsonl
from tracesynth.sources.prompts import load_template, render_messages
from tracesynth.stages.curate import outputs
from tracesynth.stages.curate.filters import TokenCounter, completion_text, keep_fn, local_keep, why_not_passing
from tracesynth.stages.curate.steps import DEFAULT_STEPS, Context, Info, get_step, step_label
from tracesynth.stages.curate.weak import weak_dirs


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
        read = self.steps[0].get("dropped", {}) if self.steps else {}
        # stale rows (an earlier recipe's) and superseded ones are not used: say so, not only in curate.json
        why = ", ".join(f"{v} {k}" for k, v in sorted(read.items()) if v)
        not_read = f"; not read: {why}" if why else ""
        return f"curate: {self.traces} traces of {self.problems} problems ({funnel}{not_read}) -> {self.traces_path}"


class Funnel:
    """The counts of every step (what curate.json and the dataset card show)."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def apply(self, name: str, infos: list[Info], drop: dict[str, str]) -> list[Info]:
        """Drop the samples whose id is in ``drop`` (id → reason); record the step."""
        kept = [i for i in infos if i.id not in drop]
        reasons = Counter(drop[i.id] for i in infos if i.id in drop)
        self.steps.append(
            {
                "step": name,
                "in": len(infos),
                "out": len(kept),
                "problems_in": len({i.problem_id for i in infos}),
                "problems_out": len({i.problem_id for i in kept}),
                "dropped": dict(sorted(reasons.items())),
            }
        )
        return kept


def check_steps(recipe: Recipe) -> list[str]:
    """The step names of ``recipe`` (ConfigError naming an unknown one)."""
    names = list(recipe.curate.steps or DEFAULT_STEPS)
    for n in names:
        if get_step(n) is None:
            raise ConfigError(
                f"curate.steps: unknown step {n!r} (known: {', '.join(DEFAULT_STEPS)}, or package.module:function)"
            )
    return names


def curate(recipe: Recipe) -> CurateResult:
    """Run curation for ``recipe`` (see the module docstring); write traces.jsonl and curate.json."""
    cfg = recipe.curate
    run_dir = Path(recipe.run_dir)
    names = check_steps(recipe)
    with RunStore(run_dir) as store:
        layout = store.layout
        if not layout.samples.exists():
            raise UserError(f"{layout.samples}: no samples; run `tracesynth harvest` first")
        if cfg.keep != "all" and not layout.verdicts.exists():
            raise UserError(f"{layout.verdicts}: no verdicts; run `tracesynth verify` first (or set curate.keep: all)")
        started = time.time()
        with store.stage_run("curate") as mark:
            problems = {p.id: p for p in store.problems.iter()}
            verdicts, weak_solved = _verdicts(store, cfg.select.weak_verifier)
            weak_solved |= weak_runs_solved(cfg.select.weak_runs + weak_dirs(recipe))
            counter = TokenCounter(cfg.tokenizer)
            keep = keep_fn()
            infos, read_drop, n_samples = _read(store, problems, verdicts, counter, keep, recipe)
            ctx = Context(
                recipe,
                problems,
                Counter(i.problem_id for i in infos if i.passed),
                Counter(i.problem_id for i in infos),
                weak_solved,
                random.Random(f"pick:{cfg.seed}"),
            )
            funnel = Funnel()
            funnel.steps.append(
                {
                    "step": "read",
                    "in": n_samples,
                    "out": len(infos),
                    "problems_in": len(problems),
                    "problems_out": len(ctx.totals),
                    "dropped": dict(read_drop),
                }
            )
            for name in names:
                step = get_step(name)
                assert step is not None
                infos = funnel.apply(step_label(name, recipe), infos, step(ctx, infos))
            report = outputs.build_report(
                recipe, funnel, infos, ctx, counter, run_dir, keep is local_keep, len(problems), started
            )
            traces_path = outputs.write_traces(store, infos, problems, verdicts, ctx, recipe)
            report_path = outputs.write_report(layout.curate_json, report)
            mark.update(traces=len(infos))
    return CurateResult(
        traces=len(infos),
        problems=len({i.problem_id for i in infos}),
        steps=funnel.steps,
        decontam_removed=len(ctx.hits),
        traces_path=str(traces_path),
        report_path=str(report_path),
    )


def _verdicts(store: RunStore, weak_verifier: str | None) -> tuple[dict[str, list[Verdict]], set[str]]:
    by_sample: dict[str, list[Verdict]] = defaultdict(list)
    weak_solved: set[str] = set()
    if not store.layout.verdicts.exists():
        return by_sample, weak_solved
    for v in store.verdicts.iter():
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
            raise UserError(
                f"curate.select.weak_runs: {path}: no verdicts; harvest the weak model into {run} "
                "and run `tracesynth verify` on it first (for curate.select.weak_models, `tracesynth run` does both)"
            )
        solved.update(v.problem_id for v in read_jsonl(path, Verdict) if v.status == "pass")
    return solved


def _read(
    store: RunStore,
    problems: dict[str, Problem],
    verdicts: dict[str, list[Verdict]],
    counter: TokenCounter,
    keep: Any,
    recipe: Recipe,
) -> tuple[list[Info], Counter[str], int]:
    """Decide about every live sample of the current recipe (stale and superseded samples are counted)."""
    infos: list[Info] = []
    drop: Counter[str] = Counter()
    prompt_tokens: dict[str, int] = {}
    ours = RecipeSamples(recipe)
    edges = supersedes_edges(store.layout.samples)
    dead = set(edges.values())
    template = load_template(recipe.prompt)
    n = 0
    for s in store.samples.iter():
        n += 1
        if s.id in dead:
            drop["superseded"] += 1
            continue
        if s.error is not None:
            drop["error"] += 1
            continue
        problem = problems.get(s.problem_id)
        if problem is None:
            drop["unknown_problem"] += 1
            continue
        if not ours.belongs(s, edges):
            drop["stale"] += 1  # another model, sampling, template or n than the recipe now says
            continue
        vs = verdicts.get(s.id, [])
        passed = s.finish_reason != "length" and keep(vs, recipe.verify.keep)
        if s.problem_id not in prompt_tokens or not counter.exact:
            text = "\n".join(str(m.get("content", "")) for m in render_messages(problem, recipe.prompt, template))
            prompt_tokens[s.problem_id] = counter.count(text, s.usage.prompt_tokens)
        infos.append(
            Info(
                id=s.id,
                problem_id=s.problem_id,
                tokens=counter.count(completion_text(s), s.usage.completion_tokens),
                prompt_tokens=prompt_tokens[s.problem_id],
                passed=passed,
                why="" if passed else why_not_passing(s, vs),
                truncated=s.finish_reason == "length",
                empty=not (s.reasoning or "").strip() and not (s.content or "").strip(),
            )
        )
    return infos, drop, n


__all__ = ["CurateResult", "Funnel", "check_steps", "curate", "weak_runs_solved"]
