"""`tracesynth run`: chain every stage (harvest → verify → curate → export → sft → eval → report).

Each stage is resumable on its own, so ``run`` simply calls them in order; what a stage already
finished is skipped by the stage itself. With ``teacher.sim.enabled`` the simulated teacher is
started on 127.0.0.1 for the harvest and stopped after, and the recipe's ``base_urls`` point at it.

Variants (``variants: {name: {dotted.key: value}}``) share the harvest and the verdicts of the run
and each get their own curate → export → sft → eval in ``<run>/variants/<name>/`` — the demo
trains its three students that way. The stage inputs are linked (not copied) into the variant
folder. This module orchestrates; it owns no stage logic.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracesynth.config import Recipe, apply_overrides
from tracesynth.rundir.store import RunStore

log = logging.getLogger(__name__)

# what a variant reads from the run it belongs to
SHARED_INPUTS = ("problems.jsonl", "samples.jsonl", "failures.jsonl", "verdicts.jsonl", "harvest.json", "verify.json")
STAGES = ("harvest", "verify", "curate", "export", "sft", "eval", "report")


@dataclass
class RunResult:
    run_dir: Path
    wall_s: dict[str, float] = field(default_factory=dict)
    report: Path | None = None


def variant_recipe(recipe: Recipe, name: str) -> Recipe:
    """The recipe of one variant: the run's recipe with the variant's overrides, in its own folder."""
    data = recipe.model_dump(mode="json")
    sets = [f"{k}={json.dumps(v)}" for k, v in recipe.variants[name].items()]
    apply_overrides(data, sets)
    data["run_dir"] = str(Path(recipe.run_dir) / "variants" / name)
    data["name"] = f"{recipe.name}/{name}"
    data["variants"] = {}
    return Recipe.model_validate(data)


def link_inputs(parent: Path, child: Path) -> None:
    """Make the parent's harvest and verdict files visible in the variant folder (relative symlinks)."""
    child.mkdir(parents=True, exist_ok=True)
    for name in SHARED_INPUTS:
        src, dst = parent / name, child / name
        if src.exists() and not dst.exists():
            os.symlink(os.path.relpath(src, child), dst)


@contextlib.contextmanager
def teacher_endpoint(recipe: Recipe) -> Iterator[Recipe]:
    """Yield the recipe to harvest with: as is, or pointed at a freshly started simulated teacher."""
    if not recipe.teacher.sim.enabled:
        yield recipe
        return
    from tracesynth.sim import SimTeacher

    with SimTeacher(**recipe.teacher.sim.options) as sim:
        data = recipe.model_dump(mode="json")
        data["teacher"]["base_urls"] = [sim.base_url]
        log.info("simulated teacher at %s", sim.base_url)
        yield Recipe.model_validate(data)


def _timed(result: RunResult, run_dir: Path, stage: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    result.wall_s[stage] = result.wall_s.get(stage, 0.0) + wall
    with RunStore(run_dir, lock=False) as rs:
        rs.mark_stage(stage, wall_s=round(result.wall_s[stage], 3), ended_at=time.time())
    return out


def _quiet_libraries() -> None:
    """No progress bars from datasets / transformers in --quiet runs (logs stay line-oriented)."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def run(recipe: Recipe, *, quiet: bool = False, stages: tuple[str, ...] = STAGES) -> RunResult:
    """Run the recipe end to end (resuming what is done) and write the report."""
    from tracesynth.stages.curate import curate
    from tracesynth.stages.evaluate.stage import evaluate
    from tracesynth.stages.export.dataset import export
    from tracesynth.stages.harvest.online import harvest
    from tracesynth.stages.report.report import build_report
    from tracesynth.stages.train.sft import sft
    from tracesynth.stages.verify import verify

    if quiet:
        _quiet_libraries()
    run_dir = Path(recipe.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.json").write_text(json.dumps(recipe.model_dump(mode="json"), indent=2))
    with RunStore(run_dir, lock=False) as rs:
        rs.update_manifest(name=recipe.name, recipe_hash=recipe.hash())
    result = RunResult(run_dir)
    if "harvest" in stages:
        with teacher_endpoint(recipe) as live:
            _timed(result, run_dir, "harvest", lambda: harvest(live, quiet=quiet))
    if "verify" in stages:
        _timed(result, run_dir, "verify", lambda: verify(recipe))
    targets = [variant_recipe(recipe, n) for n in recipe.variants] or [recipe]
    for i, sub in enumerate(targets):
        sub_dir = Path(sub.run_dir)
        if sub_dir != run_dir:
            link_inputs(run_dir, sub_dir)
            (sub_dir / "recipe.json").write_text(json.dumps(sub.model_dump(mode="json"), indent=2))
        for stage, fn in (("curate", curate), ("export", export), ("sft", sft)):
            if stage in stages:
                _timed(result, run_dir, stage, lambda fn=fn, sub=sub: fn(sub))
        if "eval" in stages:
            # the untrained baseline is the same for every variant (same size, same seed): evaluate it once
            baseline = sub.eval.baseline and i == 0
            _timed(result, run_dir, "eval", lambda sub=sub, baseline=baseline: evaluate(sub, baseline=baseline))
    if "report" in stages:
        result.report = _timed(result, run_dir, "report", lambda: build_report(run_dir, plots=recipe.report.plots))
    return result
