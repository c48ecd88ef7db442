"""Benchmark the harvester against the simulated teacher, beside two baselines, in one run.

The simulated teacher runs in its own process (``SimProcess``) so its CPU is not counted as the
client's; every client variant runs in a fresh child process of this script, so its CPU time and
peak RSS are its own. Variants:

* ``tracesynth``      — the real stage: ``tracesynth.harvest(recipe)`` from a JSONL source to
                        samples.jsonl (prompt rendering, ids, flow control, retries, ledger, store);
* ``tracesynth-sdk``  — the same with ``teacher.http: openai`` (AsyncOpenAI over its aiohttp transport);
* ``openai``          — a plain ``AsyncOpenAI(max_retries=0)`` + ``asyncio.Semaphore`` loop (default httpx2 stack);
* ``bare``            — a bare aiohttp loop that parses the response JSON (the practical floor).

Printed per variant: wall time, requests/s, client CPU ms per request, peak RSS, and the ratio of
wall time to the ideal (requests / (concurrency / latency)).

Scenarios (``--scenario``; default ``quick``):

* ``quick``   4,000 requests, concurrency 256, latency 200 ms, all four variants (tracesynth and bare
              ``--rounds`` times, alternating; medians compared);
* ``wide``    16,384 requests, concurrency 2,048, latency 2 s (tracesynth, bare; ``--rounds`` each);
* ``429``     ``quick`` for tracesynth with and without 10% 429s (Retry-After 1 s), ``--rounds`` each:
              ratio of medians to fault-free, beside the floor an ideal client reaches in the same
              scenario (``bench/retry_after_floor.py``, a model: 200 random draws);
* ``rss``     100,000 problems streamed through tracesynth at zero latency: peak RSS (target < 250 MB).

    .venv/bin/python bench/harvest.py [--scenario quick|wide|429|rss|all] [--requests N] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import retry_after_floor

MODEL = "sim-reasoner"


_OFFSET = 0  # each measured run asks problems no earlier run asked (set by --offset in the child)
_RUNS = iter(range(1, 10**6))


def prompt(i: int) -> str:
    """Problem i of this run: unique across runs, so no run finds the simulator's solver cache warm."""
    i += _OFFSET
    return f"Calculate {1000 + i * 7} + {37 * i % 99991} - {i % 89}."


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- variants (each runs in its own child process) --------------------------------------------------
def run_tracesynth(base_url: str, n: int, conc: int, http: str) -> dict[str, Any]:
    import tracesynth
    from tracesynth.config import Recipe

    tmp = Path(tempfile.mkdtemp(prefix="bench-harvest-"))
    src = tmp / "problems.jsonl"
    with src.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"b{i}", "problem": prompt(i), "answer": "0"}) + "\n")
    recipe = Recipe.model_validate(
        {
            "name": "bench",
            "run_dir": str(tmp / "run"),
            "source": {"kind": "jsonl", "path": str(src)},
            "teacher": {
                "model": MODEL,
                "base_urls": [base_url],
                "api_key_env": None,
                "concurrency": conc,
                "sampling": {"max_tokens": 400},
                "prices": {"input": 0.55, "output": 2.19},
                "http": http,
                "timeout_s": 120,
            },
        }
    )
    t0, c0, t0_wall = time.perf_counter(), time.process_time(), time.time()
    res = tracesynth.harvest(recipe, quiet=True, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    done_at: list[float] = []
    attempts: dict[str, int] = {}
    with open(tmp / "run" / "samples.jsonl") as fh:
        for line in fh:
            row = json.loads(line)
            done_at.append(row["created_at"] - t0_wall)
            k = str(row.get("metadata", {}).get("attempts", 1))
            attempts[k] = attempts.get(k, 0) + 1
    done_at.sort()
    return {
        "wall": wall,
        "cpu": cpu,
        "done": len(done_at),
        "failed": res.failed,
        "retries": res.errors_by_kind,
        "t99": done_at[int(0.99 * (len(done_at) - 1))] if done_at else float("nan"),
        "attempts": attempts,
    }


async def _openai_loop(base_url: str, n: int, conc: int) -> int:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
    sem = asyncio.Semaphore(conc)

    async def one(i: int) -> None:
        async with sem:
            r = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": prompt(i)}], max_tokens=400
            )
            assert r.choices[0].message.content

    await asyncio.gather(*(one(i) for i in range(n)))
    await client.close()
    return n


