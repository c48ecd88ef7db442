"""The harvester and the evaluator against a real vLLM server (CPU build), beside the simulated teacher.

What is measured, in one run:

* **harvest**: the same recipe (``--requests`` problems, concurrency 16, ``max_tokens`` 64, greedy)
  against vLLM serving a tiny Qwen2 checkpoint (randomly initialised, so every answer runs to
  ``max_tokens``: a steady load) and against the simulated teacher with a latency drawn to match
  vLLM's measured mean; wall time, samples/s, completion tokens/s, and the client's CPU ms per
  request (this process's CPU during the harvest, vLLM runs in its own processes).
* **eval**: the same checkpoint and 60 problems evaluated greedily by transformers' ``generate``
  (``eval.backend: local``) and through vLLM (``eval.backend: vllm``, the server started and stopped
  by the stage: its start-up is part of the wall time, and printed apart).

The ratio printed is vLLM wall / simulator wall for the harvest (how much of the harvest's time is the
engine), and vLLM / local for the eval. On a GPU the engine dominates differently; these numbers say
what the client costs beside a real server, not how fast vLLM is.

    .venv/bin/python bench/vllm_engine.py [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _checkpoint(folder: Path) -> Path:
    from tracesynth.stages.train.student import build_tiny

    texts = [
        f"<think>\n{a}+{b}={a + b}\n</think>\n\nThe answer is \\boxed{{{a + b}}}." for a in range(30) for b in (3, 7)
    ]
    model, tok = build_tiny(texts, seed=0, overrides={"initializer_range": 0.5})
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def _problems(path: Path, n: int) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            fh.write(
                json.dumps(
                    {"id": f"b{i}", "question": f"What is {100 + i} + {7 * i}?", "answer": str(107 * i // 7 + 100)}
                )
                + "\n"
            )
    return path


def _harvest(tmp: Path, base_url: str, model: str, problems: Path, name: str) -> dict:
    from tracesynth.config import Recipe
    from tracesynth.stages.harvest import harvest

    recipe = Recipe.model_validate(
        {
            "name": name,
            "run_dir": str(tmp / name),
            "source": {"kind": "jsonl", "path": str(problems)},
            "curate": {"decontam": {"enabled": False}},
            "teacher": {
                "model": model,
                "base_urls": [base_url],
                "api_key_env": None,
                "concurrency": 16,
                "prices": None,
                "sampling": {"temperature": 0.0, "top_p": 1.0, "max_tokens": 64},
                "timeout_s": 120,
            },
        }
    )
    cpu0, t0 = _cpu_s(), time.perf_counter()
    res = harvest(recipe, quiet=True, progress=False)
    wall, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    return {
        "teacher": name,
        "done": res.done,
        "wall_s": round(wall, 2),
        "samples_per_s": round(res.new / wall, 1),
        "completion_tokens_per_s": round(res.tokens.get("completion", 0) / wall),
        "client_cpu_ms_per_request": round(1000 * cpu / max(res.requests, 1), 2),
    }


def _eval(tmp: Path, ckpt: Path, backend: str) -> dict:
    from tracesynth.config import load_recipe
    from tracesynth.stages.evaluate import evaluate

    src = _problems(tmp / "eval.jsonl", 60)
    recipe = load_recipe(
        None,
        [
            f"run_dir={tmp / ('eval-' + backend)}",
            f"eval.source={{kind: jsonl, path: {src}}}",
            f"eval.model={ckpt}",
            f"eval.backend={backend}",
            "eval.max_new_tokens=64",
            "eval.baseline=false",
            "verify.verifiers=[math]",
        ],
    )
    t0 = time.perf_counter()
    block = evaluate(recipe).blocks["after"]
    return {"backend": backend, "problems": block["n_problems"], "wall_s": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    opts = ap.parse_args()
    from tracesynth.engine.vllm import VllmServer
    from tracesynth.sim import SimProcess

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ckpt = _checkpoint(tmp / "ckpt")
        problems = _problems(tmp / "p.jsonl", opts.requests)
        t0 = time.perf_counter()
        with VllmServer(ckpt, served_name="tiny", log_path=tmp / "vllm.log") as server:
            start_s = time.perf_counter() - t0
            real = _harvest(tmp, server.base_url, "tiny", problems, "vllm")
        per_request = real["wall_s"] * 16 / max(real["done"], 1)
        with SimProcess(latency=f"fixed:{per_request:.3f}", seed=1) as sim:
            simulated = _harvest(tmp, sim.base_url, "sim-reasoner", problems, "sim")
        local = _eval(tmp, ckpt, "local")
        served = _eval(tmp, ckpt, "vllm")
        print(json.dumps({"vllm_start_s": round(start_s, 1), **real}))
        print(json.dumps({"sim_latency_s": round(per_request, 3), **simulated}))
        print(
            json.dumps(
                {
                    "harvest_wall_vllm_over_sim": round(real["wall_s"] / simulated["wall_s"], 2),
                    "client_cpu_ms_per_request": {
                        "vllm": real["client_cpu_ms_per_request"],
                        "sim": simulated["client_cpu_ms_per_request"],
                    },
                }
            )
        )
        print(json.dumps(local))
        print(json.dumps(served))
        print(json.dumps({"eval_wall_vllm_over_local": round(served["wall_s"] / local["wall_s"], 2)}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
