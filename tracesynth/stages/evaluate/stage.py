"""`tracesynth eval`: score the student on held-out problems under a pinned protocol, before and after.

* Problems come from ``eval.source``; any problem the teacher was asked for this run (same id or
  the same normalised prompt as a row of problems.jsonl / traces.jsonl) is dropped and counted,
  so nothing trained on is scored.
* The student answers locally (batched ``generate``, left padding, greedy or sampled; see
  :mod:`tracesynth.budget`) or through an OpenAI-compatible endpoint that serves it (``eval.backend:
  endpoint``: chat completions; budget forcing via ``/v1/completions`` on the prompt rendered
  client-side with the student's chat template).
* Answers are scored by :func:`tracesynth.verify.score` with the recipe's verifiers; an item passes
  when every verdict is ``pass``. pass@1 is the mean over problems of c/n, with a Wilson interval
  (n = 1) or a bootstrap over problems (n > 1), unbiased pass@k for n > 1, per domain, subject and
  level; the share of generations that ended their turn before ``max_new_tokens`` (``stop_rate``).
* The same template everywhere: the system prompt and thinking delimiters default to the
  student's ``template.json`` (written by export and copied by sft); a recipe value that differs is
  used but warned about, naming both.
* ``eval.budgets`` / ``eval.wait_extensions`` add s1's accuracy-vs-thinking-budget rows.
* The untrained tiny student (same config and tokenizer, fresh weights) or the base model of a
  pretrained student is evaluated the same way: eval.json has ``before`` and ``after``.

Writes ``eval.json`` (protocol, blocks, warnings) and ``eval_items.jsonl`` (every output and its
verdicts, keyed by item id — an interrupted eval resumes). This module does not train or plot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracesynth._ids import stable_hash
from tracesynth.config import Recipe
from tracesynth.errors import ConfigError, UserError
from tracesynth.records import Problem, Sample, Usage
from tracesynth.rundir.store import RunStore, package_versions
from tracesynth.stages.evaluate.generation import THINK_END, THINK_START, BudgetSpec, Generation
from tracesynth.stages.evaluate.stats import accuracy_summary

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """Where eval.json is and the blocks this call computed (label -> metrics)."""

    path: str
    blocks: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    excluded: int = 0

    def summary(self) -> str:
        lines = []
        for label, b in self.blocks.items():
            lo, hi = b["ci"]
            lines.append(f"eval {label}: pass@1 {100 * b['pass@1']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] "
                         f"on {b['n_problems']} problems, stopped {100 * b['stop_rate']:.0f}% ({b['model']})")
            for row in b.get("budgets", []):
                lines.append(f"  {row['mode']} {row.get('thinking_budget') or row.get('waits')}: "
                             f"pass@1 {100 * row['pass@1']:.1f}%, {row['mean_thinking_tokens']:.0f} thinking tokens")
        return "\n".join(lines)


@dataclass
class _Target:
    """A model to evaluate: how to reach it and how to describe it in the protocol."""

    label: str
    backend: str
    name: str
    fingerprint: str
    loader: Any = None  # local: () -> (model, tokenizer)


_WS = re.compile(r"\s+")


def _norm(text: str | None) -> str:
    return _WS.sub(" ", (text or "").strip().lower())


def load_eval_problems(recipe: Recipe) -> tuple[list[Problem], int]:
    """The held-out problems, minus any the run harvested (by id or normalised prompt); and how many were dropped."""
    from tracesynth.sources.problems import iter_problems

    if recipe.eval.source is None:
        raise ConfigError("eval.source: not set (the held-out problems to evaluate on)")
    run_dir = Path(recipe.run_dir)
    seen_ids: set[str] = set()
    seen_text: set[str] = set()
    for name in ("problems.jsonl", "traces.jsonl"):
        path = run_dir / name
        if not path.exists():
            continue
        with path.open("rb") as fh:
            for raw in fh:
                try:
                    row = json.loads(raw)
                except ValueError:
                    continue  # a torn last line; the store reports it
                seen_ids.add(row.get("problem_id") or row.get("id") or "")
                if row.get("prompt"):
                    seen_text.add(stable_hash(_norm(row["prompt"])))
    problems, excluded = [], 0
    for p in iter_problems(recipe.eval.source):
        if p.id in seen_ids or (p.prompt and stable_hash(_norm(p.prompt)) in seen_text):
            excluded += 1
            continue
        problems.append(p)
    if not problems:
        raise UserError(f"eval.source: no held-out problems ({excluded} dropped as seen in training)")
    return problems, excluded


def _model_fingerprint(path: Path) -> str:
    train = path / "train.json"
    if train.exists():
        try:
            return "trained:" + json.loads(train.read_text()).get("fingerprint", "")
        except ValueError:
            pass
    parts = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(path.glob("*.safetensors"))]
    config = (path / "config.json").read_text() if (path / "config.json").exists() else ""
    return "files:" + stable_hash(parts, config)


def _targets(recipe: Recipe, model: str | None, label: str | None, baseline: bool) -> list[_Target]:
    cfg, run_dir = recipe.eval, Path(recipe.run_dir)
    if cfg.backend == "endpoint":
        name = model or cfg.model
        if not cfg.base_url or not name:
            raise ConfigError("eval.base_url and eval.model (or --model) are required for the endpoint backend")
        out = [_Target(label or "after", "endpoint", name, f"endpoint:{cfg.base_url}:{name}")]
        if baseline and recipe.student.model:
            out.append(_Target("before", "endpoint", recipe.student.model, f"endpoint:{cfg.base_url}:base"))
        return out
    from tracesynth.stages.train.student import load_student, untrained_like

    name = model or cfg.model or str(run_dir / "student")
    path = Path(name)
    is_dir = path.is_dir()
    if not is_dir and (model is None and cfg.model is None):
        raise UserError(f"{path}: no trained student here; run `tracesynth sft RECIPE` first or pass --model")
    fp = _model_fingerprint(path) if is_dir else f"hub:{name}@{cfg.revision or 'main'}"
    revision = None if is_dir else cfg.revision
    out = [_Target(label or "after", "local", name, fp,
                   lambda: load_student(name, dtype=cfg.dtype, revision=revision))]
    if baseline:
        if recipe.student.model:
            base = recipe.student.model
            base_dir = Path(base).is_dir()
            base_fp = _model_fingerprint(Path(base)) if base_dir else f"hub:{base}"
            out.append(_Target("before", "local", base, base_fp, lambda: load_student(base, dtype=cfg.dtype)))
        elif is_dir:
            out.append(_Target("before", "local", f"untrained({name})", f"untrained:{fp}:{cfg.seed}",
                               lambda: untrained_like(name, seed=cfg.seed)))
    return out


def _template(recipe: Recipe, target: _Target) -> tuple[dict[str, Any], list[str]]:
    """The training template (student's, else dataset's) and warnings for recipe values that differ."""
    from tracesynth.sources.prompts import template_hash
    from tracesynth.stages.train.student import read_template

    run_dir = Path(recipe.run_dir)
    saved: dict[str, Any] = {}
    for d in (Path(target.name), run_dir / "student", run_dir / "dataset"):
        if d.is_dir():
            saved = read_template(d)
            if saved:
                break
    warnings = []
    delims = saved.get("thinking_delimiters") or [saved.get("think_start") or THINK_START,
                                                  saved.get("think_end") or THINK_END]
    system = saved.get("system_prompt")
    cfg = recipe.eval
    if cfg.system_prompt is not None and saved and cfg.system_prompt != system:
        warnings.append(f"system prompt mismatch: the student was trained with {system!r}, eval uses "
                        f"{cfg.system_prompt!r}")
    if cfg.thinking_delimiters is not None and saved and list(cfg.thinking_delimiters) != list(delims):
        warnings.append(f"thinking delimiters mismatch: trained with {delims}, eval uses {cfg.thinking_delimiters}")
    ours = template_hash(recipe.prompt)
    theirs = saved.get("template_hash")
    if theirs and theirs != ours:
        warnings.append(f"prompt template mismatch: the student was trained with {saved.get('prompt_template', '?')} "
                        f"(hash {theirs}), eval renders {recipe.prompt.template} (hash {ours})")
    return {
        "system_prompt": cfg.system_prompt if cfg.system_prompt is not None else system,
        "thinking_delimiters": list(cfg.thinking_delimiters or delims),
        "prompt_template": recipe.prompt.template,
        "template_hash": ours,
        "trained_template": saved or None,
    }, warnings


def _messages(problem: Problem, recipe: Recipe, system: str | None, use_template_system: bool) -> list[dict[str, Any]]:
    from tracesynth.sources.prompts import render_messages

    msgs = render_messages(problem, recipe.prompt)
    if use_template_system:
        msgs = [m for m in msgs if m.get("role") != "system"]
        if system:
            msgs.insert(0, {"role": "system", "content": system})
    return msgs


def evaluate(
    recipe: Recipe, *, model: str | None = None, label: str | None = None, baseline: bool | None = None
) -> EvalResult:
    """Evaluate the student (and its untrained/base baseline) on the held-out set; write eval.json."""
    cfg = recipe.eval
    run_dir = Path(recipe.run_dir)
    problems, excluded = load_eval_problems(recipe)
    baseline = cfg.baseline if baseline is None else baseline
    targets = _targets(recipe, model, label, baseline)
    tpl, warnings = _template(recipe, targets[0])
    for w in warnings:
        log.warning(w)
    use_saved_system = tpl["trained_template"] is not None or cfg.system_prompt is not None
    convs = [_messages(p, recipe, tpl["system_prompt"], use_saved_system) for p in problems]
    verifiers = cfg.verifiers or recipe.verify.verifiers
    from tracesynth.stages.verify.registry import VERIFIERS

    unknown = [v for v in verifiers if v not in VERIFIERS]
    if unknown:
        field = "eval.verifiers" if cfg.verifiers else "verify.verifiers"
        raise ConfigError(f"{field}: unknown verifier {unknown[0]!r} (known: {', '.join(sorted(VERIFIERS))})")
    think_start, think_end = tpl["thinking_delimiters"][:2]
    base_spec = BudgetSpec(max_new_tokens=cfg.max_new_tokens, think_start=think_start, think_end=think_end,
                           wait_text=cfg.wait_text, answer_prefix=cfg.answer_prefix,
                           temperature=cfg.temperature, top_p=cfg.top_p)
    if cfg.n > 1 and cfg.temperature == 0:
        warnings.append(f"eval.n={cfg.n} with temperature 0: every sample of a problem is the same greedy answer")
    blocks: dict[str, dict[str, Any]] = {}
    with RunStore(run_dir) as store:
        items = store.file("eval_items", None, key="id")
        store.mark_stage("eval", started_at=time.time())
        for target in targets:
            t0 = time.perf_counter()
            settings = [("plain", base_spec)]
            if target is targets[0]:
                settings += [("cap", _replace(base_spec, thinking_budget=b)) for b in cfg.budgets]
                settings += [("wait", _replace(base_spec, waits=w)) for w in cfg.wait_extensions]
            protocol = _protocol(recipe, target, tpl, verifiers, len(problems))
            runner = _Runner(recipe, target)
            try:
                rows_by_setting = {}
                for mode, spec in settings:
                    phash = stable_hash(protocol, mode, spec.describe())
                    rows_by_setting[(mode, spec)] = _run_setting(
                        runner, items, problems, convs, spec, mode, phash, target, verifiers, recipe)
            finally:
                runner.close()
            block = _block(target, protocol, rows_by_setting, problems, cfg.confidence, cfg.seed)
            block["wall_s"] = round(time.perf_counter() - t0, 3)
            blocks[target.label] = block
        _write_eval_json(run_dir, blocks, warnings, excluded, tpl)
        store.mark_stage("eval", ended_at=time.time(), problems=len(problems), excluded=excluded)
    return EvalResult(str(run_dir / "eval.json"), blocks, warnings, excluded)


def _replace(spec: BudgetSpec, **kw: Any) -> BudgetSpec:
    from dataclasses import replace

    return replace(spec, **kw)


def _protocol(recipe: Recipe, target: _Target, tpl: dict[str, Any], verifiers: list[str], n_problems: int) -> dict:
    cfg = recipe.eval
    src = cfg.source.model_dump(mode="json") if cfg.source else None
    versions = package_versions()
    return {
        "backend": target.backend,
        "model": target.name,
        "model_fingerprint": target.fingerprint,
        "revision": cfg.revision if target.backend == "local" and not Path(target.name).is_dir() else None,
        "base_url": cfg.base_url if target.backend == "endpoint" else None,
        "dtype": cfg.dtype,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "n": cfg.n,
        "max_new_tokens": cfg.max_new_tokens,
        "thinking_delimiters": tpl["thinking_delimiters"],
        "system_prompt": tpl["system_prompt"],
        "prompt_template": tpl["prompt_template"],
        "template_hash": tpl["template_hash"],
        "chat_template_hash": (tpl["trained_template"] or {}).get("chat_template_hash"),
        "seed": cfg.seed,
        "verifiers": verifiers,
        "verifier_options": recipe.verify.options,
        "verifier_versions": {k: versions[k] for k in ("tracesynth", "math-verify", "reasoning-gym") if k in versions},
        "eval_set": src,
        "n_problems": n_problems,
        "answer_prefix": cfg.answer_prefix,
        "wait_text": cfg.wait_text,
    }


class _Runner:
    """Generates for one target: a local model (loaded once) or an endpoint."""

    def __init__(self, recipe: Recipe, target: _Target):
        self.recipe, self.target = recipe, target
        self._local = None
        self._tokenizer = None

    def _load(self):
        if self._local is None:
            from tracesynth.stages.evaluate.generation import LocalGenerator

            model, tok = self.target.loader()
            self._tokenizer = tok
            self._local = LocalGenerator(model, tok, batch_size=self.recipe.eval.batch_size, seed=self.recipe.eval.seed,
                                         threads=self.recipe.compute.cpu_threads)
        return self._local

    def generate(self, convs: list[list[dict[str, Any]]], spec: BudgetSpec, indices: list[int]) -> list[Generation]:
        if self.target.backend == "local":
            gen = self._load()
            prompts = [gen.tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs]
            return gen.generate(prompts, spec)
        return asyncio.run(self._endpoint(convs, spec, indices))

    async def _endpoint(self, convs, spec: BudgetSpec, indices: list[int]) -> list[Generation]:
        from tracesynth.stages.evaluate.generation import EndpointGenerator
        from tracesynth.teacher.client import TeacherClient

        cfg = self.recipe.eval
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        async with TeacherClient([cfg.base_url], model=self.target.name, api_key=key or None,
                                 api_key_env=cfg.api_key_env, timeout_s=cfg.timeout_s,
                                 concurrency=cfg.concurrency) as client:
            gen = EndpointGenerator(client, seed=cfg.seed)
            seeds = [cfg.seed + i for i in indices]
            if not spec.forcing:
                return await gen.chat(convs, spec, seeds)
            return await gen.generate([self._render(c) for c in convs], spec, seeds)

    def _render(self, conv: list[dict[str, Any]]) -> str:
        """The chat template applied client-side: the student's tokenizer, else ChatML."""
        if self._tokenizer is None:
            for d in (Path(self.target.name), Path(self.recipe.run_dir) / "student"):
                if (d / "tokenizer_config.json").exists():
                    from transformers import AutoTokenizer

                    self._tokenizer = AutoTokenizer.from_pretrained(str(d))
                    break
            else:
                self._tokenizer = False
        if self._tokenizer:
            return self._tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in conv) + "<|im_start|>assistant\n"

    def close(self) -> None:
        self._local = None


