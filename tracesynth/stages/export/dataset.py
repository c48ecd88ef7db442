"""`tracesynth export RECIPE`: traces.jsonl → a Hugging Face dataset that TRL's SFTTrainer trains on directly.

Rows (``dataset.format``):

* ``messages`` (default): the prompt messages the teacher was asked (system prompt per
  ``dataset.system_prompt``: None keeps the template's, ``""`` removes it, text replaces it) plus
  one assistant turn. ``dataset.reasoning`` decides where the reasoning goes:
  ``think_tags`` → ``"<think>\\n{reasoning}\\n</think>\\n\\n{answer}"`` in ``content``;
  ``reasoning_content`` → a separate ``reasoning_content`` field of the assistant message (the
  DeepSeek / vLLM / Qwen3-template convention); ``none`` → the answer only.
* ``prompt_completion``: TRL's conversational prompt-completion format — ``prompt`` (the
  messages above) and ``completion`` (the assistant turn).

Metadata columns: problem_id, sample_id, source, domain, teacher, answer, verdicts, token counts
(prompt, completion, reasoning, trace), cost_usd, finish_reason.

Written to ``run_dir/dataset``: ``save_to_disk`` files, ``parquet/train-XXXXX-of-YYYYY.parquet``
shards (``dataset.shard_rows`` rows each), the card ``README.md`` (:mod:`tracesynth.dataset_card`)
and ``template.json`` (system prompt, template, thinking delimiters — what sft and eval reuse).
The folder is built beside the old one and swapped in at the end, so a failed export leaves the
previous dataset intact. Optional ``dataset.push_to_hub: user/name`` uploads it (never in tests).
This module does not curate or train.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracesynth._ids import stable_hash
from tracesynth.config import Recipe
from tracesynth.errors import UserError
from tracesynth.records import Trace
from tracesynth.rundir.store import JsonlFile, RunStore
from tracesynth.sources.prompts import load_template, template_hash

THINK_START, THINK_END = "<think>", "</think>"


@dataclass
class ExportResult:
    """Where the dataset went and what it holds."""

    rows: int
    dataset_dir: str
    parquet_files: list[str] = field(default_factory=list)
    card_path: str = ""
    template_path: str = ""
    format: str = "messages"
    reasoning: str = "think_tags"

    def summary(self) -> str:
        return (
            f"export: {self.rows} rows ({self.format}, reasoning {self.reasoning}) -> {self.dataset_dir} "
            f"(+ {len(self.parquet_files)} parquet shard(s), README.md, template.json)"
        )


def assistant_message(trace: Trace, reasoning_mode: str) -> dict[str, Any]:
    """The assistant turn of a trace, with its reasoning placed as ``reasoning_mode`` says."""
    content = (trace.content or "").strip()
    reasoning = (trace.reasoning or "").strip()
    if reasoning_mode == "think_tags":
        return {"role": "assistant", "content": f"{THINK_START}\n{reasoning}\n{THINK_END}\n\n{content}"}
    if reasoning_mode == "reasoning_content":
        return {"role": "assistant", "content": content, "reasoning_content": reasoning}
    return {"role": "assistant", "content": content}


def prompt_messages(trace: Trace, system_prompt: str | None) -> list[dict[str, Any]]:
    """The trace's prompt messages with the dataset's system prompt rule applied."""
    msgs = [{"role": m.get("role", "user"), "content": str(m.get("content", ""))} for m in trace.messages or []]
    if not msgs:
        msgs = [{"role": "user", "content": trace.prompt or ""}]
    if system_prompt is None:
        return msgs
    rest = [m for m in msgs if m["role"] != "system"]
    return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + rest


def row(trace: Trace, recipe: Recipe) -> dict[str, Any]:
    """One dataset row for ``trace`` (see module docstring)."""
    cfg = recipe.dataset
    prompt = prompt_messages(trace, cfg.system_prompt)
    reply = assistant_message(trace, cfg.reasoning)
    if cfg.reasoning == "reasoning_content":  # one struct type for every message of the column
        prompt = [{**m, "reasoning_content": None} for m in prompt]
    meta = {
        "problem_id": trace.problem_id,
        "sample_id": trace.sample_id,
        "source": trace.source,
        "domain": trace.domain,
        "teacher": trace.teacher,
        "answer": trace.answer,
        "verdicts": [
            {"verifier": v.verifier, "status": v.status, "answer": v.answer, "tag": v.tag, "reason": v.reason}
            for v in trace.verdicts
        ],
        "prompt_tokens": trace.usage.prompt_tokens,
        "completion_tokens": trace.usage.completion_tokens,
        "reasoning_tokens": trace.usage.reasoning_tokens,
        "trace_tokens": int(trace.metadata.get("tokens", 0)),
        "cost_usd": float(trace.cost_usd),
        "finish_reason": trace.finish_reason,
    }
    if cfg.format == "prompt_completion":
        return {"prompt": prompt, "completion": [reply], **meta}
    return {"messages": [*prompt, reply], **meta}


def features(recipe: Recipe):
    """Explicit Arrow features, so empty or all-null columns never change type between runs."""
    from datasets import Features, List, Value

    msg = {"role": Value("string"), "content": Value("string")}
    if recipe.dataset.reasoning == "reasoning_content":
        msg["reasoning_content"] = Value("string")
    verdict = {k: Value("string") for k in ("verifier", "status", "answer", "tag", "reason")}
    cols: dict[str, Any] = (
        {"prompt": List(msg), "completion": List(msg)}
        if recipe.dataset.format == "prompt_completion"
        else {"messages": List(msg)}
    )
    cols.update({k: Value("string") for k in ("problem_id", "sample_id", "source", "domain", "teacher", "answer")})
    cols["verdicts"] = List(verdict)
    cols.update({k: Value("int64") for k in ("prompt_tokens", "completion_tokens", "reasoning_tokens", "trace_tokens")})
    cols["cost_usd"] = Value("float64")
    cols["finish_reason"] = Value("string")
    return Features(cols)


def _rows(traces_path: str, recipe_json: str):
    recipe = Recipe.model_validate_json(recipe_json)
    for trace in JsonlFile(traces_path, Trace, key="sample_id").iter():
        yield row(trace, recipe)


def template_info(recipe: Recipe) -> dict[str, Any]:
    """template.json: what building the training set used, for sft and eval to reuse."""
    tpl = load_template(recipe.prompt)
    system = tpl.system if recipe.dataset.system_prompt is None else (recipe.dataset.system_prompt or None)
    return {
        "origin": "tracesynth export",
        "format": recipe.dataset.format,
        "reasoning": recipe.dataset.reasoning,
        "thinking_delimiters": [THINK_START, THINK_END],
        "system_prompt": system,
        "prompt_template": recipe.prompt.template,
        "user_template": tpl.user,
        "template_hash": template_hash(recipe.prompt),
        "recipe_hash": recipe.hash(),
    }


def export(recipe: Recipe) -> ExportResult:
    """Build the dataset from traces.jsonl (see module docstring)."""
    run_dir = Path(recipe.run_dir)
    traces_path = run_dir / "traces.jsonl"
    if not traces_path.exists():
        raise UserError(f"{traces_path}: no traces; run `tracesynth curate` first")
    cfg = recipe.dataset
    started = time.time()
    with RunStore(run_dir) as store:
        store.mark_stage("export", started_at=started)
        n = JsonlFile(traces_path, Trace, key="sample_id").count
        if n == 0:
            raise UserError(f"{traces_path}: curation kept no traces; nothing to export (see curate.json)")
        final = run_dir / "dataset"
        work = run_dir / "dataset.tmp"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            files = _build(recipe, traces_path, work, n)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)  # the previous dataset/ stays as it was
            raise
        old = run_dir / "dataset.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        work.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        if cfg.push_to_hub:
            _push(final, cfg.push_to_hub)
        store.mark_stage("export", finished_at=time.time(), rows=n)
    return ExportResult(
        rows=n,
        dataset_dir=str(final),
        parquet_files=[str(final / "parquet" / f) for f in files],
        card_path=str(final / "README.md"),
        template_path=str(final / "template.json"),
        format=cfg.format,
        reasoning=cfg.reasoning,
    )


def _build(recipe: Recipe, traces_path: Path, work: Path, n: int) -> list[str]:
    """Write the dataset, Parquet shards, template.json and the card into ``work``; return shard names."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    quiet_before = are_progress_bars_disabled()
    disable_progress_bars()  # one summary line from the CLI instead of five progress bars
    try:
        return _write(recipe, traces_path, work, n)
    finally:
        if not quiet_before:
            enable_progress_bars()


