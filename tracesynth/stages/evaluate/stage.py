"""`tracesynth eval`: score the student on held-out problems under a pinned protocol, before and after.

* Problems come from ``eval.source``; any problem the teacher was asked for this run (same id or the
  same normalised prompt as a row of problems.jsonl / traces.jsonl) is dropped and counted, so
  nothing trained on is scored.
* The student answers (:mod:`.generation`) locally (batched ``generate``), through an OpenAI-compatible
  endpoint that serves it (``eval.backend: endpoint``), or through a vLLM server this stage starts on
  the checkpoint and stops afterwards, on errors and Ctrl-C too (``eval.backend: vllm``,
  :mod:`tracesynth.engine.vllm`). Through a server, budget forcing uses ``/v1/completions`` on the
  prompt rendered client-side with the student's own chat template.
* Answers are scored by :func:`tracesynth.stages.verify.registry.score` with ``eval.verifiers`` (default:
  the recipe's verifiers without ``format`` — eval checks answers, not formatting); an item passes when
  every verdict is ``pass``. pass@1 is the mean over problems of c/n with its interval
  (:mod:`.metrics`), per domain, subject and level, and per set when ``eval.source`` is a list.
* The same template everywhere: the system prompt and thinking delimiters default to the student's
  ``template.json``; a recipe value that differs is used but warned about (:mod:`.targets`).
* ``eval.thinking_caps`` / ``eval.wait_extensions`` add s1's accuracy-vs-thinking-tokens rows.
* An item that errored (the endpoint refused it after its retries) is not a result: it is not written
  to ``eval_items.jsonl`` (a re-run asks it again), and an eval with errored items fails naming how
  many, leaving the previous ``eval.json`` as it was.

Writes ``eval.json`` (protocol, blocks, warnings) and ``eval_items.jsonl`` (every output and its
verdicts, keyed by item id — an interrupted eval resumes). This module does not train or plot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tracesynth._ids import stable_hash
from tracesynth.config import Recipe
from tracesynth.errors import ConfigError, TeacherError, UserError
from tracesynth.records import Problem, Sample, Usage
from tracesynth.rundir.jsonio import json_lines, read_json, write_json
from tracesynth.rundir.layout import RunLayout
from tracesynth.rundir.store import JsonlFile, RunStore, package_versions
from tracesynth.stages.evaluate.generation import Generation, GenerationSpec
from tracesynth.stages.evaluate.metrics import block
from tracesynth.stages.evaluate.targets import Target, check_eval, targets, training_template

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
            lines.append(
                f"eval {label}: pass@1 {100 * b['pass@1']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] "
                f"on {b['n_problems']} problems, stopped {100 * b['stop_rate']:.0f}% ({b['model']})"
            )
            for row in b.get("thinking_caps", []):
                lines.append(
                    f"  {row['mode']} {row.get('thinking_cap') or row.get('waits')}: "
                    f"pass@1 {100 * row['pass@1']:.1f}%, {row['mean_thinking_tokens']:.0f} thinking tokens"
                )
        return "\n".join(lines)


_WS = re.compile(r"\s+")


def _norm(text: str | None) -> str:
    return _WS.sub(" ", (text or "").strip().lower())


def load_eval_problems(recipe: Recipe) -> tuple[list[Problem], int]:
    """The held-out problems, minus any the run harvested (by id or normalised prompt); and how many were dropped."""
    from tracesynth.sources.problems import iter_problems

    if recipe.eval.source is None:
        raise ConfigError("eval.source: not set (the held-out problems to evaluate on)")
    layout = RunLayout(recipe.run_dir)
    seen_ids: set[str] = set()
    seen_text: set[str] = set()
    for path in (layout.problems, layout.traces):
        for row in json_lines(path):
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


def _messages(problem: Problem, recipe: Recipe, system: str | None, use_template_system: bool) -> list[dict[str, Any]]:
    from tracesynth.sources.prompts import render_messages

    msgs = render_messages(problem, recipe.prompt)
    if use_template_system:
        msgs = [m for m in msgs if m.get("role") != "system"]
        if system:
            msgs.insert(0, {"role": "system", "content": system})
    return msgs


def eval_verifiers(recipe: Recipe) -> list[str]:
    """The verifiers eval scores with: ``eval.verifiers``, else the recipe's without ``format``."""
    from tracesynth.stages.verify.registry import VERIFIERS

    cfg = recipe.eval
    names = list(cfg.verifiers) if cfg.verifiers else [v for v in recipe.verify.verifiers if v != "format"]
    unknown = [v for v in names if v not in VERIFIERS and ":" not in v]
    if unknown:
        where = "eval.verifiers" if cfg.verifiers else "verify.verifiers"
        raise ConfigError(f"{where}: unknown verifier {unknown[0]!r} (known: {', '.join(sorted(VERIFIERS))})")
    if not names:
        raise ConfigError("eval.verifiers: none left to score answers with (set eval.verifiers, e.g. [math])")
    return names


