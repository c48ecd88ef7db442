"""What to evaluate: the models of an eval (the student, its untrained or base baseline), how each is reached
(a local checkpoint, an OpenAI-compatible endpoint, or a vLLM server started for it), and the template
they were trained with.

* :func:`targets` — ``after`` (the trained student, ``--model``, or ``eval.model``) and, with
  ``eval.baseline``, ``before`` (the untrained tiny student of the same config, or the base model);
* :func:`training_template` — the system prompt and thinking delimiters the student was trained with
  (its ``template.json``), with a warning for every recipe value that differs;
* :func:`check_eval` — what an eval needs before it starts (a source; a URL and a model for the
  endpoint backend).

This module decides; it loads no weights until a target's ``loader`` is called.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracesynth._ids import stable_hash
from tracesynth.config import Recipe
from tracesynth.errors import ConfigError, UserError
from tracesynth.rundir.layout import TRAIN_JSON, RunLayout
from tracesynth.thinking import THINK


@dataclass
class Target:
    """A model to evaluate: how to reach it and how to describe it in the protocol."""

    label: str
    backend: str  # local | endpoint | vllm
    name: str  # a checkpoint folder, a Hub name, or the model name an endpoint serves
    fingerprint: str
    loader: Callable[[], Any] | None = None  # local: () -> (model, tokenizer)
    checkpoint: str | None = None  # vllm: the folder the server loads


def check_eval(recipe: Recipe) -> list[str]:
    """Raise ConfigError for an eval section that cannot run; return warnings."""
    cfg = recipe.eval
    warnings: list[str] = []
    if cfg.source is None:
        warnings.append("eval.source is not set: `tracesynth eval` (and the eval step of `run`) will refuse to run")
    if cfg.backend == "endpoint":
        missing = [f for f, v in (("eval.base_url", cfg.base_url), ("eval.model", cfg.model)) if not v]
        if "eval.base_url" in missing:
            raise ConfigError("eval.base_url: required for eval.backend endpoint (the server that serves the student)")
        if missing:
            warnings.append("eval.model is not set: pass --model to `tracesynth eval`")
    if cfg.backend == "vllm":
        from tracesynth.engine.vllm import check_vllm

        warnings += check_vllm(cfg)
    if cfg.n > 1 and cfg.temperature == 0:
        warnings.append(f"eval.n={cfg.n} with temperature 0: every sample of a problem is the same greedy answer")
    return warnings


def model_fingerprint(path: Path) -> str:
    train = path / TRAIN_JSON
    if train.exists():
        try:
            return "trained:" + json.loads(train.read_text()).get("fingerprint", "")
        except ValueError:
            pass
    parts = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(path.glob("*.safetensors"))]
    config = (path / "config.json").read_text() if (path / "config.json").exists() else ""
    return "files:" + stable_hash(parts, config)


def targets(recipe: Recipe, model: str | None, label: str | None, baseline: bool) -> list[Target]:
    """The models to evaluate: ``after`` and, with ``baseline``, ``before`` (see the module docstring)."""
    cfg = recipe.eval
    layout = RunLayout(recipe.run_dir)
    if cfg.backend == "endpoint":
        name = model or cfg.model
        if not cfg.base_url or not name:
            raise ConfigError("eval.base_url and eval.model (or --model) are required for the endpoint backend")
        out = [Target(label or "after", "endpoint", name, f"endpoint:{cfg.base_url}:{name}")]
        if baseline and recipe.student.model:
            out.append(Target("before", "endpoint", recipe.student.model, f"endpoint:{cfg.base_url}:base"))
        return out
    from tracesynth.stages.train.student import load_student, untrained_like

    name = model or cfg.model or str(layout.student)
    path = Path(name)
    is_dir = path.is_dir()
    if not is_dir and (model is None and cfg.model is None):
        raise UserError(f"{path}: no trained student here; run `tracesynth sft RECIPE` first or pass --model")
    fp = model_fingerprint(path) if is_dir else f"hub:{name}@{cfg.revision or 'main'}"
    revision = None if is_dir else cfg.revision
    if cfg.backend == "vllm":
        out = [Target(label or "after", "vllm", _served_name(label or "after"), fp, checkpoint=name)]
        if baseline and recipe.student.model:
            base = recipe.student.model
            base_fp = model_fingerprint(Path(base)) if Path(base).is_dir() else f"hub:{base}"
            out.append(Target("before", "vllm", _served_name("before"), base_fp, checkpoint=base))
        elif baseline and is_dir:
            folder = layout.root / "untrained"  # vLLM serves folders: the untrained twin is saved once
            out.append(
                Target(
                    "before",
                    "vllm",
                    _served_name("before"),
                    f"untrained:{fp}:{cfg.seed}",
                    checkpoint=str(folder),
                    loader=lambda: _save_untrained(name, folder, cfg.seed),
                )
            )
        return out
    out = [Target(label or "after", "local", name, fp, lambda: load_student(name, dtype=cfg.dtype, revision=revision))]
    if baseline:
        if recipe.student.model:
            base = recipe.student.model
            base_dir = Path(base).is_dir()
            base_fp = model_fingerprint(Path(base)) if base_dir else f"hub:{base}"
            out.append(Target("before", "local", base, base_fp, lambda: load_student(base, dtype=cfg.dtype)))
        elif is_dir:
            out.append(
                Target(
                    "before",
                    "local",
                    f"untrained({name})",
                    f"untrained:{fp}:{cfg.seed}",
                    lambda: untrained_like(name, seed=cfg.seed),
                )
            )
    return out


def _served_name(label: str) -> str:
    return f"student-{label}"


def _save_untrained(student: str, folder: Path, seed: int) -> None:
    from tracesynth.stages.train.student import untrained_like

    if (folder / "config.json").exists():
        return
    model, tokenizer = untrained_like(student, seed=seed)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))


def training_template(recipe: Recipe, target: Target) -> tuple[dict[str, Any], list[str]]:
    """The training template (student's, else dataset's) and warnings for recipe values that differ."""
    from tracesynth.sources.prompts import template_hash
    from tracesynth.stages.train.student import read_template

    run_dir = Path(recipe.run_dir)
    saved: dict[str, Any] = {}
    for d in (Path(target.checkpoint or target.name), run_dir / "student", run_dir / "dataset"):
        if d.is_dir():
            saved = read_template(d)
            if saved:
                break
    warnings = []
    delims = saved.get("thinking_delimiters") or [
        saved.get("think_start") or THINK.start,
        saved.get("think_end") or THINK.end,
    ]
    system = saved.get("system_prompt")
    cfg = recipe.eval
    if cfg.system_prompt is not None and saved and cfg.system_prompt != system:
        warnings.append(
            f"system prompt mismatch: the student was trained with {system!r}, eval uses {cfg.system_prompt!r}"
        )
    if cfg.thinking_delimiters is not None and saved and list(cfg.thinking_delimiters) != list(delims):
        warnings.append(f"thinking delimiters mismatch: trained with {delims}, eval uses {cfg.thinking_delimiters}")
    ours = template_hash(recipe.prompt)
    theirs = saved.get("template_hash")
    if theirs and theirs != ours:
        warnings.append(
            f"prompt template mismatch: the student was trained with {saved.get('prompt_template', '?')} "
            f"(hash {theirs}), eval renders {recipe.prompt.template} (hash {ours})"
        )
    return {
        "system_prompt": cfg.system_prompt if cfg.system_prompt is not None else system,
        "thinking_delimiters": list(cfg.thinking_delimiters or delims),
        "prompt_template": recipe.prompt.template,
        "template_hash": ours,
        "trained_template": saved or None,
    }, warnings


__all__ = ["Target", "check_eval", "model_fingerprint", "targets", "training_template"]
