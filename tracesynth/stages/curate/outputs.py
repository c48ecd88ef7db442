"""What the curate stage writes: traces.jsonl (one Trace per kept sample) and the curate.json report.

The report holds the recipe hash, the counts in and out of every step with reasons, the
decontamination removals (before harvesting, from harvest.json, and at curation), dedup pairs,
pass rates, token lengths with the share over the SFT max length, and the output mix. Both
files are written to a temporary name and renamed, so a failure never leaves half a file. This
module decides nothing about which samples to keep (stage.py does).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tracesynth.config import Recipe
from tracesynth.decontam.index import decontam_summary
from tracesynth.records import Sample, Trace
from tracesynth.rundir.store import JsonlFile
from tracesynth.sources.prompts import render_messages

TRL_DEFAULT_MAX_LENGTH = 1024  # trl.SFTConfig.max_length when the recipe's sft block sets none


def build_report(recipe, funnel, infos, domains, hits, dedup_pairs, counter, passes, totals, run_dir: Path,
            local: bool, n_problems: int, started: float) -> dict[str, Any]:
    cfg = recipe.curate
    max_len = int(recipe.sft.get("max_length") or TRL_DEFAULT_MAX_LENGTH)
    lengths = [i.tokens for i in infos]
    over = sum(i.prompt_tokens + i.tokens > max_len for i in infos)
    pre = None
    harvest_json = run_dir / "harvest.json"
    if harvest_json.exists():
        try:
            pre = json.loads(harvest_json.read_text()).get("decontam")
        except ValueError:
            pre = {"error": f"{harvest_json}: invalid JSON"}
    read = funnel.steps[0]
    return {
        "recipe_hash": recipe.hash(),
        "finished_at": time.time(),
        "wall_time_s": round(time.time() - started, 3),
        "inputs": {"problems": n_problems, "samples": read["in"]},
        "policy": {"curate.keep": cfg.keep, "verify.keep": recipe.verify.keep,
                   "keep_rule": "tracesynth.stages.curate.filters.local_keep" if local
                   else "tracesynth.stages.verify.registry.keep"},
        "steps": funnel.steps,
        "decontam": {"pre_harvest": pre, "curate": decontam_summary(cfg.decontam, hits)},
        "dedup": {"exact": dedup_pairs["exact"], "near": dedup_pairs["near"],
                  "near_threshold": cfg.near_threshold if cfg.near_dedup else None},
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
            "domains": dict(Counter(domains[i.problem_id] for i in infos).most_common()),
        },
    }


def write_traces(store, run_dir: Path, infos, problems, verdicts, domains, passes, totals, recipe: Recipe) -> Path:
    final = {i.id: i for i in infos}
    tmp = run_dir / "traces.jsonl.tmp"
    tmp.unlink(missing_ok=True)
    tmp.touch()  # zero kept traces is a valid (empty) result
    with JsonlFile(tmp, Trace, key="sample_id") as out:
        for s in store.file("samples", Sample).iter():
            info = final.get(s.id)
            if info is None:
                continue
            p = problems[s.problem_id]
            out.append(Trace(
                sample_id=s.id, problem_id=p.id, prompt=p.prompt, messages=render_messages(p, recipe.prompt),
                answer=p.answer, reasoning=s.reasoning, content=s.content, source=p.source, domain=p.domain,
                teacher=s.model, finish_reason=s.finish_reason, verdicts=verdicts.get(s.id, []), usage=s.usage,
                cost_usd=s.cost_usd,
                metadata={
                    "index": s.index, "tokens": info.tokens, "prompt_tokens": info.prompt_tokens,
                    "passes": passes[p.id], "samples": totals[p.id], "pass_rate": _ratio(passes[p.id], totals[p.id]),
                    "select_domain": domains.get(p.id, p.domain), "endpoint": s.endpoint, "latency_s": s.latency_s,
                    "problem": {k: v for k, v in p.metadata.items() if isinstance(v, (str, int, float, bool))},
                },
            ))
        out.sync()
    path = run_dir / "traces.jsonl"
    os.replace(tmp, path)
    return path


def write_json(path: Path, data: dict[str, Any]) -> Path:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    os.replace(tmp, path)
    return path


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 6) if b else None


def _describe(xs: list[int]) -> dict[str, Any]:
    if not xs:
        return {"count": 0}
    return {"count": len(xs), "min": min(xs), "mean": round(statistics.fmean(xs), 1),
            "median": statistics.median(xs), "max": max(xs)}


__all__ = ["TRL_DEFAULT_MAX_LENGTH", "build_report", "write_json", "write_traces"]
