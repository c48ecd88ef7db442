"""How fast does a tiny student learn addition from the simulated teacher's traces? Steps and seconds to accuracy.

The question the offline demo depends on: how many optimizer steps (and CPU seconds) a from-scratch
tiny Qwen2 student needs before it writes correct step-by-step traces for held-out problems. Two
student shapes are trained in the same run on the same data with the same recipe (AdamW betas
(0.9, 0.95), cosine schedule with 5% warmup, gradient clipping 1.0, loss on the assistant turn
only — :data:`tracesynth.stages.train.args.TINY_SFT_DEFAULTS`), in a plain PyTorch loop so accuracy can be
probed every ``--every`` steps without stopping a Trainer:

* ``default``: :data:`tracesynth.stages.train.student.TINY_DEFAULTS` (hidden 64, 2 layers, 0.15M params);
* ``wide``: hidden 128, 4 layers (1.0M params), the first shape we tried; or, with ``--vs head_dim``,
  ``head_dim16``: the same size with 4 heads of 16 (2 key/value heads), the shape before the student
  had to be servable by vLLM's CPU attention (which refuses head_dim 16).

Accuracy is teacher-forced exact match on 200 held-out problems: the share whose whole assistant
turn is the argmax at every position — exactly the problems greedy decoding would get right
token for token. The ratio printed is ``wide`` seconds / ``default`` seconds to reach ``--target``.

    .venv/bin/python bench/sft_learning.py [--digits 2] [--digits-b 2] [--steps 1000] [--every 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time


def _data(n: int, seed: int, digits: int, digits_b: int) -> list[list[dict]]:
    from tracesynth.config import PromptConfig
    from tracesynth.records import Problem
    from tracesynth.sim.solver import Solver
    from tracesynth.sources.prompts import render_messages

    rng, solver, out = random.Random(seed), Solver(), []
    for i in range(n):
        a = rng.randint(10 ** (digits - 1), 10**digits - 1)
        b = rng.randint(10 ** (digits_b - 1), 10**digits_b - 1)
        p = Problem(id=f"{seed}-{i}", prompt=f"What is {a} + {b}?", answer=str(a + b))
        sol = solver.solve(p.prompt, (0, 0))
        reply = {"role": "assistant", "content": f"<think>\n{sol.reasoning.strip()}\n</think>\n\n{sol.content}"}
        out.append([*render_messages(p, PromptConfig()), reply])
    return out


def _curve(name: str, shape: dict, train, test, opts) -> dict:
    import torch

    from tracesynth.stages.train.args import TINY_SFT_DEFAULTS
    from tracesynth.stages.train.student import build_tiny, message_texts

    model, tok = build_tiny(message_texts({"messages": c} for c in train), overrides=shape, seed=0)

    def encode(conv):
        o = tok.apply_chat_template(conv, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        return o["input_ids"], [i if m else -100 for i, m in zip(o["input_ids"], o["assistant_masks"], strict=True)]

    def batch(rows):
        width = max(len(r[0]) for r in rows)
        pad = tok.pad_token_id
        ids = torch.tensor([r[0] + [pad] * (width - len(r[0])) for r in rows])
        lab = torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows])
        att = torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows])
        return ids, lab, att

    tr, te = [encode(c) for c in train], [encode(c) for c in test]

    def exact_match() -> float:
        model.eval()
        ok = 0
        with torch.no_grad():
            for i in range(0, len(te), 100):
                ids, lab, att = batch(te[i : i + 100])
                pred = model(input_ids=ids, attention_mask=att).logits[:, :-1].argmax(-1)
                tgt = lab[:, 1:]
                ok += int(((pred == tgt) | (tgt == -100)).all(-1).sum())
        model.train()
        return ok / len(te)

    lr, bs = TINY_SFT_DEFAULTS["learning_rate"], TINY_SFT_DEFAULTS["per_device_train_batch_size"]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, TINY_SFT_DEFAULTS["adam_beta2"]), weight_decay=0.0)
    rng = random.Random(0)
    curve, reached, t0, train_s, tokens = [], None, time.perf_counter(), 0.0, 0
    for step in range(1, opts.steps + 1):
        t = time.perf_counter()
        ids, lab, att = batch(rng.sample(tr, bs))
        warm = max(1, int(0.05 * opts.steps))
        scale = min(1.0, step / warm) * 0.5 * (1 + math.cos(math.pi * step / opts.steps))
        for g in opt.param_groups:
            g["lr"] = lr * scale
        model(input_ids=ids, attention_mask=att, labels=lab).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        train_s += time.perf_counter() - t
        tokens += int(att.sum())
        if step % opts.every == 0:
            em = exact_match()
            curve.append({"step": step, "train_s": round(train_s, 1), "exact_match": em})
            if reached is None and em >= opts.target:
                reached = {"step": step, "train_s": round(train_s, 1)}
    return {
        "student": name,
        "params": sum(p.numel() for p in model.parameters()),
        "shape": shape,
        "tokens_per_s": round(tokens / train_s),
        "reached_target": reached,
        "curve": curve,
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--digits", type=int, default=2)
    ap.add_argument("--digits-b", type=int, default=2)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--target", type=float, default=0.9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vs", choices=("wide", "head_dim"), default="wide", help="the shape to compare with")
    opts = ap.parse_args()

    import torch

    from tracesynth.stages.train.student import TINY_DEFAULTS

    torch.set_num_threads(opts.threads)
    train = _data(opts.train, 0, opts.digits, opts.digits_b)
    test = _data(200, 999, opts.digits, opts.digits_b)
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")
    default = {k: TINY_DEFAULTS[k] for k in keys}
    if opts.vs == "wide":
        other_name, other = (
            "wide",
            {
                "hidden_size": 128,
                "intermediate_size": 512,
                "num_hidden_layers": 4,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
            },
        )
    else:
        other_name, other = "head_dim16", {**default, "num_attention_heads": 4, "num_key_value_heads": 2}
    results = [_curve("default", default, train, test, opts), _curve(other_name, other, train, test, opts)]
    for r in results:
        print(json.dumps(r))
    a, b = results[0]["reached_target"], results[1]["reached_target"]
    if a and b:
        print(
            json.dumps(
                {
                    f"seconds_to_target_{other_name}_over_default": round(b["train_s"] / a["train_s"], 2),
                    f"steps_to_target_{other_name}_over_default": round(b["step"] / a["step"], 2),
                }
            )
        )
    else:
        print(json.dumps({"seconds_to_target": {"default": a, other_name: b}}))


if __name__ == "__main__":
    main()