def _run_setting(runner: _Runner, items, problems, convs, spec: BudgetSpec, mode: str, phash: str,
                 target: _Target, verifiers: list[str], recipe: Recipe) -> list[dict[str, Any]]:
    """Generate and score the items of one setting not yet in eval_items.jsonl; return all its rows."""
    from tracesynth.stages.verify.registry import score

    n = recipe.eval.n
    todo = []
    for pi, p in enumerate(problems):
        for k in range(n):
            item_id = "e-" + stable_hash(phash, p.id, k)
            if item_id not in items:
                todo.append((pi, k, item_id))
    options = recipe.verify.options
    step = max(recipe.eval.batch_size * 4, 1)
    for start in range(0, len(todo), step):
        chunk = todo[start : start + step]
        gens = runner.generate([convs[pi] for pi, _, _ in chunk], spec, [k for _, k, _ in chunk])
        for (pi, k, item_id), g in zip(chunk, gens, strict=True):
            p = problems[pi]
            reasoning, content = g.split(spec.think_start, spec.think_end)
            sample = Sample(id=item_id, problem_id=p.id, index=k, model=target.name, reasoning=reasoning,
                            content=content, finish_reason=g.finish_reason, endpoint=target.backend,
                            usage=Usage(completion_tokens=g.completion_tokens, reasoning_tokens=g.thinking_tokens))
            verdicts = [] if g.finish_reason == "error" else score(p, sample, verifiers, options)
            items.append({
                "id": item_id, "label": target.label, "protocol_hash": phash, "mode": mode,
                "thinking_budget": spec.thinking_budget, "waits_requested": spec.waits,
                "problem_id": p.id, "index": k, "domain": p.domain,
                "subject": p.metadata.get("subject"), "level": p.metadata.get("level"),
                "answer": p.answer, "reasoning": reasoning, "content": content,
                "finish_reason": g.finish_reason, "completion_tokens": g.completion_tokens,
                "thinking_tokens": g.thinking_tokens, "answer_tokens": g.answer_tokens, "waits": g.waits,
                "forced": g.forced, "error": g.meta.get("error"),
                "verdicts": [v.model_dump(mode="json") for v in verdicts],
                "passed": bool(verdicts) and all(v.status == "pass" for v in verdicts),
            })
    want = {"e-" + stable_hash(phash, p.id, k) for p in problems for k in range(n)}
    return [row for row in items.iter() if row.get("protocol_hash") == phash and row["id"] in want]