def evaluate(
    recipe: Recipe, *, model: str | None = None, label: str | None = None, baseline: bool | None = None
) -> EvalResult:
    """Evaluate the student (and its untrained/base baseline) on the held-out set; write eval.json."""
    cfg = recipe.eval
    warnings = check_eval(recipe)
    problems, excluded = load_eval_problems(recipe)
    baseline = cfg.baseline if baseline is None else baseline
    chosen = targets(recipe, model, label, baseline)
    tpl, tpl_warnings = training_template(recipe, chosen[0])
    warnings += tpl_warnings
    for w in warnings:
        log.warning(w)
    use_saved_system = tpl["trained_template"] is not None or cfg.system_prompt is not None
    convs = [_messages(p, recipe, tpl["system_prompt"], use_saved_system) for p in problems]
    verifiers = eval_verifiers(recipe)
    think_start, think_end = tpl["thinking_delimiters"][:2]
    base = GenerationSpec(
        max_new_tokens=cfg.max_new_tokens,
        think_start=think_start,
        think_end=think_end,
        wait_text=cfg.wait_text,
        answer_prefix=cfg.answer_prefix,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
    )
    blocks: dict[str, dict[str, Any]] = {}
    errored: Counter[str] = Counter()
    first_error = ""
    with RunStore(recipe.run_dir) as store, store.stage_run("eval", problems=len(problems), excluded=excluded) as mark:
        items: JsonlFile[Any] = store.file("eval_items")
        for target in chosen:
            t0 = time.perf_counter()
            settings = [("plain", base)]
            if target is chosen[0]:
                settings += [("cap", replace(base, thinking_cap=c)) for c in cfg.thinking_caps]
                settings += [("wait", replace(base, waits=w)) for w in cfg.wait_extensions]
            protocol = _protocol(recipe, target, tpl, verifiers, len(problems))
            rows_by_setting: dict[tuple[str, GenerationSpec], list[dict[str, Any]]] = {}
            with _runner(recipe, target) as runner:
                for mode, spec in settings:
                    phash = stable_hash(protocol, mode, spec.describe())
                    rows, errs = _run_setting(
                        runner, items, problems, convs, spec, mode, phash, target, verifiers, recipe
                    )
                    rows_by_setting[(mode, spec)] = rows
                    for kind, msg in errs:
                        errored[kind] += 1
                        first_error = first_error or msg
            if errored:
                continue  # no block from partial results
            b = block(target, protocol, rows_by_setting, cfg.confidence, cfg.seed)
            b["wall_s"] = round(time.perf_counter() - t0, 3)
            blocks[target.label] = b
        if errored:
            n = sum(errored.values())
            kinds = ", ".join(f"{k} {v}" for k, v in errored.most_common())
            mark.update(status="failed", errored=n)
            raise TeacherError(
                f"eval: {n} items errored ({kinds}; first: {first_error[:200]}); they are not "
                f"results, so eval.json was left as it was. Fix the cause and re-run: the items "
                f"that did answer are kept"
            )
        _write_eval_json(store.layout, blocks, warnings, excluded, tpl)
    return EvalResult(str(store.layout.eval_json), blocks, warnings, excluded)


