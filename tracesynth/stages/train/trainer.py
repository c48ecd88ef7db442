"""`tracesynth sft`: distil the exported dataset into the student with TRL's SFTTrainer.

The recipe's ``sft:`` block is passed to ``trl.SFTConfig`` as it is (TRL's fields are not
re-declared here); :func:`check_sft_keys` rejects a key SFTConfig does not have, naming it.
Our defaults sit *under* the recipe's keys (defaults < recipe < ``--set``):

* always: loss on the assistant turn only (``assistant_only_loss`` for ``messages`` data — the
  student's ChatML template has ``{% generation %}`` markers around the reply and its
  ``<|im_end|>``; ``completion_only_loss`` for prompt/completion data), ``report_to: none``,
  non-padding token counting;
* CPU: fp32, no gradient checkpointing, no packing (each is slower there, not faster);
* GPU: bf16 and gradient checkpointing (TRL's defaults) — unless FSDP checkpoints the layers
  (``fsdp_activation_checkpointing``): then the trainer's is off, whatever the recipe says, so exactly one
  runs (:func:`~tracesynth.stages.train.args.one_activation_checkpointing`); packing (``bfd``) +
  padding-free, Liger/Hub kernels and flash attention are the recipe's choice (see recipes/s1k.yaml);
* tiny student: a learning rate and batch size that train a from-scratch model (see
  :data:`TINY_SFT_DEFAULTS`).

Writes the model, tokenizer and ``template.json`` to ``run_dir/student`` (or ``output_dir``), and
``train.json`` there: wall time, device, GPU count, steps, tokens seen and tokens/s, for the cost
receipt. An interrupted run resumes from its last checkpoint (``<student>/checkpoints``); a
finished one with the same inputs is not trained again. Multi-GPU runs go through
``accelerate launch`` (recipes/accelerate/); only the main process writes files, and the others wait
for it before loading the student it wrote. ``train.json`` records accelerate's distributed type
(FSDP, DEEPSPEED, MULTI_GPU, MULTI_CPU); FSDP asked for and not given (accelerate never enables it on the
CPU) is a logged warning, and processes that do not form one job are refused.

This module trains; it does not evaluate (see :mod:`tracesynth.stages.evaluate`) or export data.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracesynth._ids import stable_hash
from tracesynth.config import Recipe
from tracesynth.errors import ConfigError, UserError
from tracesynth.rundir.store import RunStore, package_versions
from tracesynth.stages.train.args import (
    check_sft_keys,
    default_sft_args,
    installed_names,
    merge_sft_args,
    one_activation_checkpointing,
)
from tracesynth.stages.train.device import cpu_threads, main_process

log = logging.getLogger(__name__)


@dataclass
class SftResult:
    """What `sft` produced: where the student is and the measured training run (train.json)."""

    output_dir: str
    skipped: bool = False
    train: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        t = self.train
        if self.skipped:
            return f"sft: {self.output_dir} is up to date ({t.get('steps', 0)} steps, nothing to do)"
        return (
            f"sft: {t.get('steps', 0)} steps, {t.get('tokens_seen', 0):,} tokens in {t.get('wall_s', 0):.1f} s "
            f"({t.get('tokens_per_s', 0):,.0f} tok/s, {t.get('device')}) -> {self.output_dir}"
        )


def _load_dataset(dataset_dir: Path):
    import datasets

    if not dataset_dir.exists():
        raise UserError(f"{dataset_dir}: no dataset here; run `tracesynth export RECIPE` first")
    try:
        if (dataset_dir / "state.json").exists() or (dataset_dir / "dataset_dict.json").exists():
            ds = datasets.load_from_disk(str(dataset_dir))  # a folder saved with save_to_disk
        else:
            ds = datasets.load_dataset(str(dataset_dir))  # the export's layout: README configs + data/*.parquet
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"{dataset_dir}: not a dataset folder ({str(exc).splitlines()[0]})") from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise UserError(f"{dataset_dir}: a DatasetDict without a 'train' split ({sorted(ds)})")
        ds = ds["train"]
    if "messages" in ds.column_names:
        fmt, cols = "messages", ["messages"]
    elif {"prompt", "completion"} <= set(ds.column_names):
        fmt, cols = "prompt_completion", ["prompt", "completion"]
    else:
        raise UserError(f"{dataset_dir}: needs a 'messages' column or 'prompt' and 'completion' columns")
    if len(ds) == 0:
        raise UserError(f"{dataset_dir}: the dataset is empty; nothing to train on")
    if "sample_id" in ds.column_names:
        # rows are exported in the order the teacher's answers arrived, which differs run to run: in sample-id
        # order the same sft.seed shuffles the same data the same way, so a re-run repeats bit for bit
        ds = ds.sort("sample_id")
    return ds.select_columns(cols), fmt


def _template_for(recipe: Recipe, dataset_dir: Path) -> dict[str, Any]:
    from tracesynth.stages.train.student import read_template
    from tracesynth.thinking import THINK

    saved = read_template(dataset_dir)
    if saved:
        return saved
    return {
        "origin": "recipe (the dataset has no template.json)",
        "system_prompt": recipe.dataset.system_prompt,
        "reasoning": recipe.dataset.reasoning,
        "thinking_delimiters": THINK.as_list(),
    }


@dataclass
class _Plan:
    """Everything sft decided before training: inputs, outputs, arguments, identities."""

    recipe: Recipe
    dataset_dir: Path
    out: Path
    fmt: str
    args: dict[str, Any]
    student_desc: dict[str, Any]
    fingerprint: str  # of the finished student: dataset + student + arguments
    ckpt_fingerprint: str  # of the checkpoints: dataset + student (a longer run may resume a shorter one)
    tiny: bool
    resume: str | None = None

    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"


def _plan(recipe: Recipe, dataset_dir: str | Path | None, output_dir: str | Path | None):
    import torch

    run_dir = Path(recipe.run_dir)
    dataset_dir = Path(dataset_dir) if dataset_dir is not None else run_dir / "dataset"
    out = Path(output_dir) if output_dir is not None else run_dir / "student"
    check_sft_keys(recipe.sft)
    ds, fmt = _load_dataset(dataset_dir)
    tiny = recipe.student.model is None
    args = merge_sft_args(default_sft_args(on_gpu=torch.cuda.is_available(), fmt=fmt, tiny=tiny), recipe.sft)
    args = one_activation_checkpointing(args)  # FSDP's or the trainer's, never both
    if tiny:
        desc: dict[str, Any] = {
            "init": "tiny",
            "tiny": recipe.student.tiny,
            "vocab_size": recipe.student.vocab_size,
            "seed": int(args.get("seed", 42)),
        }
    else:
        desc = {"model": recipe.student.model}
    ckpt_fp = stable_hash("sft-checkpoints", ds._fingerprint, desc)
    plan = _Plan(recipe, dataset_dir, out, fmt, args, desc, stable_hash("sft", ckpt_fp, args), ckpt_fp, tiny)
    return ds, plan


def make_trainer(recipe: Recipe, *, dataset_dir: str | Path | None = None, output_dir: str | Path | None = None):
    """The ``SFTTrainer`` sft would run, and its plan (for inspection: prepared labels, arguments)."""
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    ds, plan = _plan(recipe, dataset_dir, output_dir)
    ckpt_dir = plan.ckpt_dir
    try:
        config = SFTConfig(**{**installed_names(plan.args), "output_dir": str(ckpt_dir)})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"sft: {str(exc).splitlines()[0]}") from None
    _check_world(config)
    # The main process first (the others wait at a barrier): it clears stale checkpoints and writes the
    # tiny student's initial weights and tokenizer, which the others then load instead of racing it.
    with config.main_process_first(local=False, desc="checkpoints and the student's initial weights"):
        if ckpt_dir.is_dir() and get_last_checkpoint(str(ckpt_dir)) is not None:
            stamp = ckpt_dir / "fingerprint"
            if stamp.exists() and stamp.read_text().strip() == plan.ckpt_fingerprint:
                plan.resume = get_last_checkpoint(str(ckpt_dir))
            elif main_process():
                log.warning("%s: checkpoints of a different dataset or student; starting over", ckpt_dir)
                shutil.rmtree(ckpt_dir)
        if main_process():
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            (ckpt_dir / "fingerprint").write_text(plan.ckpt_fingerprint)
        model, tokenizer = _student(recipe, ds, ckpt_dir, plan.tiny)
    _check_template(tokenizer, recipe, plan, ds)
    trainer = SFTTrainer(model=model, args=config, train_dataset=ds, processing_class=tokenizer)
    _check_fsdp(trainer, plan.args)
    return trainer, plan


def _check_template(tokenizer, recipe: Recipe, plan: _Plan, ds) -> None:
    """Refuse to train when the chat template keeps the first row's reasoning out of the loss."""
    from tracesynth.stages.train.template_check import reasoning_problem

    if len(ds) == 0:
        return
    data = recipe.model_copy(deep=True)
    data.dataset.format = plan.fmt  # type: ignore[assignment]  # the layout on disk, which the message names
    problem = reasoning_problem(tokenizer, data, plan.args, example=dict(ds[0]))
    if problem:
        raise ConfigError(f"sft: {problem}")