def _group(rows: list[dict[str, Any]], key: str, confidence: float, seed: int) -> dict[str, Any]:
    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for r in rows:
        value = r.get(key)
        if value is None:
            continue
        c = counts[str(value)][r["problem_id"]]
        c[0] += 1
        c[1] += int(r["passed"])
    out = {}
    for value, per in sorted(counts.items()):
        s = accuracy_summary([tuple(x) for x in per.values()], confidence, seed)
        out[value] = {"pass@1": s["pass@1"], "ci": s["ci"], "n_problems": s["problems"]}
    return out


def _metrics(rows: list[dict[str, Any]], confidence: float, seed: int) -> dict[str, Any]:
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        per[r["problem_id"]][0] += 1
        per[r["problem_id"]][1] += int(r["passed"])
    summary = accuracy_summary([tuple(v) for v in per.values()], confidence, seed)
    total = max(len(rows), 1)
    tags = Counter(v.get("tag") or v.get("status") for r in rows for v in r["verdicts"] if v.get("status") != "pass")
    return {
        **summary,
        "n_problems": summary["problems"],
        "stop_rate": sum(r["finish_reason"] == "stop" for r in rows) / total,
        "finish_reasons": dict(Counter(r["finish_reason"] for r in rows)),
        "mean_completion_tokens": sum(r["completion_tokens"] for r in rows) / total,
        "mean_thinking_tokens": sum(r["thinking_tokens"] for r in rows) / total,
        "forced_rate": sum(bool(r["forced"]) for r in rows) / total,
        "mean_waits": sum(r["waits"] for r in rows) / total,
        "non_pass_tags": dict(tags),
    }


