"""`tracesynth export RECIPE`: traces.jsonl → a Hugging Face dataset that TRL's SFTTrainer trains on directly.

Rows (``dataset.format``):

* ``messages`` (default): the prompt messages the teacher was asked (system prompt per
  ``dataset.system_prompt``: None keeps the template's, ``""`` removes it, text replaces it) plus
  one assistant turn. ``dataset.reasoning`` decides where the reasoning goes:
  ``think_tags`` → ``"<think>\\n{reasoning}\\n</think>\\n\\n{answer}"`` in ``content``;
  ``reasoning_content`` → a separate ``reasoning_content`` field of the assistant message (the
  DeepSeek / vLLM / Qwen3-template convention); ``none`` → the answer only. A teacher that did not
  separate its thinking (QwQ-32B-Preview: no field, no delimiter) gave its whole reply as the trace:
  the reasoning is the reply up to its final answer, the answer that final part
  (:func:`tracesynth.thinking.reply_parts`), so its thinking lands inside the student's delimiters.
* ``prompt_completion``: TRL's conversational prompt-completion format — ``prompt`` (the
  messages above) and ``completion`` (the assistant turn).

Metadata columns: problem_id, sample_id, source, domain, teacher, answer, verdicts, token counts
(prompt, completion, reasoning, trace), cost_usd, finish_reason.

Written to ``run_dir/dataset`` in the layout every Hugging Face tool finds: Parquet shards
``data/train-XXXXX-of-YYYYY-<fingerprint>.parquet`` (``dataset.shard_rows`` rows each), the card ``README.md``
(:mod:`.card`) whose YAML header lists them as the ``train`` split (``configs: data_files``), and
``template.json`` (system prompt, template, thinking delimiters — what sft and eval reuse). So
``datasets.load_dataset("runs/x/dataset")``, ``trl sft --dataset_name runs/x/dataset`` and the Hub all
read it as it is.

A trace whose text holds chat-template markup (``<|im_end|>``, ``<|im_start|>``, any special token of
the student's tokenizer: :mod:`tracesynth.markup`) is never written: it would become real special
tokens in training. Such rows are counted and named in the result and the card.

The folder is built beside the old one and swapped in at the end, so a failed export leaves the
previous dataset intact. Optional ``dataset.push_to_hub: user/name`` uploads it (never in tests).
This module does not curate or train.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracesynth._ids import stable_hash
from tracesynth.config import Recipe
from tracesynth.errors import UserError
from tracesynth.markup import find_markup
from tracesynth.records import Trace
from tracesynth.rundir.layout import TEMPLATE_JSON, RunLayout
from tracesynth.rundir.store import JsonlFile, RunStore
from tracesynth.sources.prompts import load_template, template_hash
from tracesynth.stages.rewrite.apply import rewrite_message, with_rewrites
from tracesynth.stages.rewrite.apply import stamp as rewrite_stamp
from tracesynth.thinking import THINK, reply_parts

DATA_DIR = "data"  # data/train-*.parquet: the split layout datasets.load_dataset and the Hub find


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
    refused_markup: list[str] = field(default_factory=list)  # sample ids of traces holding chat markup

    def summary(self) -> str:
        refused = f"; refused {len(self.refused_markup)} trace(s) holding chat markup" if self.refused_markup else ""
        return (
            f"export: {self.rows} rows ({self.format}, reasoning {self.reasoning}) -> {self.dataset_dir} "
            f"({len(self.parquet_files)} parquet shard(s), README.md, template.json){refused}"
        )


def assistant_message(trace: Trace, reasoning_mode: str) -> dict[str, Any]:
    """The assistant turn of a trace, with its reasoning placed as ``reasoning_mode`` says."""
    own = rewrite_message(trace, reasoning_mode)  # a rewritten trace trains on its Sky-T1 blocks
    if own is not None:
        return own
    reasoning, content, _ = reply_parts(trace.reasoning, trace.content)
    reasoning, content = reasoning.strip(), content.strip()
    if reasoning_mode == "think_tags":
        return {"role": "assistant", "content": THINK.wrap(reasoning, content)}
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


def _rows(traces_path: str, recipe_json: str, skip: list[str]):
    recipe = Recipe.model_validate_json(recipe_json)
    refused = set(skip)
    for trace in with_rewrites(traces_path, recipe.rewrite.enabled):  # rewrites.jsonl where present
        if trace.sample_id not in refused:
            yield row(trace, recipe)


def markup_of(trace: Trace, extra: tuple[str, ...]) -> str | None:
    """The chat markup a trace's texts hold (prompt messages, reasoning, answer), or None."""
    texts = [trace.prompt, trace.reasoning, trace.content, *(str(m.get("content", "")) for m in trace.messages or [])]
    return next((hit for text in texts if (hit := find_markup(text, extra)) is not None), None)


def _refused(recipe: Recipe, traces_path: Path) -> list[str]:
    from tracesynth.markup import tokenizer_markup

    extra = tuple(tokenizer_markup(recipe.student.model) if recipe.student.model else ())
    out = []
    for trace in with_rewrites(traces_path, recipe.rewrite.enabled):  # rewrites.jsonl where present
        if markup_of(trace, extra) is not None:
            out.append(trace.sample_id)
    return out


