"""Benchmark the verifiers: math verdicts per second in the verify pool, and sandboxed code runs per second.

Math (targets, issue 4: >= 1.7x speed-up with 2 workers on 2 cores, >= 150 verdicts/s per core):
5,000 mixed (gold, answer) pairs built from the shipped answers of MATH-500, GSM8K, AIME 2024 and
AMC 2023, four consecutive samples per problem (as a harvest with ``teacher.n: 4`` writes them) —
right answers, wrong answers, several boxes, "final answer is" phrases, answers without a final
answer — each answer after a few hundred characters of text like a teacher's summary.
Baseline, in the same run: math-verify called serially in this process the way its README shows
(``verify(parse(gold), parse(answer))``). Ours: the verify stage's process pool
(``tracesynth.stages.verify.stage.run_items``) with 1 and 2 workers, pool start-up included. "per
CPU-s" divides verdicts by the CPU time the workers used, i.e. what one core sustains even when
other jobs share the machine.

Code (target: >= 40 test runs/s on 2 cores): trivial stdin/stdout programs through the code
verifier (one sandboxed run each, full isolation as ``sandbox.capabilities()`` reports) with 1
and 2 workers; baseline in the same run: the same program run serially with a bare
``subprocess.run`` (no sandbox).

    .venv/bin/python bench/verify.py [--pairs 5000] [--code-runs 300] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

from tracesynth.records import Problem, Sample, Verdict
from tracesynth.stages.verify.stage import run_items

DATA = [Path(__file__).resolve().parents[1] / "data", Path("/work/shared/data")]
FILLER = (
    "We first rewrite the condition, then combine the two cases and simplify. Checking the edge cases "
    "confirms the count, and substituting back gives a consistent value. "
)


def golds() -> list[str]:
    out: list[str] = []
    for name in ("math500", "gsm8k_test", "aime24", "amc23"):
        path = next((d / f"{name}.jsonl" for d in DATA if (d / f"{name}.jsonl").is_file()), None)
        if path is None:
            sys.exit(f"{name}.jsonl not found in {DATA}")
        out += [json.loads(line)["answer"] for line in path.open()]
    return out


def mixed_pairs(n: int, seed: int = 0, per_problem: int = 4) -> list[tuple[str, str]]:
    """``n`` (gold, text) pairs, ``per_problem`` consecutive samples per gold (as a harvest with
    ``teacher.n`` > 1 writes them)."""
    rng = random.Random(seed)
    pool = golds()
    pairs = []
    for i in range(n):
        gold = pool[(i // per_problem) % len(pool)]
        kind = rng.random()
        if kind < 0.45:
            answer = f"\\boxed{{{gold}}}"
        elif kind < 0.6:
            answer = f"\\boxed{{{rng.choice(pool)}}}"
        elif kind < 0.7:
            answer = f"First \\boxed{{{rng.choice(pool)}}}, but correcting: \\boxed{{{gold}}}"
        elif kind < 0.8:
            answer = f"The final answer is ${gold}$. I hope it is correct."
        elif kind < 0.9:
            answer = "so the result follows from the two cases above."
        else:
            answer = f"\\boxed{{{gold} + 1}}"
        text = FILLER * rng.randint(1, 4) + "\n\nTherefore " + answer
        pairs.append((gold, text))
    return pairs


def baseline_math(pairs: list[tuple[str, str]]) -> tuple[float, int]:
    from math_verify import parse, verify

    t0 = time.perf_counter()
    ok = 0
    for gold, text in pairs:
        ok += bool(verify(parse(f"${gold}$"), parse(text)))
    return time.perf_counter() - t0, ok


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def pool_run(
    items: list, options: dict, workers: int, chunk: int, preload: tuple[str, ...] = ()
) -> tuple[float, float, list[Verdict]]:
    out: list[Verdict] = []
    cpu0, own0, t0 = children_cpu(), time.process_time(), time.perf_counter()
    run_items(iter(items), options, out.append, workers=workers, chunk_size=chunk, preload=preload)
    wall = time.perf_counter() - t0
    print(
        f"    ({workers} worker(s): parent used {time.process_time() - own0:.1f} CPU-s, workers "
        f"{children_cpu() - cpu0:.1f} CPU-s, wall {wall:.1f} s)"
    )
    return wall, children_cpu() - cpu0, out


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def control_scaling() -> float:
    """How much a second process helps right now on this box: a pure-Python CPU burn, 1 vs 2 processes.

    On an idle 2-core machine this is ~2x; when other jobs hold the cores it shows what is left."""
    from concurrent.futures import ProcessPoolExecutor

    walls = []
    for w in (1, 2):
        t0 = time.perf_counter()
        with ProcessPoolExecutor(w) as ex:
            list(ex.map(_burn, [2_000_000] * 12))
        walls.append(time.perf_counter() - t0)
    return walls[0] / walls[1]


def bench_math(n: int, worker_counts: list[int]) -> None:
    pairs = mixed_pairs(n)
    items = [
        (
            Problem(id=f"p{i}", prompt="q", answer=g),
            Sample(id=f"s{i}", problem_id=f"p{i}", index=0, model="m", content=t),
            ["math"],
            ["math"],
        )
        for i, (g, t) in enumerate(pairs)
    ]
    options = {"math": {"timeout_s": 5.0}}
    base_s, base_ok = baseline_math(pairs)
    print(f"math: {n} pairs, load average {os.getloadavg()[0]:.1f}")
    print(f"  baseline math-verify serial in-process: {n / base_s:7.1f} pairs/s ({base_ok} equal)")
    rates = {}
    for w in worker_counts:
        wall, cpu, verdicts = pool_run(items, options, w, chunk=64, preload=("math_verify",))
        passes = sum(v.status == "pass" for v in verdicts)
        rates[w] = n / wall
        print(
            f"  verify pool, {w} worker(s): {n / wall:7.1f} verdicts/s, {n / cpu:7.1f} per worker CPU-s, "
            f"{n / wall / w:6.1f}/s per worker ({passes} pass) -> {base_s / wall:.2f}x the serial baseline"
        )
    if 1 in rates and 2 in rates:
        print(
            f"  2 workers vs 1: {rates[2] / rates[1]:.2f}x (control, pure CPU burn 2 vs 1 processes right now: "
            f"{control_scaling():.2f}x)"
        )


def bench_code(n: int, worker_counts: list[int]) -> None:
    from tracesynth.stages.verify.verifiers.sandbox import capabilities

    program = "print(int(input()) * 2)"
    prob = Problem(id="k", prompt="double", tests=[{"input": "21\n", "output": "42\n"}], domain="code")
    content = f"```python\n{program}\n```"
    items = [
        (prob, Sample(id=f"c{i}", problem_id="k", index=i, model="m", content=content), ["code"], ["code"])
        for i in range(n)
    ]
    caps = capabilities()
    cpu0, t0 = children_cpu(), time.perf_counter()
    for _ in range(n):
        subprocess.run(
            [sys.executable, "-I", "-S", "-c", program], input="21\n", capture_output=True, text=True, check=True
        )
    base, base_cpu = n / (time.perf_counter() - t0), n / (children_cpu() - cpu0)
    print(f"code: {n} trivial programs, sandbox {caps.describe()}, load average {os.getloadavg()[0]:.1f}")
    print(f"  baseline bare subprocess.run, serial: {base:6.1f} runs/s, {base_cpu:6.1f} per CPU-s of the programs")
    for w in worker_counts:
        wall, cpu, verdicts = pool_run(items, {"code": {"timeout_s": 5.0}}, w, chunk=8)
        passes = sum(v.status == "pass" for v in verdicts)
        print(
            f"  code verifier in the pool, {w} worker(s): {n / wall:6.1f} sandboxed runs/s, {n / cpu:6.1f} per "
            f"CPU-s of workers and programs ({passes}/{n} pass) -> {n / wall / base:.2f}x the bare serial baseline"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=5000)
    ap.add_argument("--code-runs", type=int, default=300)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--only", choices=["math", "code"])
    args = ap.parse_args()
    if args.only != "code":
        bench_math(args.pairs, args.workers)
    if args.only != "math":
        bench_code(args.code_runs, args.workers)


if __name__ == "__main__":
    main()