def _block(target: _Target, protocol: dict, rows_by_setting: dict, problems: list[Problem],
           confidence: float, seed: int) -> dict[str, Any]:
    (_, plain_rows), *rest = rows_by_setting.items()
    block: dict[str, Any] = {"label": target.label, "model": target.name, "protocol": protocol,
                             **_metrics(plain_rows, confidence, seed)}
    for key in ("domain", "subject", "level"):
        groups = _group(plain_rows, key, confidence, seed)
        if groups and (key == "domain" or len(groups) > 1 or key != "domain"):
            block[f"by_{key}"] = groups
    budgets = []
    for (mode, spec), rows in rest:
        m = _metrics(rows, confidence, seed)
        budgets.append({
            "mode": mode, "thinking_budget": spec.thinking_budget, "waits": spec.waits,
            # the x-axis of s1's figure: a cap row plots at its cap, a Wait row at its mean thinking length
            "budget": spec.thinking_budget if mode == "cap" else round(m["mean_thinking_tokens"]),
            **{k: m[k] for k in ("pass@1", "ci", "n_problems", "stop_rate", "mean_thinking_tokens",
                                 "mean_completion_tokens", "forced_rate", "mean_waits")},
        })
    if budgets:
        block["budgets"] = budgets
    return block


def _write_eval_json(run_dir: Path, blocks: dict[str, dict[str, Any]], warnings: list[str], excluded: int,
                     tpl: dict[str, Any]) -> None:
    path = run_dir / "eval.json"
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            data = {}
    for label, block in blocks.items():
        if label in ("after", "before"):
            data[label] = block
        else:
            data.setdefault("models", {})[label] = block
    data["excluded_seen_in_training"] = excluded
    data["warnings"] = warnings
    data["template"] = {k: v for k, v in tpl.items() if k != "trained_template"}
    data.setdefault("cost_usd", 0.0)
    data["updated_at"] = time.time()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)



__all__ = ["EvalResult", "evaluate", "load_eval_problems"]