async def _bare_loop(base_url: str, n: int, conc: int) -> int:
    import aiohttp

    sem = asyncio.Semaphore(conc)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as session:

        async def one(i: int) -> None:
            async with sem:
                body = {"model": MODEL, "messages": [{"role": "user", "content": prompt(i)}], "max_tokens": 400}
                async with session.post(base_url + "/chat/completions", json=body) as r:
                    data = json.loads(await r.read())
                    assert data["choices"][0]["message"]["content"]

        await asyncio.gather(*(one(i) for i in range(n)))
    return n


def run_loop(kind: str, base_url: str, n: int, conc: int) -> dict[str, Any]:
    fn = _openai_loop if kind == "openai" else _bare_loop
    t0, c0 = time.perf_counter(), time.process_time()
    done = asyncio.run(fn(base_url, n, conc))
    return {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0, "done": done}


def child(args: argparse.Namespace) -> None:
    global _OFFSET
    _OFFSET = args.offset
    if args.variant.startswith("tracesynth"):
        out = run_tracesynth(
            args.base_url, args.requests, args.concurrency, "openai" if args.variant == "tracesynth-sdk" else "aiohttp"
        )
    else:
        out = run_loop(args.variant, args.base_url, args.requests, args.concurrency)
    out["rss_mb"] = _peak_rss_mb()
    print(json.dumps(out))


# -- driver ------------------------------------------------------------------------------------------
def measure(variant: str, base_url: str, n: int, conc: int, latency: float) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        variant,
        "--base-url",
        base_url,
        "--requests",
        str(n),
        "--concurrency",
        str(conc),
        "--offset",
        str(next(_RUNS) * 1_000_000),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    ideal = n / (conc / latency) if latency > 0 else float("nan")
    r.update(
        variant=variant,
        requests=n,
        concurrency=conc,
        latency=latency,
        ideal=ideal,
        ratio=r["wall"] / ideal if latency > 0 else float("nan"),
        rps=n / r["wall"],
        cpu_ms=1000 * r["cpu"] / n,
    )
    print(
        f"  {variant:15s} wall {r['wall']:7.2f}s  {r['rps']:7.0f} req/s  cpu {r['cpu_ms']:5.2f} ms/req  "
        f"peak RSS {r['rss_mb']:6.0f} MB  x{r['ratio']:.2f} of ideal {ideal:.2f}s  done {r['done']}",
        flush=True,
    )
    return r