def template_info(recipe: Recipe) -> dict[str, Any]:
    """template.json: what building the training set used, for sft and eval to reuse."""
    tpl = load_template(recipe.prompt)
    system = tpl.system if recipe.dataset.system_prompt is None else (recipe.dataset.system_prompt or None)
    return {
        "origin": "tracesynth export",
        "format": recipe.dataset.format,
        "reasoning": recipe.dataset.reasoning,
        "thinking_delimiters": THINK.as_list(),
        "system_prompt": system,
        "prompt_template": recipe.prompt.template,
        "user_template": tpl.user,
        "template_hash": template_hash(recipe.prompt),
        "recipe_hash": recipe.hash(),
    }


def export(recipe: Recipe) -> ExportResult:
    """Build the dataset from traces.jsonl (see module docstring)."""
    layout = RunLayout(recipe.run_dir)
    traces_path = layout.traces
    if not traces_path.exists():
        raise UserError(f"{traces_path}: no traces; run `tracesynth curate` first")
    cfg = recipe.dataset
    with RunStore(layout.root) as store, store.stage_run("export") as mark:
        total = JsonlFile(traces_path, Trace, key="sample_id").count
        if total == 0:
            raise UserError(f"{traces_path}: curation kept no traces; nothing to export (see curate.json)")
        refused = _refused(recipe, traces_path)
        n = total - len(refused)
        if n == 0:
            raise UserError(
                f"{traces_path}: every trace holds chat-template markup (e.g. {refused[0]}); nothing to export"
            )
        final = layout.dataset
        work = final.with_name(final.name + ".tmp")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            files = _build(recipe, traces_path, work, n, refused)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)  # the previous dataset/ stays as it was
            raise
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        work.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        if cfg.push_to_hub:
            _push(final, cfg.push_to_hub)
        mark.update(rows=n, refused_markup=len(refused))
    return ExportResult(
        rows=n,
        dataset_dir=str(final),
        parquet_files=[str(final / f) for f in files],
        card_path=str(final / "README.md"),
        template_path=str(final / TEMPLATE_JSON),
        format=cfg.format,
        reasoning=cfg.reasoning,
        refused_markup=refused,
    )


def _build(recipe: Recipe, traces_path: Path, work: Path, n: int, refused: list[str]) -> list[str]:
    """Write the Parquet shards, template.json and the card into ``work``; return the shard paths."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    quiet_before = are_progress_bars_disabled()
    disable_progress_bars()  # one summary line from the CLI instead of five progress bars
    try:
        return _write(recipe, traces_path, work, n, refused)
    finally:
        if not quiet_before:
            enable_progress_bars()


def _write(recipe: Recipe, traces_path: Path, work: Path, n: int, refused: list[str]) -> list[str]:
    import datasets

    from tracesynth.stages.export.card import render_card

    stat = traces_path.stat()
    fingerprint = stable_hash(
        "export", recipe.model_dump(mode="json"), stat.st_mtime_ns, stat.st_size, refused, rewrite_stamp(traces_path)
    )
    ds = datasets.Dataset.from_generator(
        _rows,
        features=features(recipe),
        gen_kwargs={"traces_path": str(traces_path), "recipe_json": recipe.model_dump_json(), "skip": refused},
        cache_dir=str(work / ".build"),
        fingerprint=fingerprint,
    )
    shards = max(1, -(-len(ds) // recipe.dataset.shard_rows))
    (work / DATA_DIR).mkdir()
    files = []
    for i in range(shards):
        # the content's fingerprint is in the name: the card lists these exact files, and datasets keys its cache
        # of a local folder by what the card lists — so a re-export is never read from a stale cache
        rel = f"{DATA_DIR}/train-{i:05d}-of-{shards:05d}-{fingerprint[:8]}.parquet"
        ds.shard(shards, i, contiguous=True).to_parquet(str(work / rel))
        files.append(rel)
    del ds
    shutil.rmtree(work / ".build", ignore_errors=True)
    template = template_info(recipe)
    (work / TEMPLATE_JSON).write_text(json.dumps(template, indent=2, ensure_ascii=False) + "\n")
    card = render_card(recipe, traces_path.parent, template, rows=n, refused_markup=refused, data_files=files)
    (work / "README.md").write_text(card, encoding="utf-8")
    return files


def load_exported(dataset_dir: str | Path) -> Any:
    """The exported dataset as a ``datasets.Dataset`` (its train split), the way every HF tool loads it."""
    import datasets

    return datasets.load_dataset(str(dataset_dir), split="train")


def _push(dataset_dir: Path, repo_id: str) -> None:  # pragma: no cover - needs the Hub and a token
    from huggingface_hub import DatasetCard

    load_exported(dataset_dir).push_to_hub(repo_id)
    DatasetCard((dataset_dir / "README.md").read_text(encoding="utf-8")).push_to_hub(repo_id)


__all__ = [
    "DATA_DIR",
    "ExportResult",
    "assistant_message",
    "export",
    "features",
    "load_exported",
    "markup_of",
    "row",
    "template_info",
]