def _check_world(config) -> None:
    """Several launched processes that transformers does not see as one job would each train a full copy."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and config.world_size == 1:
        raise UserError(
            f"sft: {launched} processes were launched but transformers sees a world size of 1 on {config.device} "
            "(no GPU, and neither ACCELERATE_USE_CPU=1 nor sft.use_cpu), so each would train and write its own "
            "copy; on a CPU-only machine launch with ACCELERATE_USE_CPU=1"
        )


def _check_fsdp(trainer, args: dict[str, Any]) -> None:
    """Say so when FSDP was asked for and accelerate runs something else (it enables FSDP on GPUs only)."""
    asked = os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" or bool(args.get("fsdp"))
    kind = str(trainer.accelerator.distributed_type).rsplit(".", 1)[-1]
    if asked and kind != "FSDP" and main_process():
        log.warning(
            "sft: FSDP was asked for but accelerate runs %s on %s: accelerate %s enables FSDP on GPUs "
            "(and other accelerators) only; on the CPU the processes run plain data parallel (DDP over gloo)",
            kind,
            trainer.args.device,
            _version("accelerate"),
        )


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def _distributed(trainer) -> dict[str, Any]:
    """How the processes shared the work: accelerate's distributed type, world size, FSDP version."""
    acc = trainer.accelerator
    kind = str(acc.distributed_type).rsplit(".", 1)[-1]
    info: dict[str, Any] = {"type": kind, "world_size": acc.num_processes}
    plugin = getattr(acc.state, "fsdp_plugin", None)
    if kind == "FSDP" and plugin is not None:
        info["fsdp_version"] = getattr(plugin, "fsdp_version", 1)
        info["fsdp_activation_checkpointing"] = bool(plugin.activation_checkpointing)
    return info