def _protocol(
    recipe: Recipe, target: Target, tpl: dict[str, Any], verifiers: list[str], n_problems: int
) -> dict[str, Any]:
    cfg = recipe.eval
    if isinstance(cfg.source, list):
        src: Any = [x.model_dump(mode="json") for x in cfg.source]
    else:
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
    """Generates for one target: a local model (loaded once) or a server (an endpoint, or vLLM started here)."""

    def __init__(self, recipe: Recipe, target: Target, base_url: str | None = None, served: str | None = None):
        self.recipe, self.target = recipe, target
        self.base_url = base_url or recipe.eval.base_url
        self.served = served or target.name
        self._local: Any = None
        self._tokenizer: Any = None

    def _load(self) -> Any:
        if self._local is None:
            from tracesynth.stages.evaluate.generation import LocalGenerator

            assert self.target.loader is not None
            model, tok = self.target.loader()
            self._tokenizer = tok
            self._local = LocalGenerator(
                model,
                tok,
                batch_size=self.recipe.eval.batch_size,
                seed=self.recipe.eval.seed,
                threads=self.recipe.compute.cpu_threads,
            )
        return self._local

    def generate(self, convs: list[list[dict[str, Any]]], spec: GenerationSpec, indices: list[int]) -> list[Generation]:
        if self.target.backend == "local":
            gen = self._load()
            prompts = [gen.tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs]
            return gen.generate(prompts, spec)
        return asyncio.run(self._served(convs, spec, indices))

    async def _served(
        self, convs: list[list[dict[str, Any]]], spec: GenerationSpec, indices: list[int]
    ) -> list[Generation]:
        from tracesynth.stages.evaluate.generation import EndpointGenerator
        from tracesynth.teacher.client import TeacherClient

        cfg = self.recipe.eval
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        assert self.base_url is not None
        async with TeacherClient(
            [self.base_url],
            model=self.served,
            api_key=key or None,
            api_key_env=cfg.api_key_env,
            timeout_s=cfg.timeout_s,
            concurrency=cfg.concurrency,
            max_attempts=cfg.max_attempts,
        ) as client:
            seeds: list[int | None] = [cfg.seed + i for i in indices]
            if not spec.forcing:
                return await EndpointGenerator(client, seed=cfg.seed).chat(convs, spec, seeds)
            prompts = [self._render(c) for c in convs]
            # vLLM returns token ids: the forcing rounds then go by ids, exactly as local generation does
            gen = EndpointGenerator(
                client, seed=cfg.seed, tokenizer=self._tokenizer or None, token_ids=self.target.backend == "vllm"
            )
            return await gen.generate(prompts, spec, seeds)

    def _render(self, conv: list[dict[str, Any]]) -> str:
        """The chat template applied client-side: the student's tokenizer, else ChatML."""
        if self._tokenizer is None:
            folders = [Path(self.target.checkpoint or self.target.name), RunLayout(self.recipe.run_dir).student]
            for d in folders:
                if (d / "tokenizer_config.json").exists():
                    from transformers import AutoTokenizer

                    self._tokenizer = AutoTokenizer.from_pretrained(str(d))
                    break
            else:
                self._tokenizer = False
        if self._tokenizer:
            return self._tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in conv) + "<|im_start|>assistant\n"


