"""`tracesynth run`: chain every stage (harvest → verify → curate → export → sft → eval → report).

Each stage is resumable on its own, so ``run`` simply calls them in order; what a stage already
finished is skipped by the stage itself. (The harvest starts the simulated teacher itself when the
recipe enables it: one place, one simulator.)

Variants (``variants: {name: {dotted.key: value}}``) share the harvest and the verdicts of the run
and each get their own curate → export → sft → eval in ``<run>/variants/<name>/`` — the demo
trains its three students that way. The stage inputs are linked (not copied) into the variant
folder. This module orchestrates; it owns no stage logic.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracesynth.config import Recipe, apply_overrides
from tracesynth.rundir.jsonio import write_json
from tracesynth.rundir.layout import SHARED_WITH_VARIANTS, RunLayout
from tracesynth.rundir.store import RunStore

STAGES = ("harvest", "verify", "curate", "export", "sft", "eval", "report")
_NEEDS_TRAINING_LIBRARIES = ("export", "sft", "eval")


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
    data["run_dir"] = str(RunLayout(recipe.run_dir).variant(name).root)
    data["name"] = f"{recipe.name}/{name}"
    data["variants"] = {}
    return Recipe.model_validate(data)


def link_inputs(parent: Path, child: Path) -> None:
    """Make the parent's harvest and verdict files visible in the variant folder (relative symlinks)."""
    child.mkdir(parents=True, exist_ok=True)
    for name in SHARED_WITH_VARIANTS:
        src, dst = parent / name, child / name
        if src.exists() and not dst.exists():
            os.symlink(os.path.relpath(src, child), dst)


def _timed(result: RunResult, run_dir: Path, stage: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    out = fn()
    result.wall_s[stage] = result.wall_s.get(stage, 0.0) + time.perf_counter() - t0
    with RunStore(run_dir, lock=False) as rs:
        rs.mark_stage(stage, wall_s=round(result.wall_s[stage], 3))
    return out


def _quiet_libraries(stages: tuple[str, ...]) -> None:
    """No progress bars from datasets / transformers in --quiet runs (logs stay line-oriented).

    Only when a stage that uses them runs: a harvest-only install has neither.
    """
    if not any(s in stages for s in _NEEDS_TRAINING_LIBRARIES):
        return
    try:
        import datasets
        import transformers
    except ImportError:
        return
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def run(recipe: Recipe, *, quiet: bool = False, stages: tuple[str, ...] = STAGES, force: bool = False) -> RunResult:
    """Run the recipe end to end (resuming what is done) and write the report."""
    from tracesynth.stages.curate import curate
    from tracesynth.stages.evaluate import evaluate
    from tracesynth.stages.export import export
    from tracesynth.stages.harvest import harvest
    from tracesynth.stages.report import build_report
    from tracesynth.stages.train import sft
    from tracesynth.stages.verify import verify

    if quiet:
        _quiet_libraries(stages)
    run_dir = Path(recipe.run_dir)
    with RunStore(run_dir, lock=False, force=force) as rs:  # refuses a folder that is not a run folder first
        write_json(rs.layout.recipe_json, recipe.model_dump(mode="json"))
        rs.update_manifest(name=recipe.name, recipe_hash=recipe.hash())
    result = RunResult(run_dir)
    if "harvest" in stages:
        _timed(result, run_dir, "harvest", lambda: harvest(recipe, quiet=quiet, force=force))
    if "verify" in stages:
        _timed(result, run_dir, "verify", lambda: verify(recipe))
    targets = [variant_recipe(recipe, n) for n in recipe.variants] or [recipe]
    for i, sub in enumerate(targets):
        sub_dir = Path(sub.run_dir)
        if sub_dir != run_dir:
            link_inputs(run_dir, sub_dir)
            write_json(RunLayout(sub_dir).recipe_json, sub.model_dump(mode="json"))
        steps: tuple[tuple[str, Callable[[Recipe], Any]], ...] = (("curate", curate), ("export", export), ("sft", sft))
        for stage, fn in steps:
            if stage in stages:
                _timed(result, run_dir, stage, functools.partial(fn, sub))
        if "eval" in stages:
            # the untrained baseline is the same for every variant (same size, same seed): evaluate it once
            baseline = sub.eval.baseline and i == 0
            _timed(result, run_dir, "eval", functools.partial(evaluate, sub, baseline=baseline))
    if "report" in stages:
        result.report = _timed(result, run_dir, "report", lambda: build_report(run_dir, plots=recipe.report.plots))
    return result