def sft(
    recipe: Recipe, *, dataset_dir: str | Path | None = None, output_dir: str | Path | None = None, force: bool = False
) -> SftResult:
    """Train the student on the exported dataset; write it with train.json and template.json."""
    _, plan = _plan(recipe, dataset_dir, output_dir)
    done = _finished(plan.out, plan.fingerprint)
    if done is not None and not force:
        return SftResult(output_dir=str(plan.out), skipped=True, train=done)
    store = RunStore(recipe.run_dir) if main_process() else None
    try:
        if store is not None:
            store.mark_stage("sft", started_at=time.time(), output_dir=str(plan.out))
        trainer, plan = make_trainer(recipe, dataset_dir=dataset_dir, output_dir=output_dir)
        result = train_and_save(trainer, plan)
        if store is not None:
            store.mark_stage(
                "sft", ended_at=time.time(), steps=result.train.get("steps"), wall_s=result.train.get("wall_s")
            )
        return result
    finally:
        if store is not None:
            store.close()


def _finished(out: Path, fingerprint: str) -> dict[str, Any] | None:
    path = out / "train.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return None
    if data.get("fingerprint") == fingerprint and (out / "config.json").exists():
        return data
    return None


def _tokens_at(checkpoint: str | None) -> int:
    if checkpoint is None:
        return 0
    try:
        return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text()).get("num_input_tokens_seen", 0))
    except (OSError, ValueError):
        return 0


