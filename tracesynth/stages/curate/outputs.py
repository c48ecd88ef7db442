"""What the curate stage writes: traces.jsonl (one Trace per kept sample) and the curate.json report.

The report holds the recipe hash, the counts in and out of every step with reasons, the
decontamination removals (before harvesting, from harvest.json, and at curation), dedup pairs,
pass rates, token lengths with the share over the SFT max length, and the output mix. Both
files are written to a temporary name and renamed, so a failure never leaves half a file. This
module decides nothing about which samples to keep (stage.py does).
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tracesynth.config import Recipe
from tracesynth.decontam.index import decontam_summary
from tracesynth.records import Problem, Trace
from tracesynth.rundir.jsonio import read_json, write_json
from tracesynth.rundir.layout import RunLayout
from tracesynth.rundir.store import JsonlFile, RunStore
from tracesynth.sources.prompts import render_messages
from tracesynth.stages.curate.steps import Context, Info


def build_report(
    recipe: Recipe,
    funnel: Any,
    infos: list[Info],
    ctx: Context,
    counter: Any,
    run_dir: Path,
    local: bool,
    n_problems: int,
    started: float,
) -> dict[str, Any]:
    cfg = recipe.curate
    domains, hits, dedup_pairs, passes, totals = ctx.domains, ctx.hits, ctx.dedup_pairs, ctx.passes, ctx.totals
    max_len = sft_max_length(recipe)
    lengths = [i.tokens for i in infos]
    over = sum(i.prompt_tokens + i.tokens > max_len for i in infos) if max_len else 0
    harvest = read_json(RunLayout(run_dir).harvest_json, bad_ok=True)
    pre = harvest.get("decontam") if isinstance(harvest, dict) else None
    read = funnel.steps[0]
    return {
        "recipe_hash": recipe.hash(),
        "ended_at": time.time(),
        "wall_time_s": round(time.time() - started, 3),
        "inputs": {"problems": n_problems, "samples": read["in"]},
        "policy": {
            "curate.keep": cfg.keep,
            "verify.keep": recipe.verify.keep,
            "keep_rule": "tracesynth.stages.curate.filters.local_keep"
            if local
            else "tracesynth.stages.verify.registry.keep",
        },
        "steps": funnel.steps,
        "decontam": {"pre_harvest": pre, "curate": decontam_summary(cfg.decontam, hits)},
        "dedup": {
            "exact": dedup_pairs["exact"],
            "near": dedup_pairs["near"],
            "near_threshold": cfg.near_threshold if cfg.near_dedup else None,
        },
        "pass_rates": {
            "samples": sum(totals.values()),
            "passing_samples": sum(passes.values()),
            "sample_pass_rate": _ratio(sum(passes.values()), sum(totals.values())),
            "problems": len(totals),
            "solved_problems": sum(1 for p in totals if passes[p] > 0),
            "problem_solve_rate": _ratio(sum(1 for p in totals if passes[p] > 0), len(totals)),
        },
        "lengths": {
            "counted_with": counter.source,
            "trace_tokens": _describe(lengths),
            "sft_max_length": max_len,
            "over_sft_max_length": over,
            "share_over_sft_max_length": _ratio(over, len(infos)),
        },
        "output": {
            "traces": len(infos),
            "problems": len({i.problem_id for i in infos}),
            "domains": dict(
                Counter(domains.get(i.problem_id, ctx.problems[i.problem_id].domain) for i in infos).most_common()
            ),
        },
    }


def write_traces(
    store: RunStore,
    infos: list[Info],
    problems: dict[str, Problem],
    verdicts: dict[str, Any],
    ctx: Context,
    recipe: Recipe,
) -> Path:
    final = {i.id: i for i in infos}
    domains, passes, totals = ctx.domains, ctx.passes, ctx.totals
    path = store.layout.traces
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch()  # zero kept traces is a valid (empty) result
    with JsonlFile(tmp, Trace, key="sample_id") as out:
        for s in store.samples.iter():
            info = final.get(s.id)
            if info is None:
                continue
            p = problems[s.problem_id]
            out.append(
                Trace(
                    sample_id=s.id,
                    problem_id=p.id,
                    prompt=p.prompt,
                    messages=render_messages(p, recipe.prompt),
                    answer=p.answer,
                    reasoning=s.reasoning,
                    content=s.content,
                    source=p.source,
                    domain=p.domain,
                    teacher=s.model,
                    finish_reason=s.finish_reason,
                    verdicts=verdicts.get(s.id, []),
                    usage=s.usage,
                    cost_usd=s.cost_usd,
                    metadata={
                        "index": s.index,
                        "tokens": info.tokens,
                        "prompt_tokens": info.prompt_tokens,
                        "passes": passes[p.id],
                        "samples": totals[p.id],
                        "pass_rate": _ratio(passes[p.id], totals[p.id]),
                        "select_domain": domains.get(p.id, p.domain),
                        "endpoint": s.endpoint,
                        "latency_s": s.latency_s,
                        "problem": {k: v for k, v in p.metadata.items() if isinstance(v, (str, int, float, bool))},
                    },
                )
            )
        out.sync()
    os.replace(tmp, path)
    return path


def write_report(path: Path, data: dict[str, Any]) -> Path:
    return write_json(path, data)


def sft_max_length(recipe: Recipe) -> int | None:
    """The SFT max length the traces will meet: the recipe's, else TRL's own default (None without TRL)."""
    value = recipe.sft.get("max_length")
    if value is not None:
        return int(value)
    from tracesynth.stages.train.args import trl_default

    default = trl_default("max_length")
    return int(default) if isinstance(default, int) else None


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 6) if b else None


def _describe(xs: list[int]) -> dict[str, Any]:
    if not xs:
        return {"count": 0}
    return {
        "count": len(xs),
        "min": min(xs),
        "mean": round(statistics.fmean(xs), 1),
        "median": statistics.median(xs),
        "max": max(xs),
    }


__all__ = ["build_report", "sft_max_length", "write_report", "write_traces"]