@contextlib.contextmanager
def _runner(recipe: Recipe, target: Target) -> Iterator[_Runner]:
    """The runner of one target; for the vllm backend, with a server started for it and stopped after."""
    if target.backend != "vllm":
        yield _Runner(recipe, target)
        return
    from tracesynth.engine.vllm import VllmServer

    assert target.checkpoint is not None
    cfg = recipe.eval
    if target.loader is not None:
        target.loader()  # writes the checkpoint the server loads (the untrained twin)
    with VllmServer(
        target.checkpoint,
        served_name=target.name,
        command=cfg.vllm_command,
        extra_args=cfg.vllm_args,
        dtype=cfg.dtype,
        start_timeout_s=cfg.vllm_start_timeout_s,
        log_path=RunLayout(recipe.run_dir).root / f"vllm-{target.label}.log",
    ) as server:
        yield _Runner(recipe, target, base_url=server.base_url, served=target.name)


def _run_setting(
    runner: _Runner,
    items: JsonlFile[Any],
    problems: list[Problem],
    convs: list[list[dict[str, Any]]],
    spec: GenerationSpec,
    mode: str,
    phash: str,
    target: Target,
    verifiers: list[str],
    recipe: Recipe,
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Generate and score the items of one setting not yet in eval_items.jsonl; return all its rows and the
    (kind, message) of every item that errored (not written: a re-run asks it again)."""
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
    errors: list[tuple[str, str]] = []
    for start in range(0, len(todo), step):
        chunk = todo[start : start + step]
        gens = runner.generate([convs[pi] for pi, _, _ in chunk], spec, [k for _, k, _ in chunk])
        for (pi, k, item_id), g in zip(chunk, gens, strict=True):
            if g.finish_reason == "error":
                errors.append((str(g.meta.get("error_kind") or "error"), str(g.meta.get("error") or "")))
                continue
            p = problems[pi]
            reasoning, content = g.split(spec.think_start, spec.think_end)
            sample = Sample(
                id=item_id,
                problem_id=p.id,
                index=k,
                model=target.name,
                reasoning=reasoning,
                content=content,
                finish_reason=g.finish_reason,
                endpoint=target.backend,
                usage=Usage(completion_tokens=g.completion_tokens, reasoning_tokens=g.thinking_tokens),
            )
            verdicts = score(p, sample, verifiers, options)
            items.append(
                {
                    "id": item_id,
                    "label": target.label,
                    "protocol_hash": phash,
                    "mode": mode,
                    "thinking_cap": spec.thinking_cap,
                    "waits_requested": spec.waits,
                    "problem_id": p.id,
                    "index": k,
                    "domain": p.domain,
                    "source": p.source,
                    "subject": p.metadata.get("subject"),
                    "level": p.metadata.get("level"),
                    "answer": p.answer,
                    "reasoning": reasoning,
                    "content": content,
                    "finish_reason": g.finish_reason,
                    "completion_tokens": g.completion_tokens,
                    "thinking_tokens": g.thinking_tokens,
                    "answer_tokens": g.answer_tokens,
                    "waits": g.waits,
                    "forced": g.forced,
                    "verdicts": [v.model_dump(mode="json") for v in verdicts],
                    "passed": bool(verdicts) and all(v.status == "pass" for v in verdicts),
                }
            )
    want = {"e-" + stable_hash(phash, p.id, k) for p in problems for k in range(n)}
    return [row for row in items.iter() if row.get("protocol_hash") == phash and row["id"] in want], errors


def _write_eval_json(
    layout: RunLayout, blocks: dict[str, dict[str, Any]], warnings: list[str], excluded: int, tpl: dict[str, Any]
) -> None:
    data = read_json(layout.eval_json, bad_ok=True)
    data = data if isinstance(data, dict) else {}
    for label, b in blocks.items():
        if label in ("after", "before"):
            data[label] = b
        else:
            data.setdefault("models", {})[label] = b
    data["excluded_seen_in_training"] = excluded
    data["warnings"] = warnings
    data["template"] = {k: v for k, v in tpl.items() if k != "trained_template"}
    data.setdefault("cost_usd", 0.0)
    data["updated_at"] = time.time()
    write_json(layout.eval_json, data)


__all__ = ["EvalResult", "eval_verifiers", "evaluate", "load_eval_problems"]
