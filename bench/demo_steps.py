"""How many steps, at which batch size, does the demo's student need on the demo's data? (recipes/demo.yaml)

The question behind the demo's step budget: ``make demo`` trains 12 students (4 kinds x 3 seeds) and must
finish in 15 minutes on 2 cores, so each student gets as few optimizer steps as still land it past the
learning phase change. This trains one tiny student (:data:`tracesynth.stages.train.student.TINY_DEFAULTS`)
in a plain PyTorch loop (the recipe of :data:`tracesynth.stages.train.args.TINY_SFT_DEFAULTS`: AdamW betas
(0.9, 0.95), cosine with 5% warm-up, clipping 1.0, loss on the assistant turn only) on the demo's training
data — reasoning-gym ``basic_arithmetic`` 2-digit additions answered by the simulated teacher with the
demo's mistakes (25% wrong answers dropped as verification would, 15% recovered slips kept) — and probes
teacher-forced exact match on 200 held-out problems (clean traces) every 100 steps: the share whose whole
assistant turn is the argmax at every position, i.e. what greedy decoding would reproduce token for token.

    .venv/bin/python bench/demo_steps.py --batch 16 --steps 800 --seed 1 [--train 3000] [--answers] [--task T]

Prints one JSON line: the curve (step, exact match, batch loss), seconds and tokens per step. One thread.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time


def _data(n: int, seed: int, task: str, answers: bool, teacher: bool) -> list[list[dict]]:
    import reasoning_gym

    from tracesynth.config import PromptConfig
    from tracesynth.records import Problem
    from tracesynth.sim.solver import Solver
    from tracesynth.sources.prompts import render_messages

    cfg: dict = {"min_terms": 2, "max_terms": 2, "min_digits": 2, "max_digits": 2, "allow_negation": False}
    name = "chain_sum"
    if task == "add":
        name, cfg = "basic_arithmetic", {**cfg, "operators": ["+"], "allow_parentheses": False}
    solver = Solver(seed=7, wrong_rate=0.25, slip_rate=0.15, mistakes=["step", "transposed"]) if teacher else Solver()
    out = []
    for e in reasoning_gym.create_dataset(name, size=n, seed=seed, **cfg):
        p = Problem(id=str(e["question"]), prompt=e["question"], answer=str(e["answer"]))
        sol = solver.solve(p.prompt, (None, 0))
        if sol.wrong:
            continue  # what verification drops
        reply = sol.content if answers else f"<think>\n{sol.reasoning.strip()}\n</think>\n\n{sol.content}"
        out.append([*render_messages(p, PromptConfig()), {"role": "assistant", "content": reply}])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--seed", type=int, default=1, help="initial weights and data order")
    ap.add_argument("--lr", type=float, default=None, help="default: the tiny student's (TINY_SFT_DEFAULTS)")
    ap.add_argument("--task", choices=("add", "chain_sum"), default="add")
    ap.add_argument("--answers", action="store_true", help="answers only, no reasoning (the answers-only student)")
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument(
        "--train", type=int, default=3000, help="problems drawn for training (before dedup, wrong ones dropped)"
    )
    opts = ap.parse_args()

    import torch

    from tracesynth.stages.train.args import TINY_SFT_DEFAULTS
    from tracesynth.stages.train.student import build_tiny, message_texts

    torch.set_num_threads(1)
    lr = opts.lr or TINY_SFT_DEFAULTS["learning_rate"]
    train = _data(opts.train, 1, opts.task, opts.answers, teacher=True)
    test = _data(200, 100_000_000, opts.task, opts.answers, teacher=False)
    model, tok = build_tiny(message_texts({"messages": c} for c in train), seed=opts.seed)

    def encode(conv):
        o = tok.apply_chat_template(conv, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        return o["input_ids"], [i if m else -100 for i, m in zip(o["input_ids"], o["assistant_masks"], strict=True)]

    def batch(rows):
        width, pad = max(len(r[0]) for r in rows), tok.pad_token_id
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

    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, TINY_SFT_DEFAULTS["adam_beta2"]), weight_decay=0.0)
    rng = random.Random(opts.seed)
    curve, tokens, t0 = [], 0, time.perf_counter()
    warm = max(1, int(0.05 * opts.steps))
    for step in range(1, opts.steps + 1):
        ids, lab, att = batch(rng.sample(tr, opts.batch))
        scale = min(1.0, step / warm) * 0.5 * (1 + math.cos(math.pi * step / opts.steps))
        for g in opt.param_groups:
            g["lr"] = lr * scale
        loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        tokens += int(att.sum())
        if step % opts.every == 0:
            curve.append([step, round(exact_match(), 3), round(loss.item(), 3)])
    print(
        json.dumps(
            {
                "batch": opts.batch,
                "steps": opts.steps,
                "seed": opts.seed,
                "lr": lr,
                "task": opts.task,
                "answers": opts.answers,
                "seconds": round(time.perf_counter() - t0),
                "tokens_per_step": round(tokens / opts.steps),
                "curve": curve,
            }
        )
    )


if __name__ == "__main__":
    main()