def _write(recipe: Recipe, traces_path: Path, work: Path, n: int) -> list[str]:
    import datasets

    from tracesynth.stages.export.card import render_card

    stat = traces_path.stat()
    fingerprint = stable_hash("export", recipe.model_dump(mode="json"), stat.st_mtime_ns, stat.st_size)
    ds = datasets.Dataset.from_generator(
        _rows,
        features=features(recipe),
        gen_kwargs={"traces_path": str(traces_path), "recipe_json": recipe.model_dump_json()},
        cache_dir=str(work / ".build"),
        fingerprint=fingerprint,
    )
    ds.save_to_disk(str(work))
    shards = max(1, -(-len(ds) // recipe.dataset.shard_rows))
    (work / "parquet").mkdir()
    files = []
    for i in range(shards):
        path = work / "parquet" / f"train-{i:05d}-of-{shards:05d}.parquet"
        ds.shard(shards, i, contiguous=True).to_parquet(str(path))
        files.append(path.name)
    del ds
    shutil.rmtree(work / ".build", ignore_errors=True)
    template = template_info(recipe)
    (work / "template.json").write_text(json.dumps(template, indent=2, ensure_ascii=False) + "\n")
    (work / "README.md").write_text(render_card(recipe, traces_path.parent, template, rows=n), encoding="utf-8")
    return files


def _push(dataset_dir: Path, repo_id: str) -> None:  # pragma: no cover - needs the Hub and a token
    import datasets
    from huggingface_hub import DatasetCard

    datasets.load_from_disk(str(dataset_dir)).push_to_hub(repo_id)
    DatasetCard((dataset_dir / "README.md").read_text(encoding="utf-8")).push_to_hub(repo_id)


__all__ = [
    "THINK_END", "THINK_START", "ExportResult", "assistant_message", "export", "features", "row", "template_info",
]
