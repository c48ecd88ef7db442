"""Benchmark SFT throughput of the tiny student on the CPU: our recipe defaults vs TRL's, in one run.

Every configuration trains the same freshly initialised tiny Qwen2 student (same tokenizer, same
weights, same 2-digit addition traces written by the simulated teacher) for the same number of
steps with TRL's SFTTrainer, and reports training tokens per second (non-padding tokens seen /
``train()`` wall time):

* ``trl-defaults``: ``SFTConfig()`` as shipped plus ``use_cpu=True`` (without it TRL's bf16 default
  refuses to start on a machine without a GPU) — bf16 autocast, gradient checkpointing on, batch 8,
  loss on every token;
* ``ours``: :func:`tracesynth.stages.train.args.default_sft_args` for the CPU and a tiny student — fp32, no
  checkpointing, batch 16, assistant-only loss — with one intra-op thread (what sft picks for a
  small model when the CPU is busy, :func:`tracesynth.stages.train.device.cpu_threads`);
* ``ours-2-threads``: the same with torch's default of one thread per core (what it picks when idle);
* ``trl-defaults-bs16``: TRL's defaults with our batch size, to separate batch size from the rest.

Only measurement plumbing is added to TRL's defaults (output dir, no saving, no reporting, token
counting). Ratios are against ``trl-defaults`` measured in the same process.

    .venv/bin/python bench/sft.py [--steps 30] [--rows 512] [--digits 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path


def _rows(n: int, digits: int) -> list[dict]:
    from tracesynth.config import PromptConfig
    from tracesynth.records import Problem
    from tracesynth.sim.solver import Solver
    from tracesynth.sources.prompts import render_messages

    rng, solver, out = random.Random(0), Solver(), []
    for i in range(n):
        a, b = (rng.randint(10 ** (digits - 1), 10**digits - 1) for _ in range(2))
        p = Problem(id=f"b{i}", prompt=f"What is {a} + {b}?", answer=str(a + b))
        sol = solver.solve(p.prompt, (0, 0))
        reply = {"role": "assistant", "content": f"<think>\n{sol.reasoning.strip()}\n</think>\n\n{sol.content}"}
        out.append({"messages": [*render_messages(p, PromptConfig()), reply]})
    return out


def _run(name: str, args: dict, model_dir: Path, ds, steps: int, threads: int | None) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import SFTConfig, SFTTrainer

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    out = Path(tempfile.mkdtemp(prefix="bench-sft-"))
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        tok = AutoTokenizer.from_pretrained(model_dir)
        plumbing = {
            "output_dir": str(out),
            "max_steps": steps,
            "report_to": "none",
            "save_strategy": "no",
            "disable_tqdm": True,
            "logging_steps": steps,
            "include_num_input_tokens_seen": "non_padding",
        }
        trainer = SFTTrainer(
            model=model, args=SFTConfig(**{**args, **plumbing}), train_dataset=ds, processing_class=tok
        )
        trainer.remove_callback(PrinterCallback)
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0
        tokens = trainer.state.num_input_tokens_seen
        cfg = trainer.args
        return {
            "config": name,
            "tokens": tokens,
            "wall_s": round(wall, 2),
            "tokens_per_s": round(tokens / wall),
            "batch": cfg.per_device_train_batch_size,
            "bf16": cfg.bf16,
            "checkpointing": bool(cfg.activation_checkpointing),
            "threads": torch.get_num_threads(),
        }
    finally:
        torch.set_num_threads(before)
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--digits", type=int, default=2)
    opts = ap.parse_args()

    import datasets
    import torch

    from tracesynth.stages.train.args import default_sft_args
    from tracesynth.stages.train.student import build_tiny, message_texts

    rows = _rows(opts.rows, opts.digits)
    ds = datasets.Dataset.from_list(rows)
    model, tok = build_tiny(message_texts(rows), seed=0)
    model_dir = Path(tempfile.mkdtemp(prefix="bench-sft-model-"))
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    ours = {
        k: v
        for k, v in default_sft_args(on_gpu=False, fmt="messages", tiny=True).items()
        if k not in ("report_to", "logging_steps", "include_num_input_tokens_seen", "num_train_epochs")
    }
    params = sum(p.numel() for p in model.parameters())
    print(
        f"tiny student: {params / 1e6:.2f}M parameters, vocab {len(tok)}; {opts.rows} rows, {opts.steps} steps, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}"
    )
    try:
        _run("warm-up", ours, model_dir, ds, 3, 1)  # one-time costs (kernels, allocator) out of the timings
        results = [
            _run("trl-defaults", {"use_cpu": True}, model_dir, ds, opts.steps, None),
            _run("ours", ours, model_dir, ds, opts.steps, 1),
            _run("ours-2-threads", ours, model_dir, ds, opts.steps, None),
            _run(
                "trl-defaults-bs16",
                {"use_cpu": True, "per_device_train_batch_size": 16},
                model_dir,
                ds,
                opts.steps,
                None,
            ),
        ]
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)
    base = results[0]["tokens_per_s"]
    for r in results:
        r["vs_trl_defaults"] = round(r["tokens_per_s"] / base, 2)
        print(json.dumps(r))


if __name__ == "__main__":
    main()