def train_and_save(trainer, plan: _Plan) -> SftResult:
    """Run the trainer made by :func:`make_trainer` and write the student, train.json and template.json."""
    import torch

    config, out = trainer.args, plan.out
    loss_tokens = 0
    for batch in trainer.train_dataset.select_columns(["labels"]).iter(batch_size=1024):
        loss_tokens += sum(sum(1 for x in labels if x != -100) for labels in batch["labels"])
    load = os.getloadavg()[0]
    with cpu_threads(trainer.model, plan.recipe.compute.cpu_threads) as threads:
        t0 = time.perf_counter()
        output = trainer.train(resume_from_checkpoint=plan.resume)
        wall = time.perf_counter() - t0
    state = trainer.state
    session_tokens = state.num_input_tokens_seen - _tokens_at(plan.resume)
    world = trainer.accelerator.num_processes
    device = str(config.device)
    gpus = world if device.startswith("cuda") else 0
    train = {
        "fingerprint": plan.fingerprint,
        "student": plan.student_desc,
        "format": plan.fmt,
        "examples": len(trainer.train_dataset),
        "epochs": float(config.num_train_epochs),
        "steps": state.global_step,
        "tokens_seen": int(state.num_input_tokens_seen),
        "loss_tokens_per_epoch": int(loss_tokens),
        "session_tokens": int(session_tokens),
        "wall_s": round(wall, 3),
        "tokens_per_s": round(session_tokens / wall, 1) if wall > 0 else None,
        "train_loss": output.training_loss,
        "final_loss": next((h["loss"] for h in reversed(state.log_history) if "loss" in h), None),
        "loss_history": [[h["step"], round(float(h["loss"]), 5)] for h in state.log_history if "loss" in h],
        "resumed_from": plan.resume,
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
        "device_type": device.split(":")[0],
        "world_size": world,
        "distributed": _distributed(trainer),
        "cpu_threads": threads if device.startswith("cpu") else None,
        "load_average_at_start": round(load, 2),
        "gpus": gpus,
        "gpu_hours": round(gpus * wall / 3600, 4),
        "params": sum(p.numel() for p in trainer.model.parameters()),
        "dtype": "bf16" if config.bf16 else "fp16" if config.fp16 else "fp32",
        "sft_args": plan.args,
        "dataset_dir": str(plan.dataset_dir),
        "versions": package_versions(),
        "finished_at": time.time(),
    }
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.config.use_cache = True  # training turns the KV cache off; generation wants it back
    trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        trainer.processing_class.save_pretrained(str(out))
        template = _template_for(plan.recipe, plan.dataset_dir)
        template["chat_template_hash"] = stable_hash(trainer.processing_class.chat_template or "")
        (out / "template.json").write_text(json.dumps(template, indent=2, ensure_ascii=False))
        (out / "train.json").write_text(json.dumps(train, indent=2, default=str))
    return SftResult(output_dir=str(out), train=train)


def _student(recipe: Recipe, ds, ckpt_dir: Path, tiny: bool):
    """The model (object or name for TRL to load) and its tokenizer; a tiny one is built once and kept."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not tiny:
        name = recipe.student.model
        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
        except OSError as exc:
            why = str(exc).splitlines()[0]
            raise ConfigError(f"student.model: cannot load the tokenizer of {name!r} ({why})") from None
        return name, tokenizer  # TRL loads it with sft.model_init_kwargs (dtype, attn_implementation, ...)

    from tracesynth.stages.train.student import build_tiny, message_texts

    init = ckpt_dir / "init"  # the initial weights and the tokenizer, so a resumed run is the same student
    if (init / "config.json").exists():
        return AutoModelForCausalLM.from_pretrained(str(init)), AutoTokenizer.from_pretrained(str(init))
    seed = int(recipe.sft.get("seed", 42))
    model, tokenizer = build_tiny(
        message_texts(ds), vocab_size=recipe.student.vocab_size, overrides=recipe.student.tiny, seed=seed
    )
    if main_process():
        model.save_pretrained(str(init))
        tokenizer.save_pretrained(str(init))
    return model, tokenizer


__all__ = ["SftResult", "make_trainer", "sft", "train_and_save"]
