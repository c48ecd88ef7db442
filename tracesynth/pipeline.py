"""`tracesynth run`: chain every stage (harvest → verify → [classify, rewrite] → curate → export → sft → eval → report).

classify and rewrite are model passes a recipe turns on (``classify.enabled``, ``rewrite.enabled``); they
run once for the run folder, like harvest and verify, and variants share their rows.

Each stage is resumable on its own, so ``run`` simply calls them in order; what a stage already
finished is skipped by the stage itself. (The harvest starts the simulated teacher itself when the
recipe enables it: one place, one simulator.)

Variants (``variants: {name: {dotted.key: value}}``) share the harvest and the verdicts of the run
and each get their own curate → export → sft → eval in ``<run>/variants/<name>/``, in the recipe's
order — the demo trains its students × seeds × compute settings that way. The stage inputs are
linked (not copied) into the variant folder. Two keys of a variant are read here, not applied to
its recipe (``run`` is no recipe section):

* ``run.evals: {label: {dotted.key: value}}`` — more evaluations of the same student after the
  recipe's own, each with these eval overrides, written under ``models.<label>`` of its eval.json
  (the demo's ``greedy``: temperature 0, one sample);
* ``run.flops_of: <variant>`` — train this variant for as many optimizer steps as it takes to spend
  the training compute of that (earlier) variant: 6 × parameters × training tokens, from both
  students' ``train.json``. This variant's tokens per step are measured on its *twin*, the variant
  with the same overrides but neither ``sft.max_steps`` nor ``run.*`` (trained earlier, on the same
  dataset); the resolved ``sft.max_steps`` is in the variant's recipe.json.

Variant names ending in ``-s<number>`` are seeds of one student (the report groups them).
This module orchestrates; it owns no stage logic.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracesynth.config import Recipe, apply_overrides
from tracesynth.errors import ConfigError, UserError
from tracesynth.rundir.jsonio import write_json
from tracesynth.rundir.layout import SHARED_WITH_VARIANTS, RunLayout
from tracesynth.rundir.store import RunStore

# classify and rewrite (model passes, tracesynth.stages.ask) run only where the recipe enables them: after verify
# (rewrite is for the traces that passed it), before curate (which reads the labels; export reads the rewrites)
STAGES = ("harvest", "verify", "classify", "rewrite", "curate", "export", "sft", "eval", "report")
PASSES = ("classify", "rewrite")
_NEEDS_TRAINING_LIBRARIES = ("export", "sft", "eval")


@dataclass
class RunResult:
    run_dir: Path
    wall_s: dict[str, float] = field(default_factory=dict)
    report: Path | None = None


RUN_KEYS = ("run.evals", "run.flops_of")


def recipe_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """A variant's overrides without the keys this module reads itself (``run.*``)."""
    return {k: v for k, v in overrides.items() if not k.startswith("run.")}