def scenario(
    name: str,
    variants: list[str],
    n: int,
    conc: int,
    latency: float,
    rounds: int = 1,
    repeat: tuple[str, ...] = ("tracesynth", "bare"),
    **sim: Any,
) -> list[dict[str, Any]]:
    """Each variant once, then ``rounds - 1`` more alternating rounds of the ``repeat`` variants; the
    median round per variant is returned (the box's speed drifts by ~20% over minutes)."""
    from tracesynth.sim import SimProcess

    print(f"{name}: {n} requests, concurrency {conc}, latency {latency * 1000:.0f} ms {sim or ''}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with SimProcess(model=MODEL, latency=latency, **sim) as server:
        for r in range(rounds):
            for v in variants:
                if r == 0 or v in repeat:
                    runs[v].append(measure(v, server.base_url, n, conc, latency))
    out = []
    for v in variants:
        ordered = sorted(runs[v], key=lambda x: x["wall"])
        med = ordered[len(ordered) // 2]
        if len(ordered) > 1:
            walls = ", ".join(f"{x['wall']:.2f}" for x in runs[v])
            print(
                f"  {v:15s} median of {len(ordered)}: wall {med['wall']:.2f}s  x{med['ratio']:.2f} of ideal  "
                f"cpu {med['cpu_ms']:.2f} ms/req  (walls {walls})"
            )
        out.append(med)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="quick", choices=["quick", "wide", "429", "rss", "all"])
    ap.add_argument("--requests", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of tracesynth and bare (median reported)")
    ap.add_argument("--child", dest="variant", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--base-url", default="", help=argparse.SUPPRESS)
    ap.add_argument("--concurrency", type=int, default=256, help=argparse.SUPPRESS)
    ap.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        child(args)
        return
    # byte-compile tracesynth as `pip install` does: with PYTHONDONTWRITEBYTECODE set (this box sets
    # it) an editable install would otherwise compile its sources again in every child (~50 ms each)
    import tracesynth

    compileall.compile_dir(Path(tracesynth.__file__).parent, quiet=1)
    todo = ["quick", "wide", "429", "rss"] if args.scenario == "all" else [args.scenario]
    for sc in todo:
        if sc == "quick":
            res = scenario(
                "quick",
                ["tracesynth", "tracesynth-sdk", "openai", "bare"],
                args.requests or 4000,
                256,
                0.2,
                rounds=args.rounds,
            )
            ts, floor = res[0], res[-1]
            print(
                f"  tracesynth vs bare aiohttp: wall x{ts['wall'] / floor['wall']:.2f}, "
                f"cpu x{ts['cpu_ms'] / floor['cpu_ms']:.2f}; targets: wall <= 1.25x ideal "
                f"({'met' if ts['ratio'] <= 1.25 else 'MISSED'}), cpu <= 1.0 ms/req "
                f"({'met' if ts['cpu_ms'] <= 1.0 else 'MISSED'})"
            )
        elif sc == "wide":
            res = scenario("wide", ["tracesynth", "bare"], args.requests or 16384, 2048, 2.0, rounds=args.rounds)
            print(
                f"  tracesynth vs bare aiohttp: wall x{res[0]['wall'] / res[1]['wall']:.2f}; target: within 1.2x "
                f"of ideal ({'met' if res[0]['ratio'] <= 1.2 else 'MISSED'}; the bare floor: x{res[1]['ratio']:.2f})"
            )
        elif sc == "429":
            n = args.requests or 4000
            clean = scenario("429 (fault-free)", ["tracesynth"], n, 256, 0.2, rounds=args.rounds)[0]
            faulty = scenario(
                "429 (10% 429, Retry-After 1 s)",
                ["tracesynth"],
                n,
                256,
                0.2,
                rounds=args.rounds,
                rate_429=0.1,
                retry_after_s=1.0,
            )[0]
            ratio = faulty["wall"] / clean["wall"]
            print(
                f"  10% 429 / fault-free wall (medians): x{ratio:.2f} (target <= 1.5: "
                f"{'met' if ratio <= 1.5 else 'MISSED'}); done {faulty['done']}/{n}, item errors {faulty['failed']}"
            )
            print(
                f"  99% of samples done at {faulty['t99']:.2f}s vs {clean['t99']:.2f}s fault-free "
                f"(x{faulty['t99'] / clean['t99']:.2f}); calls by attempts needed: "
                f"{dict(sorted(faulty['attempts'].items()))} — each extra attempt waits out Retry-After 1 s"
            )
            f = retry_after_floor.floor(n, 256, 0.2, 0.1, 1.0)
            print(
                f"  an ideal client (no CPU, no network time; model in bench/retry_after_floor.py, 200 draws): "
                f"fault-free {f['clean']:.2f}s, with 429s median {f['median']:.2f}s = x{f['ratio_median']:.2f} "
                f"(p10 x{f['ratio_p10']:.2f}, p90 x{f['ratio_p90']:.2f}), {f['share_within_1_5']:.0%} of draws "
                f"within 1.5x; tracesynth's wall with 429s is x{faulty['wall'] / f['median']:.2f} the ideal client's"
            )
        elif sc == "rss":
            r = scenario("rss", ["tracesynth"], args.requests or 100_000, 256, 0.0)[0]
            print(f"  peak RSS {r['rss_mb']:.0f} MB (target < 250 MB: {'met' if r['rss_mb'] < 250 else 'MISSED'})")


if __name__ == "__main__":
    main()