def _with(recipe: Recipe, overrides: dict[str, Any]) -> Recipe:
    data = recipe.model_dump(mode="json")
    apply_overrides(data, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
    return Recipe.model_validate(data)


def variant_recipe(recipe: Recipe, name: str) -> Recipe:
    """The recipe of one variant: the run's recipe with the variant's overrides, in its own folder."""
    overrides = recipe.variants[name]
    unknown = [k for k in overrides if k.startswith("run.") and k not in RUN_KEYS]
    if unknown:
        raise ConfigError(f"variants.{name}.{unknown[0]}: unknown key (known: {', '.join(RUN_KEYS)})")
    data = recipe.model_dump(mode="json")
    apply_overrides(data, [f"{k}={json.dumps(v)}" for k, v in recipe_overrides(overrides).items()])
    data["run_dir"] = str(RunLayout(recipe.run_dir).variant(name).root)
    data["name"] = f"{recipe.name}/{name}"
    data["variants"] = {}
    return Recipe.model_validate(data)


def extra_evals(recipe: Recipe, name: str) -> dict[str, dict[str, Any]]:
    """``run.evals`` of a variant: label -> eval overrides."""
    evals = recipe.variants[name].get("run.evals") or {}
    if not isinstance(evals, dict) or not all(isinstance(v, dict) for v in evals.values()):
        raise ConfigError(f"variants.{name}.run.evals: a mapping of label -> {{dotted.key: value}}")
    for label in evals:
        if label in ("after", "before"):
            raise ConfigError(f"variants.{name}.run.evals.{label}: 'after' and 'before' are the recipe's own evals")
    return evals


def _train_json(recipe: Recipe, name: str) -> dict[str, Any] | None:
    path = RunLayout(recipe.run_dir).variant(name).root / "student" / "train.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def twin_of(recipe: Recipe, name: str) -> str | None:
    """The variant trained on the same data as ``name`` by the recipe's own step count (see module docstring)."""
    own = {k: v for k, v in recipe_overrides(recipe.variants[name]).items() if k != "sft.max_steps"}
    for other, overrides in recipe.variants.items():
        if other != name and "run.flops_of" not in overrides and "sft.max_steps" not in overrides:
            if recipe_overrides(overrides) == own:
                return other
    return None


def matched_steps(recipe: Recipe, name: str) -> int | None:
    """``sft.max_steps`` that spends the compute of ``run.flops_of`` (None when the variant has no such key).

    Raises UserError when the reference or the twin has not been trained yet.
    """
    ref = recipe.variants[name].get("run.flops_of")
    if ref is None:
        return None
    if ref not in recipe.variants:
        raise ConfigError(f"variants.{name}.run.flops_of: no variant named {ref!r}")
    twin = twin_of(recipe, name)
    if twin is None:
        raise ConfigError(
            f"variants.{name}.run.flops_of: needs a twin, a variant with the same overrides but neither "
            "sft.max_steps nor run.* (its tokens per step are measured there)"
        )
    done = {v: _train_json(recipe, v) for v in (ref, twin)}
    missing = [v for v, t in done.items() if not t or not t.get("steps") or not t.get("tokens_seen")]
    if missing:
        raise UserError(f"variants.{name}: run.flops_of needs {missing[0]!r} trained first (list it earlier)")
    r, t = done[ref], done[twin]
    assert r is not None and t is not None
    flops = 6 * r["params"] * r["tokens_seen"]
    per_step = 6 * t["params"] * t["tokens_seen"] / t["steps"]
    return max(1, math.ceil(flops / per_step))


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


@dataclass
class _Job:
    """One variant's curate → export → sft → eval (+ its extra evals), as plain data a worker process can take."""

    recipe: dict[str, Any]
    stages: tuple[str, ...]
    quiet: bool
    baseline: bool
    evals: list[tuple[str, dict[str, Any]]]


def _run_job(job: _Job) -> dict[str, float]:
    """Run one variant's stages (in this process or a worker); wall seconds per stage."""
    from tracesynth.stages.curate import curate
    from tracesynth.stages.evaluate import evaluate
    from tracesynth.stages.export import export
    from tracesynth.stages.train import sft

    if job.quiet:
        _quiet_libraries(job.stages)
    sub = Recipe.model_validate(job.recipe)
    walls: dict[str, float] = {}

    def timed(stage: str, fn: Callable[[], Any]) -> None:
        t0 = time.perf_counter()
        fn()
        walls[stage] = walls.get(stage, 0.0) + time.perf_counter() - t0

    for stage, fn in (("curate", curate), ("export", export), ("sft", sft)):
        if stage in job.stages:
            timed(stage, functools.partial(fn, sub))
    if "eval" in job.stages:
        timed("eval", functools.partial(evaluate, sub, baseline=job.baseline))
        for label, overrides in job.evals:
            timed("eval", functools.partial(evaluate, _with(sub, overrides), label=label, baseline=False))
    return walls


def variant_workers(recipe: Recipe) -> int:
    """How many variants run at once: one per core (at most 2) for tiny students on a CPU-only machine.

    A tiny student's matmuls are too small to keep two threads busy (one thread reaches ~2/3 of
    two), so two variants side by side with one thread each finish sooner than one after the other
    with two. ``TRACESYNTH_VARIANT_WORKERS=N`` overrides it (1: one after the other).
    """
    env = os.environ.get("TRACESYNTH_VARIANT_WORKERS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ConfigError(f"TRACESYNTH_VARIANT_WORKERS={env!r}: not a number") from None
    if len(recipe.variants) < 4 or recipe.student.model is not None or recipe.compute.gpus:
        return 1
    try:
        import torch
    except ImportError:
        return 1
    if torch.cuda.is_available():
        return 1
    return max(1, min(2, os.cpu_count() or 1))


def _resolved_steps(recipe: Recipe, name: str, stages: tuple[str, ...]) -> int | None:
    """The matched step count of ``run.flops_of``; without sft in this run, the one recorded before."""
    if "run.flops_of" not in recipe.variants[name]:
        return None
    try:
        return matched_steps(recipe, name)
    except UserError:
        if "sft" in stages:
            raise
    old = RunLayout(RunLayout(recipe.run_dir).variant(name).root).recipe_json
    try:
        steps = json.loads(old.read_text()).get("sft", {}).get("max_steps")
    except (FileNotFoundError, ValueError):
        return None
    return int(steps) if steps is not None else None


def _prepare(recipe: Recipe, name: str | None, i: int, stages: tuple[str, ...], quiet: bool) -> _Job:
    """Link the variant's inputs, resolve its step count, write its recipe.json; the job that runs it."""
    sub = recipe if name is None else variant_recipe(recipe, name)
    if name is not None:
        link_inputs(Path(recipe.run_dir), Path(sub.run_dir))
        steps = _resolved_steps(recipe, name, stages)
        if steps is not None:
            sub = _with(sub, {"sft.max_steps": steps})
        write_json(RunLayout(sub.run_dir).recipe_json, sub.model_dump(mode="json"))
    # the untrained baseline is the same for every variant (same size, same seed): evaluate it once
    evals = list((extra_evals(recipe, name) if name else {}).items())
    return _Job(sub.model_dump(mode="json"), stages, quiet, sub.eval.baseline and i == 0, evals)


def _depends_on(recipe: Recipe, name: str) -> set[str]:
    ref = recipe.variants[name].get("run.flops_of")
    if ref is None:
        return set()
    twin = twin_of(recipe, name)
    return {ref} | ({twin} if twin else set())


def _run_variants(recipe: Recipe, result: RunResult, stages: tuple[str, ...], quiet: bool) -> None:
    """Every variant (or the run itself), one after the other or in worker processes (see variant_workers)."""
    run_dir = Path(recipe.run_dir)
    names: list[str | None] = list(recipe.variants) or [None]

    def record(walls: dict[str, float]) -> None:
        for stage, wall in walls.items():
            result.wall_s[stage] = result.wall_s.get(stage, 0.0) + wall
            with RunStore(run_dir, lock=False) as rs:
                rs.mark_stage(stage, wall_s=round(result.wall_s[stage], 3))

    per_variant = any(s in stages for s in ("curate", "export", "sft", "eval"))  # else torch stays unimported
    workers = variant_workers(recipe) if per_variant and len(names) > 1 else 1
    if workers == 1:
        for i, name in enumerate(names):
            record(_run_job(_prepare(recipe, name, i, stages, quiet)))
        return
    import concurrent.futures as cf
    import multiprocessing

    variants = [n for n in names if n is not None]
    pending = list(enumerate(variants))
    done: set[str] = set()
    running: dict[cf.Future[dict[str, float]], str] = {}
    threads = recipe.compute.cpu_threads or max(1, (os.cpu_count() or 1) // workers)
    pinned = _with(recipe, {"compute.cpu_threads": threads})
    with cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        while pending or running:
            for item in [x for x in pending if _depends_on(recipe, x[1]) <= done]:
                if len(running) >= workers:
                    break
                pending.remove(item)
                i, name = item
                job = _prepare(pinned, name, i, stages, quiet)
                running[pool.submit(_run_job, job)] = name
            if not running:
                missing = sorted(_depends_on(recipe, pending[0][1]) - done)
                raise ConfigError(f"variants.{pending[0][1]}: depends on {missing} that no variant before it trains")
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                name = running.pop(fut)
                record(fut.result())
                done.add(name)
    with RunStore(run_dir, lock=False) as rs:
        rs.update_manifest(variant_workers=workers, variant_threads=threads)


def _model_pass(recipe: Recipe, name: str) -> Any:
    """classify / rewrite; a pass stopped by its budget leaves the rest unlabelled / original and the run goes on."""
    if name == "classify":
        from tracesynth.stages.classify import classify as fn
    else:
        from tracesynth.stages.rewrite import rewrite as fn
    res = fn(recipe)
    print(res.summary(), file=sys.stderr)
    return res


def run(recipe: Recipe, *, quiet: bool = False, stages: tuple[str, ...] = STAGES, force: bool = False) -> RunResult:
    """Run the recipe end to end (resuming what is done) and write the report."""
    from tracesynth.stages.harvest import harvest
    from tracesynth.stages.report import build_report
    from tracesynth.stages.verify import verify

    t0 = time.perf_counter()
    if quiet:
        _quiet_libraries(stages)
    run_dir = Path(recipe.run_dir)
    with RunStore(run_dir, lock=False, force=force) as rs:  # refuses a folder that is not a run folder first
        write_json(rs.layout.recipe_json, recipe.model_dump(mode="json"))
        rs.update_manifest(name=recipe.name, recipe_hash=recipe.hash())
    result = RunResult(run_dir)
    weak = bool(recipe.curate.select.weak_models)  # s1's difficulty filter: the weak models' own harvests
    if "harvest" in stages:
        _timed(result, run_dir, "harvest", lambda: harvest(recipe, quiet=quiet, force=force))
        if weak:
            from tracesynth.stages.curate.weak import harvest_weak

            _timed(result, run_dir, "harvest", lambda: harvest_weak(recipe, quiet=quiet))
    if "verify" in stages:
        _timed(result, run_dir, "verify", lambda: verify(recipe))
        if weak:
            from tracesynth.stages.curate.weak import verify_weak

            _timed(result, run_dir, "verify", lambda: verify_weak(recipe))
    for name in PASSES:
        if name in stages and getattr(recipe, name).enabled:
            _timed(result, run_dir, name, functools.partial(_model_pass, recipe, name))
    _run_variants(recipe, result, stages, quiet)
    with RunStore(run_dir, lock=False) as rs:  # elapsed, not summed: variants may have run side by side
        rs.update_manifest(run_wall_s=round(time.perf_counter() - t0, 3), stages_run=list(stages))
    if "report" in stages:
        result.report = _timed(result, run_dir, "report", lambda: build_report(run_dir, plots=recipe.report.plots))
    return result
